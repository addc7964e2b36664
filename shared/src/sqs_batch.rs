//! SQS batch processing with partial failures, for every SQS-triggered function.
//!
//! Each record is handled on its own; the ones that fail are returned as `batchItemFailures`, so only
//! they come back (after the visibility timeout) and, after `maxReceiveCount`, move to the DLQ. The
//! event source mapping must enable `ReportBatchItemFailures` (infra/ does). Unparseable records are
//! failures like any other (they reach the DLQ), never a panic and never a silent drop.
//!
//! FIFO queues: once a record of a message group fails, the later records of that group in the batch
//! are reported failed without being processed, so the group's order holds; other groups go on.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use std::collections::HashSet;

/// Queue type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// Standard queue: records are independent.
    Standard,
    /// FIFO queue: order within a message group must hold.
    Fifo,
}

/// Why one record failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record can never succeed (unparseable, invalid): it will reach the DLQ after
    /// `maxReceiveCount` receives, where an operator sees it.
    #[error("poison record: {0}")]
    Poison(String),
    /// A transient failure (store, downstream): the redelivery may succeed.
    #[error("transient failure: {0}")]
    Retryable(String),
}

/// What a batch did.
#[derive(Debug, Clone, Default)]
pub struct BatchOutcome {
    /// The Lambda response.
    pub response: SqsBatchResponse,
    /// Records handled successfully.
    pub succeeded: usize,
    /// Records reported failed (poison + retryable + skipped FIFO followers).
    pub failed: usize,
    /// Of which poison.
    pub poison: usize,
}

fn failure(id: &str) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id.to_owned();
    f
}

/// Handles one SQS record (what a consumer implements).
#[async_trait::async_trait]
pub trait RecordHandler: Send + Sync {
    /// Handles one record.
    async fn handle_record(&self, record: &SqsMessage) -> Result<(), RecordError>;
}

/// Processes `event` record by record with `handler`.
pub async fn process_batch(
    event: &SqsEvent,
    kind: QueueKind,
    handler: &dyn RecordHandler,
) -> BatchOutcome {
    let mut outcome = BatchOutcome::default();
    let mut failed_groups: HashSet<String> = HashSet::new();
    for record in &event.records {
        // A record without an id cannot be reported individually; an empty identifier makes Lambda
        // retry the whole batch, which is safe (handlers are idempotent) and loses nothing.
        let id = record.message_id.clone().unwrap_or_default();
        let group = record.attributes.get("MessageGroupId").cloned();
        if kind == QueueKind::Fifo
            && let Some(g) = group.as_ref().filter(|g| failed_groups.contains(*g))
        {
            tracing::warn!(message_id = %id, group = %g, "skipped: an earlier record of its FIFO group failed");
            outcome.response.batch_item_failures.push(failure(&id));
            outcome.failed += 1;
            continue;
        }
        match handler.handle_record(record).await {
            Ok(()) => outcome.succeeded += 1,
            Err(e) => {
                if matches!(e, RecordError::Poison(_)) {
                    outcome.poison += 1;
                }
                let receives = record
                    .attributes
                    .get("ApproximateReceiveCount")
                    .map_or("?", String::as_str);
                tracing::error!(message_id = %id, receive_count = receives, error = %e, "record failed");
                outcome.response.batch_item_failures.push(failure(&id));
                outcome.failed += 1;
                if kind == QueueKind::Fifo
                    && let Some(g) = group
                {
                    failed_groups.insert(g);
                }
            }
        }
    }
    outcome
}

/// A standard-queue batch with the consumers' per-batch metrics (`BatchRecords`, `RecordFailures`,
/// `PoisonRecords`, `HandlerLatency`): what every SQS-triggered function returns to Lambda.
pub async fn process_standard_batch(
    event: &SqsEvent,
    handler: &dyn RecordHandler,
    metrics: &crate::metrics::Metrics,
) -> SqsBatchResponse {
    use crate::metrics::Unit;
    let started = std::time::Instant::now();
    let outcome = process_batch(event, QueueKind::Standard, handler).await;
    metrics.emit(&[
        ("BatchRecords", Unit::Count, event.records.len() as f64),
        ("RecordFailures", Unit::Count, outcome.failed as f64),
        ("PoisonRecords", Unit::Count, outcome.poison as f64),
        (
            "HandlerLatency",
            Unit::Milliseconds,
            started.elapsed().as_secs_f64() * 1000.0,
        ),
    ]);
    outcome.response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, body: &str, group: Option<&str>) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.to_owned());
        m.body = Some(body.to_owned());
        if let Some(g) = group {
            m.attributes.insert("MessageGroupId".into(), g.into());
        }
        m
    }

    fn event(records: Vec<SqsMessage>) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = records;
        e
    }

    struct ByBody;

    #[async_trait::async_trait]
    impl RecordHandler for ByBody {
        async fn handle_record(&self, m: &SqsMessage) -> Result<(), RecordError> {
            match m.body.as_deref() {
                Some("ok") => Ok(()),
                Some("retry") => Err(RecordError::Retryable("downstream".into())),
                _ => Err(RecordError::Poison("unparseable".into())),
            }
        }
    }

    fn failed_ids(o: &BatchOutcome) -> Vec<&str> {
        o.response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    #[tokio::test]
    async fn only_failed_records_are_reported() {
        let e = event(vec![
            msg("1", "ok", None),
            msg("2", "{not json", None),
            msg("3", "ok", None),
            msg("4", "retry", None),
        ]);
        let o = process_batch(&e, QueueKind::Standard, &ByBody).await;
        assert_eq!(failed_ids(&o), vec!["2", "4"]);
        assert_eq!((o.succeeded, o.failed, o.poison), (2, 2, 1));
    }

    #[tokio::test]
    async fn fifo_stops_a_group_at_its_first_failure_and_other_groups_go_on() {
        let e = event(vec![
            msg("a1", "ok", Some("A")),
            msg("a2", "retry", Some("A")),
            msg("b1", "ok", Some("B")),
            msg("a3", "ok", Some("A")),
            msg("b2", "ok", Some("B")),
        ]);
        let o = process_batch(&e, QueueKind::Fifo, &ByBody).await;
        assert_eq!(failed_ids(&o), vec!["a2", "a3"]);
        assert_eq!(o.succeeded, 3);
    }

    #[tokio::test]
    async fn an_empty_batch_reports_nothing() {
        let o = process_batch(&event(vec![]), QueueKind::Standard, &ByBody).await;
        assert!(o.response.batch_item_failures.is_empty());
    }

    #[test]
    fn the_response_serialises_as_lambda_expects() {
        let mut r = SqsBatchResponse::default();
        r.batch_item_failures.push(failure("m-1"));
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["batchItemFailures"][0]["itemIdentifier"], "m-1");
    }
}
