//! Publication of the outbox. A capture only stores its fact with an outbox entry; the entries reach
//! the bus through [`OutboxRelay::publish_entries`], called from two places:
//! - the stream path, right after the commit: the table's DynamoDB stream on AWS ([`stream`],
//!   `outbox-publisher`), the embedded store's feed locally ([`feed`]);
//! - the sweep, [`OutboxRelay::run`], on a schedule (EventBridge Scheduler in AWS, a timer in
//!   `pos-local`): entries still pending after `min_age`, whatever the stream path missed.
//!
//! Only entries pending for longer than `min_age` are swept, so the sweep does not race the stream path
//! on fresh entries; publishing twice would be harmless anyway (the event id is stable and consumers
//! dedupe on it).

pub mod config;
pub mod feed;
pub mod stream;

use crate::bus::{PublishError, batches, check_entry};
use crate::ids::EventId;
use crate::metrics::{Metrics, Unit};
use crate::ports::{CaptureStore, Clock, EventPublisher};
use crate::store::{OutboxEntry, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Reads pending outbox entries.
#[async_trait]
pub trait OutboxSource: Send + Sync {
    /// Up to `limit` entries pending since before `cutoff`, oldest first. A sharded index (DynamoDB)
    /// gives each shard an equal share of `limit`, so one busy shard cannot hold back the others.
    async fn pending_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Takes an entry the bus refuses for good out of the pending set (status `failed`, with `reason`),
    /// so it stops coming back every run; the entry itself is kept for an operator.
    async fn mark_failed(
        &self,
        event_id: &EventId,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError>;
}

/// What a relay run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayReport {
    /// Pending entries old enough to relay.
    pub found: usize,
    /// Published and marked.
    pub published: usize,
    /// Still pending (the bus or the store failed; the next run retries).
    pub failed: usize,
    /// Refused by the bus for good (over its size limit): marked failed, metric `OutboxPoisoned`.
    #[serde(default)]
    pub poisoned: usize,
}

/// What [`OutboxRelay::publish_entries`] did with each entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// Accepted by the bus (marked published, unless counted in `unmarked`).
    pub published: Vec<EventId>,
    /// Still pending: the bus failed or rejected them, or a poisoned entry could not be marked.
    pub failed: Vec<EventId>,
    /// Refused by the bus for good (over its size limit): marked failed.
    pub poisoned: Vec<EventId>,
    /// Published but the mark failed (the sweep will publish them again; consumers dedupe).
    pub unmarked: usize,
}

impl Published {
    /// The report of a run that found `found` entries.
    pub fn report(&self, found: usize) -> RelayReport {
        RelayReport {
            found,
            published: self.published.len() - self.unmarked,
            failed: self.failed.len() + self.unmarked,
            poisoned: self.poisoned.len(),
        }
    }
}

/// The input the schedule sends (EventBridge Scheduler `input`; `scheduled_at` is filled by Scheduler).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledJob {
    /// The job name (`outbox-relay`).
    pub job: String,
    /// When the schedule fired.
    #[serde(default)]
    pub scheduled_at: Option<String>,
}

/// Why a run failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The pending entries could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Some entries could not be published; they stay pending.
    #[error("{0} outbox entries could not be published; they stay pending for the next run")]
    Incomplete(usize),
}

/// The relay.
pub struct OutboxRelay {
    source: Arc<dyn OutboxSource>,
    store: Arc<dyn CaptureStore>,
    bus: Arc<dyn EventPublisher>,
    clock: Arc<dyn Clock>,
    min_age: Duration,
    limit: usize,
    metrics: Arc<Metrics>,
}

