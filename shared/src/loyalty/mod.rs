//! Loyalty accrual: one ledger entry per sale, reversals on returns, a balance per member.
//!
//! - A sale with a member earns per [`rules`]; exactly one `earn` entry per sale event (the entry is keyed
//!   by the event id and written atomically with the balance change).
//! - A sale without a member earns nothing and is counted (`NoMember` metric); so is a sale in a currency
//!   without an earn rate (`NotEarning`).
//! - A return reverses points pro rata to the returned lines of the original sale (found by `sale_id`;
//!   the member comes from that sale when the return does not name one, as Shopify refunds do not).
//!   The sale's accrual record keeps running totals ([`Reversed`]) updated atomically with each
//!   reversal, so across all the returns of a sale a line never gives back more than it earned.
//!   A return whose sale earned nothing reverses nothing (counted as `NothingToReverse`); a return whose
//!   sale has not been processed yet (out-of-order delivery) is retried until it has.
//! - A sale or return whose lines were claim-checked ([`crate::store::claim`]) is resolved through the
//!   [`crate::ports::LinesSource`] first; when it cannot be, the record fails and is retried.
//! - A reversal that would take the balance below zero follows [`rules::NegativeBalancePolicy`]:
//!   `clamp` (default) stops at zero and records the `unrecovered` rest on the entry; `allow` goes negative.

pub mod config;
pub mod conformance;
pub mod dynamodb;
pub mod embedded;
pub mod rules;

use crate::ids::{EventId, MemberId, SaleId};
use crate::metrics::{Metrics, Unit};
use crate::model::{CanonicalEvent, EventEnvelope};
use crate::sqs_batch::RecordError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rules::{Accrual, LoyaltyRules, NegativeBalancePolicy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Kind of ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Points earned by a sale.
    Earn,
    /// Points reversed by a return.
    Reverse,
}

/// One line of a member's points ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The event that caused it (unique per member ledger).
    pub event_id: EventId,
    /// The member.
    pub member_id: MemberId,
    /// Earn or reverse.
    pub kind: EntryKind,
    /// Points applied to the balance (negative for reversals).
    pub points: i64,
    /// Points the rules asked to reverse but the clamp policy did not take (0 otherwise).
    pub unrecovered: i64,
    /// The sale concerned.
    pub sale_id: Option<SaleId>,
    /// When the fact happened.
    pub occurred_at: DateTime<Utc>,
}

/// What a sale earned, kept for its returns. Written for every sale, also those that earned nothing, so
/// a return can tell "nothing to reverse" from "its sale has not arrived yet".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccrualRecord {
    /// The sale.
    pub sale_id: SaleId,
    /// Its member, if any.
    pub member_id: Option<MemberId>,
    /// What it earned, if anything.
    pub accrual: Option<Accrual>,
    /// What the sale's returns have reversed so far (updated atomically with each reversal entry).
    #[serde(default, skip_serializing_if = "Reversed::is_empty")]
    pub reversed: Reversed,
}

/// What the returns of one sale have reversed so far: the running totals that keep several partial
/// returns (or a return of more units than were sold) from reversing more than a line earned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reversed {
    /// Eligible amount (minor units) reversed so far, per sale line id; never above the line's eligible.
    #[serde(default)]
    pub lines: BTreeMap<String, i64>,
    /// Points the returns asked to reverse so far (before the negative balance policy); never above
    /// the points the sale earned.
    #[serde(default)]
    pub points: i64,
}

impl Reversed {
    /// Nothing reversed yet.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.points == 0
    }
}

/// Plans a return's reversal from the sale's accrual record as stored at the moment of the write: the
/// new running totals and the points to reverse now. Called by the ledger inside its atomic update.
/// Owned (`'static`) so an adapter can run it on a blocking thread.
pub type ReversalPlanner = Arc<dyn Fn(&AccrualRecord) -> (Reversed, i64) + Send + Sync>;

/// A loyalty store failure (retryable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("loyalty store: {0}")]
pub struct LoyaltyStoreError(pub String);

