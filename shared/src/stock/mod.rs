//! Stock sync: per store + SKU on-hand quantities, changed by commutative deltas, exactly once per event.
//!
//! - A sale takes its lines' quantities off, a return with restock puts them back; lines without a SKU
//!   (custom items) and returns without restock change nothing.
//! - Deltas are atomic `ADD`s, so the order in which events arrive does not matter (standard queues
//!   suffice); the lines of one event are applied in one transaction together with a marker keyed by
//!   the event id, so a redelivery applies nothing twice.
//! - Stock may go negative (the sale already happened): it is flagged with a `StockNegative` event and
//!   metric, never refused. Crossing the low-stock threshold downwards publishes `StockLow`.

pub mod config;
pub mod dynamodb;
pub mod embedded;

use crate::ids::{EventId, Sku, StoreId};
use crate::model::{CanonicalEvent, EventEnvelope, StockLevel};
use async_trait::async_trait;
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

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The deltas were applied now.
    Applied(Vec<StockChange>),
    /// The event had been applied before: nothing changed.
    AlreadyApplied,
}

/// A stock ledger failure (always retryable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stock ledger: {0}")]
pub struct LedgerError(pub String);

/// The stock ledger port.
#[async_trait]
pub trait StockLedger: Send + Sync {
    /// Applies `deltas` atomically, once per `event_id`.
    async fn apply(
        &self,
        event_id: &EventId,
        deltas: &[StockDelta],
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
        }
    }

    /// Handles one SQS record body (an EventBridge event).
    pub async fn handle_body(&self, body: &str) -> Result<(), crate::sqs_batch::RecordError> {
        use crate::sqs_batch::RecordError;
        let msg = crate::bus::BusMessage::parse(body).map_err(RecordError::Poison)?;
        let envelope = msg.detail;
        let span = tracing::info_span!("stock", event_id = %envelope.event_id, correlation_id = %envelope.correlation_id);
        tracing::Instrument::instrument(self.apply(&envelope), span).await
    }

    async fn apply(&self, envelope: &EventEnvelope) -> Result<(), crate::sqs_batch::RecordError> {
        use crate::metrics::Unit;
        use crate::sqs_batch::RecordError;
        let deltas = deltas_of(&envelope.event);
        match self.ledger.apply(&envelope.event_id, &deltas).await {
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
