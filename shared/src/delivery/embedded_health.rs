//! The webhooks endpoint health ([`HealthStore`]) in redb, beside the ledger and the breakers of
//! [`EmbeddedDeliveries`] in the same database (`deliveries.redb` locally): table `webhook_health`, key
//! the subscription id, value the record (JSON). Writes are the same compare-and-set on `version` as the
//! breakers' (the DynamoDB adapter's conditional `PutItem` on `ENDPOINT#{id}`).

use super::embedded::{ENTRIES, EmbeddedDeliveries};
use super::ledger::{DeliveryEntry, DeliveryStatus, LedgerError};
use super::webhooks::{HealthRecord, HealthStore, HealthStoreError};
use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const HEALTH: TableDefinition<&str, &[u8]> = TableDefinition::new("webhook_health");

fn decode(bytes: &[u8]) -> Result<HealthRecord, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("corrupt health record: {e}"))
}

#[async_trait]
impl HealthStore for EmbeddedDeliveries {
    async fn load(&self, subscription: &str) -> Result<Option<HealthRecord>, HealthStoreError> {
        let read = || -> Result<Option<HealthRecord>, String> {
            let txn = self.db().begin_read().map_err(|e| e.to_string())?;
            // Created by the first write: absent means no record yet.
            let t = match txn.open_table(HEALTH) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            };
            t.get(subscription)
                .map_err(|e| e.to_string())?
                .map(|v| decode(v.value()))
                .transpose()
        };
        read().map_err(HealthStoreError)
    }

    async fn compare_and_set(
        &self,
        subscription: &str,
        expected: Option<u64>,
        record: &HealthRecord,
    ) -> Result<bool, HealthStoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| HealthStoreError(e.to_string()))?;
        let subscription = subscription.to_owned();
        self.write_if(move |txn| {
            let mut t = txn.open_table(HEALTH).map_err(|e| e.to_string())?;
            let stored = t
                .get(subscription.as_str())
                .map_err(|e| e.to_string())?
                .map(|v| decode(v.value()))
                .transpose()?;
            if stored.map(|r| r.version) != expected {
                return Ok(false);
            }
            t.insert(subscription.as_str(), bytes.as_slice())
                .map_err(|e| e.to_string())?;
            Ok(true)
        })
        .await
        .map_err(HealthStoreError)
    }
}

impl EmbeddedDeliveries {
    /// The entries of `destination` that are `dead` with `reason` (the operator's replay after a
    /// re-enable): a scan of the ledger, which is fine locally and run by hand.
    pub async fn dead_entries(
        &self,
        destination: &str,
        reason: &str,
    ) -> Result<Vec<DeliveryEntry>, LedgerError> {
        let read = || -> Result<Vec<DeliveryEntry>, String> {
            let txn = self.db().begin_read().map_err(|e| e.to_string())?;
            let t = txn.open_table(ENTRIES).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for row in t.iter().map_err(|e| e.to_string())? {
                let (k, v) = row.map_err(|e| e.to_string())?;
                if k.value().1 != destination {
                    continue;
                }
                let entry: DeliveryEntry =
                    serde_json::from_slice(v.value()).map_err(|e| format!("corrupt entry: {e}"))?;
                if entry.status == DeliveryStatus::Dead
                    && entry.last_error.as_deref() == Some(reason)
                {
                    out.push(entry);
                }
            }
            Ok(out)
        };
        read().map_err(LedgerError)
    }
}

#[async_trait]
impl super::webhooks_enable::DeadEntries for EmbeddedDeliveries {
    async fn dead_entries(
        &self,
        destination: &str,
        reason: &str,
    ) -> Result<Vec<DeliveryEntry>, LedgerError> {
        EmbeddedDeliveries::dead_entries(self, destination, reason).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::webhooks::{EndpointHealth, Verdict};
    use std::sync::Arc;

    #[tokio::test]
    async fn health_records_are_compare_and_set_per_subscription() {
        let store = EmbeddedDeliveries::in_memory().expect("store");
        assert_eq!(store.load("erp").await, Ok(None));
        let record = |version| HealthRecord {
            failing_since: Some(crate::samples::sample_time()),
            disabled_at: None,
            version,
        };
        assert_eq!(
            store.compare_and_set("erp", None, &record(1)).await,
            Ok(true)
        );
        assert_eq!(
            store.compare_and_set("erp", None, &record(1)).await,
            Ok(false),
            "exists already"
        );
        assert_eq!(
            store.compare_and_set("erp", Some(7), &record(8)).await,
            Ok(false),
            "stale version"
        );
        assert_eq!(
            store.compare_and_set("erp", Some(1), &record(2)).await,
            Ok(true)
        );
        assert_eq!(store.load("erp").await, Ok(Some(record(2))));
        assert_eq!(store.load("oms").await, Ok(None), "per subscription");
    }

    #[tokio::test]
    async fn the_disabling_rule_runs_on_disk_and_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("deliveries.redb");
        let t0 = crate::samples::sample_time();
        {
            let db = redb::Database::create(&path).expect("db");
            let store = Arc::new(EmbeddedDeliveries::new(Arc::new(db)).expect("store"));
            let health = EndpointHealth::new(store, chrono::Duration::hours(1));
            assert_eq!(health.record_failure("erp", t0).await, Ok(Verdict::Failing));
            let later = t0 + chrono::Duration::hours(2);
            assert_eq!(
                health.record_failure("erp", later).await,
                Ok(Verdict::DisabledNow)
            );
        }
        let db = redb::Database::create(&path).expect("reopen");
        let store = Arc::new(EmbeddedDeliveries::new(Arc::new(db)).expect("store"));
        let health = EndpointHealth::new(store, chrono::Duration::hours(1));
        assert!(health.is_disabled("erp").await.expect("read"));
        health.enable("erp").await.expect("enable");
        assert!(!health.is_disabled("erp").await.expect("read"));
    }

    #[tokio::test]
    async fn a_corrupt_record_is_an_error_not_an_absence() {
        let store = EmbeddedDeliveries::in_memory().expect("store");
        let txn = store.db().begin_write().expect("txn");
        txn.open_table(HEALTH)
            .expect("table")
            .insert("erp", b"not json".as_slice())
            .expect("insert");
        txn.commit().expect("commit");
        assert!(store.load("erp").await.is_err());
        let record = HealthRecord::default();
        assert!(store.compare_and_set("erp", None, &record).await.is_err());
    }

    #[tokio::test]
    async fn dead_entries_lists_one_destinations_dead_records_of_one_reason() {
        use crate::delivery::ledger::DeliveryLedger;
        let store = EmbeddedDeliveries::in_memory().expect("store");
        let dead = |event: &str, destination: &str, reason: &str| {
            let mut e = crate::delivery::conformance::entry(event, Some("s:1"), destination)
                .expect("entry");
            e.status = DeliveryStatus::Dead;
            e.last_error = Some(reason.to_owned());
            e
        };
        for e in [
            dead("evt:sale:wh:1", "webhooks:erp", "endpoint disabled"),
            dead(
                "evt:sale:wh:2",
                "webhooks:erp",
                "retry schedule exhausted after 8 attempts",
            ),
            dead("evt:sale:wh:3", "webhooks:oms", "endpoint disabled"),
            crate::delivery::conformance::entry("evt:sale:wh:4", None, "webhooks:erp")
                .expect("pending"),
        ] {
            assert_eq!(store.put(&e, None).await, Ok(true));
        }
        let listed = store
            .dead_entries("webhooks:erp", "endpoint disabled")
            .await
            .expect("listed");
        let ids: Vec<&str> = listed.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["evt:sale:wh:1"]);
    }
}
