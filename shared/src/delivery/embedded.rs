//! The delivery ledger and the circuit breakers in redb: `deliveries.redb` in the data directory for
//! local runs (`pos-local`, and every function under `cargo lambda watch` through a shared open), in
//! memory for tests.
//!
//! | table                | key                                 | value                  |
//! |----------------------|-------------------------------------|------------------------|
//! | `delivery_entries`   | (`event_id`, `destination`)         | entry (JSON)           |
//! | `delivery_by_sale`   | (`sale_id`, `destination`, `event_id`) | () — a sale's entries |
//! | `delivery_breakers`  | `destination`                       | breaker record (JSON)  |
//!
//! Every write is one redb write transaction that reads the stored `version` and writes only when it is
//! the expected one (absent when `None`): the compare-and-set of the DynamoDB adapter's conditional
//! `PutItem`, with the sale index kept in the same transaction (DynamoDB maintains its `gsi1` itself).
//! A lost compare-and-set aborts the transaction, so it costs no fsync.

use super::breaker::{BreakerRecord, BreakerStore, BreakerStoreError};
use super::ledger::{DeliveryEntry, DeliveryLedger, LedgerError};
use crate::ids::{EventId, SaleId};
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use std::sync::Arc;

pub(super) const ENTRIES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("delivery_entries");
const BY_SALE: TableDefinition<(&str, &str, &str), ()> = TableDefinition::new("delivery_by_sale");
const BREAKERS: TableDefinition<&str, &[u8]> = TableDefinition::new("delivery_breakers");

/// Ledger and breakers in one redb database; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedDeliveries {
    db: Arc<Database>,
}

fn fail<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

impl EmbeddedDeliveries {
    /// The adapter over `db` (its tables are created if absent).
    pub fn new(db: Arc<Database>) -> Result<Self, LedgerError> {
        let txn = db.begin_write().map_err(|e| LedgerError(fail(e)))?;
        txn.open_table(ENTRIES).map_err(|e| LedgerError(fail(e)))?;
        txn.open_table(BY_SALE).map_err(|e| LedgerError(fail(e)))?;
        txn.open_table(BREAKERS).map_err(|e| LedgerError(fail(e)))?;
        txn.commit().map_err(|e| LedgerError(fail(e)))?;
        Ok(Self { db })
    }

    /// The adapter in memory (unit tests).
    pub fn in_memory() -> Result<Self, LedgerError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| LedgerError(fail(e)))?;
        Self::new(Arc::new(db))
    }

    /// Every entry, in (event, destination) order: read-only, for `pos-local`'s `GET /_local/deliveries`.
    pub fn entries(&self) -> Result<Vec<DeliveryEntry>, LedgerError> {
        let read = || -> Result<Vec<DeliveryEntry>, String> {
            let txn = self.db.begin_read().map_err(fail)?;
            let t = txn.open_table(ENTRIES).map_err(fail)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(fail)? {
                let (_, v) = row.map_err(fail)?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        };
        read().map_err(LedgerError)
    }

    /// The database (the endpoint health adapter of [`super::embedded_health`] shares it).
    pub(super) fn db(&self) -> &Arc<Database> {
        &self.db
    }

    /// Runs `f` in one write transaction on the blocking pool; commits only when `f` says it wrote
    /// (`Ok(true)`), aborts otherwise.
    pub(super) async fn write_if<F>(&self, f: F) -> Result<bool, String>
    where
        F: FnOnce(&WriteTransaction) -> Result<bool, String> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(fail)?;
            if f(&txn)? {
                txn.commit().map_err(fail)?;
                Ok(true)
            } else {
                txn.abort().map_err(fail)?;
                Ok(false)
            }
        })
        .await
        .map_err(fail)?
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("corrupt record: {e}"))
}

#[async_trait]
impl DeliveryLedger for EmbeddedDeliveries {
    async fn get(
        &self,
        event_id: &EventId,
        destination: &str,
    ) -> Result<Option<DeliveryEntry>, LedgerError> {
        let read = || -> Result<Option<DeliveryEntry>, String> {
            let txn = self.db.begin_read().map_err(fail)?;
            let t = txn.open_table(ENTRIES).map_err(fail)?;
            t.get((event_id.as_str(), destination))
                .map_err(fail)?
                .map(|v| decode(v.value()))
                .transpose()
        };
        read().map_err(LedgerError)
    }

    async fn put(&self, entry: &DeliveryEntry, expected: Option<u64>) -> Result<bool, LedgerError> {
        let bytes = serde_json::to_vec(entry).map_err(|e| LedgerError(e.to_string()))?;
        let entry = entry.clone();
        self.write_if(move |txn| {
            let mut entries = txn.open_table(ENTRIES).map_err(fail)?;
            let key = (entry.event_id.as_str(), entry.destination.as_str());
            let stored: Option<DeliveryEntry> = entries
                .get(key)
                .map_err(fail)?
                .map(|v| decode(v.value()))
                .transpose()?;
            if stored.as_ref().map(|e| e.version) != expected {
                return Ok(false);
            }
            entries.insert(key, bytes.as_slice()).map_err(fail)?;
            // The sale index follows the entry, as DynamoDB's gsi1 follows the item's attributes.
            let mut by_sale = txn.open_table(BY_SALE).map_err(fail)?;
            if let Some(old) = stored.and_then(|e| e.sale_id) {
                by_sale.remove((old.as_str(), key.1, key.0)).map_err(fail)?;
            }
            if let Some(sale) = &entry.sale_id {
                by_sale
                    .insert((sale.as_str(), key.1, key.0), ())
                    .map_err(fail)?;
            }
            Ok(true)
        })
        .await
        .map_err(LedgerError)
    }

