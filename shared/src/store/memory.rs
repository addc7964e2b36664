//! The capture store in process memory: the in-memory adapter for unit tests and the capture handler's
//! latency benchmark (`shared/benches/capture.rs`).
//!
//! It decides every capture with the same rules as the durable adapters ([`super::decide`]) and writes
//! delivery record, canonical record, outbox entry and claimed lines under one lock, so a capture is
//! atomic and concurrent duplicates dedupe as they do in redb and DynamoDB.
//!
//! What it does not cover: durability (nothing survives the process), serialisation (values are kept as
//! they are, not encoded, so a value the durable stores could not encode is not caught here), DynamoDB's
//! sharded outbox index and item size limits, and the outbox feed ([`super::embedded::EmbeddedStore`]
//! announces entries; this store does not).

use super::{
    CanonicalRecord, CaptureOutcome, CaptureWrite, Decision, DeliveryRecord, OutboxEntry,
    OutboxStatus, QuarantineRecord, StoreError, decide,
};
use crate::ids::EventId;
use crate::model::LinesRef;
use crate::ports::{CaptureStore, LinesSource};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug, Default)]
struct Tables {
    deliveries: HashMap<String, DeliveryRecord>,
    records: HashMap<String, CanonicalRecord>,
    outbox: HashMap<String, OutboxEntry>,
    lines: HashMap<String, Vec<Vec<u8>>>,
    quarantine: HashMap<String, QuarantineRecord>,
}

/// The capture store in memory.
#[derive(Debug, Default)]
pub struct MemoryStore(Mutex<Tables>);

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every canonical record (any order).
    pub fn records(&self) -> Vec<CanonicalRecord> {
        self.tables().records.values().cloned().collect()
    }

    /// Outbox entries still pending publication (any order).
    pub fn pending_outbox(&self) -> Vec<OutboxEntry> {
        self.tables()
            .outbox
            .values()
            .filter(|e| e.status == OutboxStatus::Pending)
            .cloned()
            .collect()
    }
}

#[async_trait]
impl CaptureStore for MemoryStore {
    async fn capture(&self, write: CaptureWrite) -> Result<CaptureOutcome, StoreError> {
        let mut t = self.tables();
        let key = write.delivery.key();
        let fact_exists = write
            .facts()
            .any(|(record, _)| t.records.contains_key(&record.record_key));
        let requirement_met = write
            .requires
            .as_ref()
            .is_none_or(|req| t.records.contains_key(&req.record_key));
        let now = write.delivery.received_at;
        Ok(
            match decide(
                t.deliveries.get(&key),
                fact_exists,
                requirement_met,
                &write,
                now,
            ) {
                Decision::Nothing(outcome) => outcome,
                Decision::WriteDeliveryOnly(delivery) => {
                    t.deliveries.insert(key, delivery.clone());
                    CaptureOutcome::FactAlreadyCaptured { delivery }
                }
                Decision::WriteIgnored(delivery) => {
                    t.deliveries.insert(key, delivery.clone());
                    CaptureOutcome::RequirementMissing { delivery }
                }
                Decision::WriteAll => {
                    let CaptureWrite {
                        delivery,
                        fact,
                        also,
                        lines,
                        ..
                    } = write;
                    t.deliveries.insert(key, delivery);
                    for (record, entry) in fact.into_iter().chain(also) {
                        t.outbox
                            .insert(entry.envelope.event_id.as_str().to_owned(), entry);
                        t.records.insert(record.record_key.clone(), record);
                    }
                    for claimed in lines {
                        t.lines
                            .insert(claimed.reference.key.clone(), claimed.chunks);
                    }
                    CaptureOutcome::Stored
                }
            },
        )
    }

    async fn outbox_entry(&self, event_id: &EventId) -> Result<Option<OutboxEntry>, StoreError> {
        Ok(self.tables().outbox.get(event_id.as_str()).cloned())
    }

    async fn mark_published(
        &self,
        event_id: &EventId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(entry) = self.tables().outbox.get_mut(event_id.as_str())
            && entry.status == OutboxStatus::Pending
        {
            entry.status = OutboxStatus::Published { at };
        }
        Ok(())
    }

    async fn quarantine(&self, record: QuarantineRecord) -> Result<(), StoreError> {
        // The first copy is kept: a vendor's retry of the same delivery adds nothing.
        self.tables()
            .quarantine
            .entry(record.key())
            .or_insert(record);
        Ok(())
    }
}

#[async_trait]
impl LinesSource for MemoryStore {
    async fn line_chunks(&self, reference: &LinesRef) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        Ok(self
            .tables()
            .lines
            .get(&reference.key)
            .filter(|chunks| chunks.len() == reference.chunks as usize)
            .cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{CaptureService, CaptureSettings, Captured};
    use crate::ports::ManualClock;
    use crate::samples;
    use crate::secrets::{StaticSecrets, dev_secrets};
    use std::sync::Arc;

    fn service(store: Arc<MemoryStore>) -> CaptureService {
        CaptureService::new(
            store,
            Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
            Arc::new(ManualClock::new(samples::sample_time())),
            CaptureSettings::default(),
        )
    }

    fn sale(msg_id: &str, sale_id: &str) -> crate::capture::WebhookRequest {
        let body = samples::standard_sale(sale_id, "store-001", None, 3);
        samples::standard(msg_id, &body, samples::sample_time(), None).to_request("t")
    }

    #[tokio::test]
    async fn captures_once_and_dedupes_by_delivery_and_by_fact() {
        let store = Arc::new(MemoryStore::new());
        let svc = service(store.clone());
        assert!(matches!(
            svc.handle(&sale("msg_1", "s-1")).await,
            Ok(Captured::Accepted { .. })
        ));
        // The same delivery again, then the same fact under another delivery id.
        assert!(matches!(
            svc.handle(&sale("msg_1", "s-1")).await,
            Ok(Captured::Duplicate { .. })
        ));
        assert!(matches!(
            svc.handle(&sale("msg_2", "s-1")).await,
            Ok(Captured::Duplicate { .. })
        ));
        assert_eq!(store.records().len(), 1);
        let pending = store.pending_outbox();
        assert_eq!(pending.len(), 1);
        let id = pending[0].envelope.event_id.clone();
        store
            .mark_published(&id, samples::sample_time())
            .await
            .expect("mark");
        assert!(store.pending_outbox().is_empty());
    }

    #[tokio::test]
    async fn the_same_delivery_id_with_another_body_is_a_conflict() {
        let store = Arc::new(MemoryStore::new());
        let svc = service(store.clone());
        svc.handle(&sale("msg_1", "s-1")).await.expect("first");
        let other = svc.handle(&sale("msg_1", "s-2")).await;
        assert!(other.is_err(), "{other:?}");
        assert_eq!(store.records().len(), 1);
    }
}
