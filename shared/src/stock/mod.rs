//! Stock sync: per store + SKU on-hand quantities, changed by commutative deltas, exactly once per event.
//!
//! - A sale takes its lines' quantities off, a return with restock puts them back; lines without a SKU
//!   (custom items) and returns without restock change nothing.
//! - Deltas are atomic `ADD`s, so the order in which events arrive does not matter (standard queues
//!   suffice); the lines of one event are applied in one transaction together with a marker keyed by
//!   the event id, so a redelivery applies nothing twice.
//! - Stock may go negative (the sale already happened): it is flagged with a `StockNegative` event and
//!   metric, never refused. Crossing the low-stock threshold downwards publishes `StockLow`.
//! - A sale or return whose lines were claim-checked ([`crate::store::claim`]) is resolved through the
//!   [`crate::ports::LinesSource`] first; when it cannot be (store down, not wired) the record fails and
//!   is retried, it is never applied as a sale without lines.
//! - `StockAdjusted` events: a `delta` (goods received, shrinkage) is a delta like any other; an
//!   `on_hand` is a **count** taken at `occurred_at`. Every delta carries the time of its fact, and the
//!   ledger keeps each delta's time, so a count and deltas arriving in any order give the same level:
//!   the latest count plus the deltas that happened after it. A delta that happened at or before the
//!   latest count is already in that count and changes nothing; a count older than the latest one is
//!   stale and ignored (counted as `StaleCounts`). Deltas are kept for [`MOVE_RETENTION_DAYS`]; a count
//!   older than that is refused as stale, since the deltas after it may be gone.

pub mod config;
pub mod conformance;
pub mod dynamodb;
pub mod embedded;

use crate::ids::{EventId, Sku, StoreId};
use crate::model::{CanonicalEvent, EventEnvelope, StockLevel};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// A change to one store + SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockDelta {
    /// The store.
    pub store_id: StoreId,
    /// The SKU.
    pub sku: Sku,
    /// Units added (negative: removed).
    pub delta: i64,
}

/// The on-hand quantity of a store + SKU after an applied delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockChange {
    /// The delta applied.
    pub delta: StockDelta,
    /// On hand after it.
    pub on_hand: i64,
}

/// A count of one store + SKU: `on_hand` units were there at `counted_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockCount {
    /// The store.
    pub store_id: StoreId,
    /// The SKU.
    pub sku: Sku,
    /// Units counted.
    pub on_hand: i64,
    /// When the count was taken.
    pub counted_at: DateTime<Utc>,
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The deltas were applied now (deltas already inside a later count are left out: they change
    /// nothing). For a count, one change: the correction it made.
    Applied(Vec<StockChange>),
    /// The event had been applied before: nothing changed.
    AlreadyApplied,
    /// A count older than the latest count applied (or than the move retention): recorded, no effect.
    StaleCount,
}

/// How long the ledgers keep each delta's time (for counts that arrive after later deltas), and the
/// applied markers: 14 days of queue retention plus 14 days in the DLQ, and margin.
pub const MOVE_RETENTION_DAYS: i64 = 35;

/// A time as a fixed-width UTC string (nanoseconds): sorts as it compares, in redb and DynamoDB keys.
pub fn sortable_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// A stock ledger failure (always retryable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stock ledger: {0}")]
pub struct LedgerError(pub String);

/// The stock ledger port.
#[async_trait]
pub trait StockLedger: Send + Sync {
    /// Applies `deltas` of a fact that happened at `at`, atomically, once per `event_id`. A delta at or
    /// before the latest count of its store + SKU is inside that count and changes nothing.
    async fn apply(
        &self,
        event_id: &EventId,
        at: DateTime<Utc>,
        deltas: &[StockDelta],
    ) -> Result<ApplyOutcome, LedgerError>;
    /// Applies a count once per `event_id`: the level becomes the count plus the deltas recorded after
    /// it, unless a later count was applied already ([`ApplyOutcome::StaleCount`]).
    async fn apply_count(
        &self,
        event_id: &EventId,
        count: &StockCount,
        now: DateTime<Utc>,
    ) -> Result<ApplyOutcome, LedgerError>;
    /// The on-hand quantity (0 when never touched).
    async fn on_hand(&self, store: &StoreId, sku: &Sku) -> Result<i64, LedgerError>;
    /// A store's levels in SKU order, after `after`, at most `limit`; the last SKU when more follow.
    async fn store_levels(
        &self,
        store: &StoreId,
        after: Option<&Sku>,
        limit: usize,
    ) -> Result<(Vec<(Sku, i64)>, Option<Sku>), LedgerError>;
}