    async fn for_sale(&self, sale_id: &SaleId) -> Result<Vec<DeliveryEntry>, LedgerError> {
        let read = || -> Result<Vec<DeliveryEntry>, String> {
            let txn = self.db.begin_read().map_err(fail)?;
            let by_sale = txn.open_table(BY_SALE).map_err(fail)?;
            let entries = txn.open_table(ENTRIES).map_err(fail)?;
            let mut out = Vec::new();
            // (sale, "", "") is the smallest key of the sale: the range starts there and the sale's
            // keys follow each other, in (destination, event) order.
            for row in by_sale.range((sale_id.as_str(), "", "")..).map_err(fail)? {
                let (k, _) = row.map_err(fail)?;
                let (sale, destination, event) = k.value();
                if sale != sale_id.as_str() {
                    break;
                }
                let entry = entries
                    .get((event, destination))
                    .map_err(fail)?
                    .ok_or_else(|| format!("index names a missing entry {event} {destination}"))?;
                out.push(decode(entry.value())?);
            }
            Ok(out)
        };
        read().map_err(LedgerError)
    }
}

#[async_trait]
impl BreakerStore for EmbeddedDeliveries {
    async fn load(&self, destination: &str) -> Result<Option<BreakerRecord>, BreakerStoreError> {
        let read = || -> Result<Option<BreakerRecord>, String> {
            let txn = self.db.begin_read().map_err(fail)?;
            let t = txn.open_table(BREAKERS).map_err(fail)?;
            t.get(destination)
                .map_err(fail)?
                .map(|v| decode(v.value()))
                .transpose()
        };
        read().map_err(BreakerStoreError)
    }

    async fn compare_and_set(
        &self,
        destination: &str,
        expected: Option<u64>,
        record: &BreakerRecord,
    ) -> Result<bool, BreakerStoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| BreakerStoreError(e.to_string()))?;
        let destination = destination.to_owned();
        self.write_if(move |txn| {
            let mut t = txn.open_table(BREAKERS).map_err(fail)?;
            let stored: Option<BreakerRecord> = t
                .get(destination.as_str())
                .map_err(fail)?
                .map(|v| decode(v.value()))
                .transpose()?;
            if stored.map(|r| r.version) != expected {
                return Ok(false);
            }
            t.insert(destination.as_str(), bytes.as_slice())
                .map_err(fail)?;
            Ok(true)
        })
        .await
        .map_err(BreakerStoreError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::conformance;

    #[tokio::test]
    async fn the_ledger_keeps_the_contract_in_memory_and_on_disk() {
        let memory = EmbeddedDeliveries::in_memory().expect("ledger");
        conformance::ledger_compare_and_set_and_listing(&memory)
            .await
            .expect("in memory");
        let dir = tempfile::tempdir().expect("dir");
        let db = Database::create(dir.path().join("deliveries.redb")).expect("db");
        let disk = EmbeddedDeliveries::new(Arc::new(db)).expect("ledger");
        conformance::ledger_compare_and_set_and_listing(&disk)
            .await
            .expect("on disk");
    }

    #[tokio::test]
    async fn the_breaker_keeps_the_contract() {
        let store = Arc::new(EmbeddedDeliveries::in_memory().expect("store"));
        conformance::breaker_store_compare_and_set(store.as_ref())
            .await
            .expect("compare-and-set");
        conformance::breaker_opens_within_the_window(store.clone())
            .await
            .expect("window");
        conformance::breaker_elects_one_probe(store.clone())
            .await
            .expect("one probe");
        conformance::breaker_reopens_and_replaces_a_lost_probe(store)
            .await
            .expect("reopen");
    }

    /// Two handles on one file opened shared, as two `cargo lambda watch` processes hold it: they see
    /// each other's records, and one probe is elected among both.
    #[tokio::test]
    async fn two_shared_handles_on_one_file_share_the_breaker_and_the_ledger() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("deliveries.redb");
        let open = || {
            crate::store::embedded::EmbeddedStore::open_shared_file(&path)
                .map(Arc::new)
                .map(|db| Arc::new(EmbeddedDeliveries::new(db).expect("adapter")))
                .expect("shared open")
        };
        let (a, b) = (open(), open());
        conformance::breaker_is_shared_between_instances(a.clone(), b.clone())
            .await
            .expect("shared breaker");
        let entry = conformance::entry("evt:sale:shared:1", Some("shared:1"), "commercetools")
            .expect("entry");
        assert_eq!(a.put(&entry, None).await, Ok(true));
        assert_eq!(b.put(&entry, None).await, Ok(false), "a wrote it first");
        assert_eq!(
            b.for_sale(&entry.sale_id.clone().expect("sale")).await,
            Ok(vec![entry])
        );
    }

    #[tokio::test]
    async fn a_corrupt_record_is_an_error_not_an_absence() {
        let store = EmbeddedDeliveries::in_memory().expect("store");
        let txn = store.db.begin_write().expect("txn");
        txn.open_table(BREAKERS)
            .expect("table")
            .insert("ct", b"not json".as_slice())
            .expect("insert");
        txn.commit().expect("commit");
        assert!(store.load("ct").await.is_err());
        let record = BreakerRecord {
            state: crate::delivery::breaker::BreakerState::Open {
                until: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            },
            version: 1,
        };
        assert!(
            store.compare_and_set("ct", None, &record).await.is_err(),
            "never overwritten as if absent"
        );
    }
}