/// The loyalty ledger port.
#[async_trait]
pub trait LoyaltyLedger: Send + Sync {
    /// The member's tier, when the CRM set one.
    async fn tier(&self, member: &MemberId) -> Result<Option<String>, LoyaltyStoreError>;
    /// Records the sale's accrual and, if it earned, its ledger entry and balance change, atomically.
    /// `false` when the sale was recorded before (a redelivery): nothing changed.
    async fn record_sale(
        &self,
        accrual: &AccrualRecord,
        entry: Option<&LedgerEntry>,
    ) -> Result<bool, LoyaltyStoreError>;
    /// The accrual of a sale.
    async fn accrual(&self, sale: &SaleId) -> Result<Option<AccrualRecord>, LoyaltyStoreError>;
    /// Records a reversal of `requested` points (positive) under `policy`, atomically with the balance.
    /// `None` when the entry existed (a redelivery). For debits that belong to no sale (redemptions);
    /// returns use [`LoyaltyLedger::reverse_return`].
    async fn reverse(
        &self,
        template: &LedgerEntry,
        requested: i64,
        policy: NegativeBalancePolicy,
    ) -> Result<Option<LedgerEntry>, LoyaltyStoreError>;
    /// Records the reversal of a return against `sale`: reads the sale's accrual record, asks `plan` for
    /// the new running totals and the points to reverse, then writes the entry, the balance (under
    /// `policy`) and the record's new totals in one atomic step (re-planned if the record or balance
    /// moved meanwhile). `None` when the entry existed (a redelivery); an error when the record is absent.
    async fn reverse_return(
        &self,
        template: &LedgerEntry,
        sale: &SaleId,
        plan: ReversalPlanner,
        policy: NegativeBalancePolicy,
    ) -> Result<Option<LedgerEntry>, LoyaltyStoreError>;
    /// The member's balance (0 when unknown).
    async fn balance(&self, member: &MemberId) -> Result<i64, LoyaltyStoreError>;
    /// All the member's entries, oldest first. Unbounded: for inspection and tests; the query API reads
    /// [`LoyaltyLedger::entries_page`].
    async fn entries(&self, member: &MemberId) -> Result<Vec<LedgerEntry>, LoyaltyStoreError>;
    /// The member's entries in event-id order (the key order of every store), strictly after `after`, at
    /// most `limit`. Keyset paging: an entry written meanwhile never shifts or repeats what follows.
    async fn entries_page(
        &self,
        member: &MemberId,
        after: Option<&EventId>,
        limit: usize,
    ) -> Result<LedgerPage, LoyaltyStoreError>;
}

/// One page of a member's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerPage {
    /// The entries, in event-id order.
    pub entries: Vec<LedgerEntry>,
    /// The last event id of the page when more entries follow it.
    pub next: Option<EventId>,
}

impl LedgerPage {
    /// A page from up to `limit + 1` entries read in order: the extra one only tells that more follow.
    pub fn from_probe(mut entries: Vec<LedgerEntry>, limit: usize) -> Self {
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next = if more {
            entries.last().map(|e| e.event_id.clone())
        } else {
            None
        };
        Self { entries, next }
    }
}

/// How much of `requested` a reversal applies to a balance of `balance` under `policy`: (applied, unrecovered).
pub fn clamp_reversal(balance: i64, requested: i64, policy: NegativeBalancePolicy) -> (i64, i64) {
    match policy {
        NegativeBalancePolicy::Allow => (requested, 0),
        NegativeBalancePolicy::Clamp => {
            let applied = requested.min(balance.max(0));
            (applied, requested - applied)
        }
    }
}

/// The loyalty-accrual consumer.
pub struct LoyaltyAccrual {
    ledger: Arc<dyn LoyaltyLedger>,
    rules: LoyaltyRules,
    metrics: Arc<Metrics>,
    lines: Arc<dyn crate::ports::LinesSource>,
}

impl LoyaltyAccrual {
    /// Wires the consumer.
    pub fn new(ledger: Arc<dyn LoyaltyLedger>, rules: LoyaltyRules, metrics: Arc<Metrics>) -> Self {
        Self {
            ledger,
            rules,
            metrics,
            lines: Arc::new(crate::store::claim::NoLinesSource),
        }
    }

    /// Where claim-checked lines are read from (the capture store); without it such an event fails
    /// (retryable), never accrued as a sale without lines.
    pub fn with_lines_source(mut self, lines: Arc<dyn crate::ports::LinesSource>) -> Self {
        self.lines = lines;
        self
    }

    fn retry(e: LoyaltyStoreError) -> RecordError {
        RecordError::Retryable(e.to_string())
    }

    /// Handles one SQS record body (an EventBridge event).
    pub async fn handle_body(&self, body: &str) -> Result<(), RecordError> {
        let msg = crate::bus::BusMessage::parse(body).map_err(RecordError::Poison)?;
        self.handle_envelope(&msg.detail).await
    }