/// The count an event carries (a `StockAdjusted` with `on_hand`).
pub fn count_of(event: &CanonicalEvent) -> Option<StockCount> {
    match event {
        CanonicalEvent::StockAdjusted(a) => match a.change {
            crate::model::StockChange::Set { on_hand } => Some(StockCount {
                store_id: a.store_id.clone(),
                sku: a.sku.clone(),
                on_hand,
                counted_at: a.occurred_at,
            }),
            crate::model::StockChange::Delta { .. } => None,
        },
        _ => None,
    }
}

/// The deltas an event implies, merged per store + SKU (a transaction cannot touch an item twice).
pub fn deltas_of(event: &CanonicalEvent) -> Vec<StockDelta> {
    let mut merged: BTreeMap<(StoreId, Sku), i64> = BTreeMap::new();
    match event {
        CanonicalEvent::SaleCompleted(sale) => {
            for line in &sale.lines {
                if let Some(sku) = &line.sku {
                    *merged
                        .entry((sale.store_id.clone(), sku.clone()))
                        .or_default() -= i64::from(line.quantity.get());
                }
            }
        }
        CanonicalEvent::ReturnCompleted(ret) => {
            for line in ret.lines.iter().filter(|l| l.restock) {
                if let Some(sku) = &line.sku {
                    *merged
                        .entry((ret.store_id.clone(), sku.clone()))
                        .or_default() += i64::from(line.quantity.get());
                }
            }
        }
        CanonicalEvent::StockAdjusted(a) => {
            if let crate::model::StockChange::Delta { delta } = a.change {
                *merged
                    .entry((a.store_id.clone(), a.sku.clone()))
                    .or_default() += delta;
            }
        }
        _ => {}
    }
    merged
        .into_iter()
        .filter(|(_, d)| *d != 0)
        .map(|((store_id, sku), delta)| StockDelta {
            store_id,
            sku,
            delta,
        })
        .collect()
}

/// The notifications a set of changes calls for: `StockNegative` when a change took stock below zero,
/// `StockLow` when it crossed the threshold downwards (from above it to at or below it).
pub fn notifications(
    changes: &[StockChange],
    threshold: i64,
    cause: &EventEnvelope,
) -> Vec<CanonicalEvent> {
    let mut out = Vec::new();
    for c in changes {
        let before = c.on_hand - c.delta.delta;
        let level = || StockLevel {
            store_id: c.delta.store_id.clone(),
            sku: c.delta.sku.clone(),
            on_hand: c.on_hand,
            threshold,
            caused_by: cause.event_id.clone(),
            occurred_at: cause.event.occurred_at(),
        };
        if c.on_hand < 0 && before >= 0 {
            out.push(CanonicalEvent::StockNegative(level()));
        } else if c.on_hand <= threshold && before > threshold {
            out.push(CanonicalEvent::StockLow(level()));
        }
    }
    out
}

#[cfg(test)]
mod tests;

/// The stock-sync consumer: SQS records in, ledger deltas and notifications out.
pub struct StockSync {
    ledger: std::sync::Arc<dyn StockLedger>,
    bus: std::sync::Arc<dyn crate::ports::EventPublisher>,
    clock: std::sync::Arc<dyn crate::ports::Clock>,
    threshold: i64,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    lines: std::sync::Arc<dyn crate::ports::LinesSource>,
}