impl OutboxRelay {
    /// Wires the relay: entries older than `min_age`, at most `limit` per run.
    pub fn new(
        source: Arc<dyn OutboxSource>,
        store: Arc<dyn CaptureStore>,
        bus: Arc<dyn EventPublisher>,
        clock: Arc<dyn Clock>,
        min_age: Duration,
        limit: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            source,
            store,
            bus,
            clock,
            min_age,
            limit,
            metrics,
        }
    }

    /// The relay's metrics emitter.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// One run of the safety net: the entries still pending after `min_age` (the stream path missed them,
    /// or failed on them), published by [`OutboxRelay::publish_entries`]. A run that could not publish
    /// everything fails, so the schedule's retry and the error alarm take over.
    pub async fn run(&self) -> Result<RelayReport, RelayError> {
        let now = self.clock.now();
        let pending = self
            .source
            .pending_before(now - self.min_age, self.limit)
            .await?;
        let found = pending.len();
        let outcome = self.publish_entries(pending).await;
        let report = outcome.report(found);
        self.metrics.emit(&[
            ("OutboxFound", Unit::Count, report.found as f64),
            ("OutboxRelayed", Unit::Count, report.published as f64),
            ("OutboxRelayFailures", Unit::Count, report.failed as f64),
            ("OutboxPoisoned", Unit::Count, report.poisoned as f64),
        ]);
        if report.found > 0 {
            tracing::info!(
                found = report.found,
                published = report.published,
                failed = report.failed,
                poisoned = report.poisoned,
                "outbox relayed"
            );
        }
        if report.failed > 0 {
            return Err(RelayError::Incomplete(report.failed));
        }
        Ok(report)
    }

    /// Runs [`OutboxRelay::run`] again while a run finds a full page and publishes some of it, at most
    /// `max_runs` times: a backlog (the local feed dropped entries under a burst, or a stream outage) goes
    /// out at the bus's pace, not one page per schedule. Stops at the first failed run (its error) and
    /// returns the summed report otherwise.
    pub async fn drain(&self, max_runs: usize) -> Result<RelayReport, RelayError> {
        let mut total = RelayReport::default();
        for _ in 0..max_runs.max(1) {
            let report = self.run().await?;
            total.found += report.found;
            total.published += report.published;
            total.failed += report.failed;
            total.poisoned += report.poisoned;
            if report.found < self.limit || report.published == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// Publishes pending entries, in order: the one publishing routine of the scheduled sweep
    /// ([`OutboxRelay::run`]) and of the stream path ([`stream`], [`feed`]). Entries over the bus's size
    /// limit are marked failed (poison) without a call; the others go out in `PutEvents`-sized batches
    /// (10 entries, 256 KiB); what the bus accepted is marked published, and an entry it rejects stays
    /// pending (listed in [`Published::failed`]) without holding back the rest of its batch.
    pub async fn publish_entries(&self, entries: Vec<OutboxEntry>) -> Published {
        let mut out = Published::default();
        let mut publishable = Vec::with_capacity(entries.len());
        let mut sizes = Vec::with_capacity(entries.len());
        for entry in entries {
            match check_entry(&entry.envelope) {
                Ok((_, size)) => {
                    sizes.push(size);
                    publishable.push(entry.envelope);
                }
                Err(e) => self.poison(&entry.envelope.event_id, &e, &mut out).await,
            }
        }
        for batch in batches(&sizes) {
            let envelopes = &publishable[batch];
            let rejected: Vec<EventId> = match self.bus.publish(envelopes).await {
                Ok(()) => Vec::new(),
                Err(PublishError::Rejected {
                    rejected, detail, ..
                }) => {
                    tracing::error!(%detail, count = rejected.len(), "the bus rejected entries; they stay pending");
                    rejected
                }
                Err(e) => {
                    tracing::error!(error = %e, count = envelopes.len(), "could not publish; entries stay pending");
                    out.failed
                        .extend(envelopes.iter().map(|e| e.event_id.clone()));
                    continue;
                }
            };
            let at = self.clock.now();
            for envelope in envelopes {
                if rejected.contains(&envelope.event_id) {
                    out.failed.push(envelope.event_id.clone());
                    continue;
                }
                // Published either way: a failed mark only means the sweep publishes it again later,
                // which consumers dedupe on the event id.
                if let Err(e) = self.store.mark_published(&envelope.event_id, at).await {
                    tracing::warn!(event_id = %envelope.event_id, error = %e, "published but not marked; the relay may republish");
                    out.unmarked += 1;
                }
                out.published.push(envelope.event_id.clone());
            }
        }
        out
    }

    /// Marks an entry the bus can never take as failed; if even that fails it stays pending (counted as
    /// a failure, retried next run).
    async fn poison(&self, event_id: &EventId, why: &PublishError, out: &mut Published) {
        tracing::error!(%event_id, reason = %why, "outbox entry can never be published; marked failed");
        match self
            .source
            .mark_failed(event_id, self.clock.now(), &why.to_string())
            .await
        {
            Ok(()) => out.poisoned.push(event_id.clone()),
            Err(e) => {
                tracing::warn!(%event_id, error = %e, "could not mark the entry failed");
                out.failed.push(event_id.clone());
            }
        }
    }
}

#[async_trait]
impl OutboxSource for crate::store::embedded::EmbeddedStore {
    async fn mark_failed(
        &self,
        event_id: &EventId,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        let failed = crate::store::OutboxStatus::Failed {
            at,
            reason: reason.to_owned(),
        };
        self.settle_outbox(event_id, failed).await
    }

    async fn pending_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        use crate::store::StoreInspect;
        let mut pending: Vec<OutboxEntry> = self
            .pending_outbox()
            .await?
            .into_iter()
            .filter(|e| e.created_at < cutoff)
            .collect();
        pending.sort_by_key(|e| e.created_at);
        pending.truncate(limit);
        Ok(pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::memory::RecordingBus;
    use crate::capture::{CaptureService, CaptureSettings};
    use crate::metrics::Sink;
    use crate::ports::ManualClock;
    use crate::samples;
    use crate::secrets::{StaticSecrets, dev_secrets};
    use crate::store::StoreInspect;
    use crate::store::embedded::EmbeddedStore;

    /// The outbox's world on in-memory adapters: a store, a recording bus, a manual clock, the capture
    /// writing to them and the relay (60 s minimum age, 100 per run) publishing from them.
    pub(crate) struct Rig {
        pub(crate) store: EmbeddedStore,
        pub(crate) bus: Arc<RecordingBus>,
        pub(crate) clock: Arc<ManualClock>,
        pub(crate) capture: CaptureService,
        pub(crate) relay: OutboxRelay,
    }

    pub(crate) fn rig() -> Rig {
        let store = EmbeddedStore::in_memory().expect("store");
        let bus = Arc::new(RecordingBus::new());
        let clock = Arc::new(ManualClock::new(samples::sample_time()));
        let capture = CaptureService::new(
            Arc::new(store.clone()),
            Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
            clock.clone(),
            CaptureSettings::default(),
        );
        let relay = OutboxRelay::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            bus.clone(),
            clock.clone(),
            Duration::seconds(60),
            100,
            Arc::new(Metrics::new("outbox-relay", Sink::Off)),
        );
        Rig {
            store,
            bus,
            clock,
            capture,
            relay,
        }
    }

    #[tokio::test]
    async fn a_backlog_drains_in_one_schedule_not_one_page_per_run() {
        let Rig {
            bus,
            clock,
            capture,
            relay,
            ..
        } = rig();
        // 250 entries no publisher took; the relay's page is 100.
        for i in 0..250 {
            let sale = samples::standard(
                &format!("msg_backlog_{i}"),
                &samples::standard_sale(&format!("backlog-{i}"), "store-1", None, 1),
                samples::sample_time(),
                None,
            );
            capture
                .handle(&sale.to_request("c"))
                .await
                .expect("captured");
        }
        clock.advance(Duration::seconds(61));
        let report = relay.drain(10).await.expect("drain");
        assert_eq!((report.found, report.published), (250, 250));
        assert_eq!(bus.events().len(), 250);
        // Nothing left: the next drain is one short run.
        assert_eq!(relay.drain(10).await.expect("drain").found, 0);
        // The bound holds: a drain of one run is one page.
        let rig2 = rig();
        for i in 0..150 {
            let sale = samples::standard(
                &format!("msg_bound_{i}"),
                &samples::standard_sale(&format!("bound-{i}"), "store-1", None, 1),
                samples::sample_time(),
                None,
            );
            rig2.capture
                .handle(&sale.to_request("c"))
                .await
                .expect("captured");
        }
        rig2.clock.advance(Duration::seconds(61));
        assert_eq!(rig2.relay.drain(1).await.expect("drain").published, 100);
    }

    #[tokio::test]
    async fn entries_no_publisher_took_are_relayed_once_old_enough() {
        let Rig {
            store,
            bus,
            clock,
            capture,
            relay,
        } = rig();
        // Stored, and no stream publisher took it (it failed, or the feed was full).
        let sale = samples::standard(
            "msg_relay",
            &samples::standard_sale("relay-1", "store-1", None, 1),
            samples::sample_time(),
            None,
        );
        capture
            .handle(&sale.to_request("c"))
            .await
            .expect("captured");
        assert_eq!(
            relay.run().await.expect("run").found,
            0,
            "too young: the stream publisher may still take it"
        );
        clock.advance(Duration::seconds(61));
        bus.fail_next(1);
        assert!(
            matches!(relay.run().await, Err(RelayError::Incomplete(1))),
            "bus still down: stays pending"
        );
        assert_eq!(store.pending_outbox().await.expect("outbox").len(), 1);
        let report = relay.run().await.expect("run");
        assert_eq!((report.found, report.published, report.failed), (1, 1, 0));
        assert_eq!(bus.events().len(), 1);
        assert!(store.pending_outbox().await.expect("outbox").is_empty());
        assert_eq!(relay.run().await.expect("run").found, 0, "nothing left");
    }

    #[tokio::test]
    async fn an_entry_too_large_for_the_bus_is_poisoned_and_the_others_publish() {
        let Rig {
            store,
            bus,
            clock,
            capture,
            relay,
        } = rig();
        // 12 small sales the stream path did not publish, and one entry over EventBridge's entry limit,
        // as releases before the claim check stored big sales (the capture now stores their lines aside).
        for i in 0..12 {
            let body = samples::standard_sale(&format!("small-{i}"), "store-1", None, 1);
            let d = samples::standard(
                &format!("msg_small_{i}"),
                &body,
                samples::sample_time(),
                None,
            );
            capture.handle(&d.to_request("c")).await.expect("captured");
        }
        let id = store_oversized_entry(&store, 2500).await;
        assert_eq!(store.pending_outbox().await.expect("outbox").len(), 13);

        clock.advance(Duration::seconds(61));
        let report = relay
            .run()
            .await
            .expect("a poisoned entry does not fail the run");
        assert_eq!(
            (
                report.found,
                report.published,
                report.failed,
                report.poisoned
            ),
            (13, 12, 0, 1)
        );
        assert_eq!(bus.events().len(), 12);
        assert!(store.pending_outbox().await.expect("outbox").is_empty());
        let entry = store.outbox_entry(&id).await.expect("read").expect("kept");
        assert!(
            matches!(entry.status, crate::store::OutboxStatus::Failed { .. }),
            "{:?}",
            entry.status
        );
        assert_eq!(
            relay.run().await.expect("run").found,
            0,
            "not retried every run"
        );
    }

    /// Stores `entry` as a capture would (delivery, record and the pending entry, one write).
    pub(crate) async fn store_entry(store: &EmbeddedStore, entry: OutboxEntry) {
        use crate::model::Vendor;
        use crate::store::{CanonicalRecord, CaptureWrite, DeliveryOutcome, DeliveryRecord};
        let now = entry.created_at;
        let key = entry.envelope.event_id.to_string();
        let record = CanonicalRecord {
            record_key: entry.envelope.event.record_key(),
            captured_at: now,
            vendor: Vendor::Standard,
            delivery_key: key.clone(),
            event: entry.envelope.event.clone(),
            lines_ref: None,
        };
        let write = CaptureWrite {
            delivery: DeliveryRecord {
                vendor: Vendor::Standard,
                delivery_key: key,
                payload_hash: "h".into(),
                outcome: DeliveryOutcome::Captured {
                    record_key: record.record_key.clone(),
                    event_id: entry.envelope.event_id.clone(),
                },
                correlation_id: "c".into(),
                received_at: now,
                expires_at: now + Duration::days(7),
            },
            fact: Some((record, entry)),
            also: Vec::new(),
            requires: None,
            lines: Vec::new(),
        };
        assert_eq!(
            store.capture(write).await.expect("stored"),
            crate::store::CaptureOutcome::Stored
        );
    }

    /// Writes a sale of `lines` lines with its whole envelope in the outbox, pending (no claim check).
    async fn store_oversized_entry(store: &EmbeddedStore, lines: usize) -> EventId {
        use crate::model::Vendor;
        use crate::store::{
            CanonicalRecord, CaptureWrite, DeliveryOutcome, DeliveryRecord, OutboxEntry,
            OutboxStatus,
        };
        let now = samples::sample_time();
        let envelope = crate::store::claim::tests::sale_envelope(lines);
        assert!(check_entry(&envelope).is_err(), "over the entry limit");
        let id = envelope.event_id.clone();
        let write = CaptureWrite {
            delivery: DeliveryRecord {
                vendor: Vendor::Standard,
                delivery_key: "msg_big".into(),
                payload_hash: "h".into(),
                outcome: DeliveryOutcome::Captured {
                    record_key: envelope.event.record_key(),
                    event_id: id.clone(),
                },
                correlation_id: "c".into(),
                received_at: now,
                expires_at: now + Duration::days(7),
            },
            fact: Some((
                CanonicalRecord {
                    record_key: envelope.event.record_key(),
                    captured_at: now,
                    vendor: Vendor::Standard,
                    delivery_key: "msg_big".into(),
                    event: envelope.event.clone(),
                    lines_ref: None,
                },
                OutboxEntry {
                    envelope,
                    status: OutboxStatus::Pending,
                    created_at: now,
                },
            )),
            also: Vec::new(),
            requires: None,
            lines: Vec::new(),
        };
        store.capture(write).await.expect("stored");
        id
    }

    #[test]
    fn the_scheduled_input_parses() {
        let job: ScheduledJob = serde_json::from_str(
            r#"{"job": "outbox-relay", "scheduled_at": "2026-01-15T10:00:00Z"}"#,
        )
        .expect("job");
        assert_eq!(job.job, "outbox-relay");
    }
}