    /// Handles one event (its claim-checked lines resolved first, if any).
    pub async fn handle_envelope(&self, envelope: &EventEnvelope) -> Result<(), RecordError> {
        use tracing::Instrument;
        let span = tracing::info_span!("loyalty", event_id = %envelope.event_id, correlation_id = %envelope.correlation_id);
        async {
            let resolved;
            let envelope = if envelope.lines_ref.is_some() {
                resolved = crate::store::claim::resolve(self.lines.as_ref(), envelope.clone())
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "claim-checked lines not resolved");
                        self.metrics.emit(&[("Failures", Unit::Count, 1.0)]);
                        crate::store::claim::record_error(e)
                    })?;
                &resolved
            } else {
                envelope
            };
            self.apply(envelope).await
        }
        .instrument(span)
        .await
    }

    async fn apply(&self, envelope: &EventEnvelope) -> Result<(), RecordError> {
        match &envelope.event {
            CanonicalEvent::SaleCompleted(sale) => {
                let accrual = match &sale.member_id {
                    None => None,
                    Some(member) => {
                        let tier = self.ledger.tier(member).await.map_err(Self::retry)?;
                        self.rules.accrue(sale, tier.as_deref())
                    }
                };
                let record = AccrualRecord {
                    sale_id: sale.sale_id.clone(),
                    member_id: sale.member_id.clone(),
                    accrual,
                    reversed: Reversed::default(),
                };
                let entry = match (&record.member_id, &record.accrual) {
                    (Some(member), Some(accrual)) => Some(LedgerEntry {
                        event_id: envelope.event_id.clone(),
                        member_id: member.clone(),
                        kind: EntryKind::Earn,
                        points: accrual.points,
                        unrecovered: 0,
                        sale_id: Some(sale.sale_id.clone()),
                        occurred_at: sale.occurred_at,
                    }),
                    _ => None,
                };
                let new = self
                    .ledger
                    .record_sale(&record, entry.as_ref())
                    .await
                    .map_err(Self::retry)?;
                match (&entry, new) {
                    (_, false) => self.metrics.emit(&[("Duplicates", Unit::Count, 1.0)]),
                    (Some(e), true) => {
                        tracing::info!(points = e.points, "points accrued");
                        self.metrics
                            .emit(&[("PointsAccrued", Unit::Count, e.points as f64)]);
                    }
                    (None, true) if record.member_id.is_none() => {
                        self.metrics.emit(&[("NoMember", Unit::Count, 1.0)])
                    }
                    (None, true) => {
                        tracing::info!(currency = %sale.currency, "currency earns no points");
                        self.metrics.emit(&[("NotEarning", Unit::Count, 1.0)]);
                    }
                }
                Ok(())
            }
            CanonicalEvent::ReturnCompleted(ret) => {
                let Some(sale_id) = &ret.sale_id else {
                    // Without the original sale there is no pro rata basis.
                    self.metrics.emit(&[("NothingToReverse", Unit::Count, 1.0)]);
                    return Ok(());
                };
                let Some(original) = self.ledger.accrual(sale_id).await.map_err(Self::retry)?
                else {
                    // Out of order: the return came before its sale. Retrying lets the sale land first; if it
                    // never does, the message waits in the DLQ after maxReceiveCount, visible for a redrive.
                    return Err(RecordError::Retryable(
                        "the original sale has not been processed yet".into(),
                    ));
                };
                let (Some(member), Some(_)) =
                    (original.member_id.clone(), original.accrual.as_ref())
                else {
                    self.metrics.emit(&[("NothingToReverse", Unit::Count, 1.0)]);
                    return Ok(());
                };
                let (rules, returned) = (self.rules.clone(), ret.clone());
                let planner: ReversalPlanner =
                    Arc::new(move |record: &AccrualRecord| match &record.accrual {
                        Some(accrual) => rules.reversal(accrual, &record.reversed, &returned),
                        None => (record.reversed.clone(), 0),
                    });
                let template = LedgerEntry {
                    event_id: envelope.event_id.clone(),
                    member_id: member,
                    kind: EntryKind::Reverse,
                    points: 0,
                    unrecovered: 0,
                    sale_id: Some(sale_id.clone()),
                    occurred_at: ret.occurred_at,
                };
                match self
                    .ledger
                    .reverse_return(&template, sale_id, planner, self.rules.negative_balance)
                    .await
                    .map_err(Self::retry)?
                {
                    Some(entry) => {
                        tracing::info!(
                            points = entry.points,
                            unrecovered = entry.unrecovered,
                            "points reversed"
                        );
                        self.metrics.emit(&[(
                            "PointsReversed",
                            Unit::Count,
                            (-entry.points) as f64,
                        )]);
                    }
                    None => self.metrics.emit(&[("Duplicates", Unit::Count, 1.0)]),
                }
                Ok(())
            }
            // The routing rule only sends sales and returns; anything else is acknowledged.
            _ => Ok(()),
        }
    }

    /// Handles an SQS batch with partial failures.
    pub async fn handle_batch(
        &self,
        event: &aws_lambda_events::event::sqs::SqsEvent,
    ) -> aws_lambda_events::event::sqs::SqsBatchResponse {
        crate::sqs_batch::process_standard_batch(event, self, &self.metrics).await
    }
}

#[cfg(test)]
mod tests;

#[async_trait::async_trait]
impl crate::sqs_batch::RecordHandler for LoyaltyAccrual {
    async fn handle_record(
        &self,
        record: &aws_lambda_events::event::sqs::SqsMessage,
    ) -> Result<(), crate::sqs_batch::RecordError> {
        self.handle_body(record.body.as_deref().unwrap_or_default())
            .await
    }
}