impl StockSync {
    /// Wires the consumer. `threshold`: at or below it a SKU is low.
    pub fn new(
        ledger: std::sync::Arc<dyn StockLedger>,
        bus: std::sync::Arc<dyn crate::ports::EventPublisher>,
        clock: std::sync::Arc<dyn crate::ports::Clock>,
        threshold: i64,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            ledger,
            bus,
            clock,
            threshold,
            metrics,
            lines: std::sync::Arc::new(crate::store::claim::NoLinesSource),
        }
    }

    /// Where claim-checked lines are read from (the capture store); without it such an event fails
    /// (retryable), never applied without its lines.
    pub fn with_lines_source(
        mut self,
        lines: std::sync::Arc<dyn crate::ports::LinesSource>,
    ) -> Self {
        self.lines = lines;
        self
    }

    /// Handles one SQS record body (an EventBridge event).
    pub async fn handle_body(&self, body: &str) -> Result<(), crate::sqs_batch::RecordError> {
        use crate::sqs_batch::RecordError;
        let msg = crate::bus::BusMessage::parse(body).map_err(RecordError::Poison)?;
        let envelope = msg.detail;
        let span = tracing::info_span!("stock", event_id = %envelope.event_id, correlation_id = %envelope.correlation_id);
        tracing::Instrument::instrument(
            async {
                let envelope = crate::store::claim::resolve(self.lines.as_ref(), envelope)
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "claim-checked lines not resolved");
                        self.metrics
                            .emit(&[("Failures", crate::metrics::Unit::Count, 1.0)]);
                        crate::store::claim::record_error(e)
                    })?;
                self.apply(&envelope).await
            },
            span,
        )
        .await
    }

    async fn apply(&self, envelope: &EventEnvelope) -> Result<(), crate::sqs_batch::RecordError> {
        use crate::metrics::Unit;
        use crate::sqs_batch::RecordError;
        let applied = match count_of(&envelope.event) {
            Some(count) => {
                self.ledger
                    .apply_count(&envelope.event_id, &count, self.clock.now())
                    .await
            }
            None => {
                let deltas = deltas_of(&envelope.event);
                self.ledger
                    .apply(&envelope.event_id, envelope.event.occurred_at(), &deltas)
                    .await
            }
        };
        match applied {
            Ok(ApplyOutcome::StaleCount) => {
                tracing::warn!("count older than the latest count: not applied");
                self.metrics.emit(&[("StaleCounts", Unit::Count, 1.0)]);
                Ok(())
            }
            Err(e) => {
                self.metrics.emit(&[("Failures", Unit::Count, 1.0)]);
                Err(RecordError::Retryable(e.to_string()))
            }
            Ok(ApplyOutcome::AlreadyApplied) => {
                tracing::info!("already applied");
                self.metrics.emit(&[("Duplicates", Unit::Count, 1.0)]);
                Ok(())
            }
            Ok(ApplyOutcome::Applied(changes)) => {
                let negative = changes.iter().filter(|c| c.on_hand < 0).count();
                self.metrics.emit(&[
                    ("StockUpdates", Unit::Count, changes.len() as f64),
                    ("StockNegative", Unit::Count, negative as f64),
                ]);
                let notes: Vec<EventEnvelope> = notifications(&changes, self.threshold, envelope)
                    .into_iter()
                    .map(|n| {
                        EventEnvelope::new(n, envelope.correlation_id.clone(), self.clock.now())
                    })
                    .collect();
                if !notes.is_empty() {
                    // Notifications are advisory and the deltas are committed: a failed publish is logged and
                    // counted, not retried (a redelivery would find the event applied and send nothing).
                    if let Err(e) = self.bus.publish(&notes).await {
                        tracing::error!(error = %e, "stock notifications not published");
                        self.metrics.emit(&[(
                            "NotificationFailures",
                            Unit::Count,
                            notes.len() as f64,
                        )]);
                    }
                }
                tracing::info!(lines = changes.len(), negative, "stock updated");
                Ok(())
            }
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

#[async_trait::async_trait]
impl crate::sqs_batch::RecordHandler for StockSync {
    async fn handle_record(
        &self,
        record: &aws_lambda_events::event::sqs::SqsMessage,
    ) -> Result<(), crate::sqs_batch::RecordError> {
        self.handle_body(record.body.as_deref().unwrap_or_default())
            .await
    }
}
