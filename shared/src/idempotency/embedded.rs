//! Idempotency records in the embedded redb store (local runs), one write transaction per operation.

use super::{Acquire, IdempotencyRecord, IdempotencyStore, Status, StoreFailure};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, ReadableTable, TableDefinition};
use std::sync::Arc;

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");

/// redb-backed idempotency store; shares the database file of the local platform.
#[derive(Clone)]
pub struct EmbeddedIdempotencyStore {
    db: Arc<Database>,
    /// Namespace prefixed to keys, so several consumers can share one database.
    namespace: String,
}

fn fail<E: std::fmt::Display>(e: E) -> StoreFailure {
    StoreFailure(e.to_string())
}

impl EmbeddedIdempotencyStore {
    /// A store in `db`, keys prefixed with `namespace`.
    pub fn new(db: Arc<Database>, namespace: impl Into<String>) -> Result<Self, StoreFailure> {
        let txn = db.begin_write().map_err(fail)?;
        txn.open_table(RECORDS).map_err(fail)?;
        txn.commit().map_err(fail)?;
        Ok(Self {
            db,
            namespace: namespace.into(),
        })
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}#{key}", self.namespace)
    }

    async fn write<T: Send + 'static>(
        &self,
        key: String,
        f: impl FnOnce(
            Option<IdempotencyRecord>,
        ) -> Result<(Option<Option<IdempotencyRecord>>, T), StoreFailure>
        + Send
        + 'static,
    ) -> Result<T, StoreFailure> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(fail)?;
            let out = {
                let mut table = txn.open_table(RECORDS).map_err(fail)?;
                let current: Option<IdempotencyRecord> =
                    match table.get(key.as_str()).map_err(fail)? {
                        Some(v) => Some(serde_json::from_slice(v.value()).map_err(fail)?),
                        None => None,
                    };
                let (change, out) = f(current)?;
                match change {
                    Some(Some(record)) => {
                        let bytes = serde_json::to_vec(&record).map_err(fail)?;
                        table.insert(key.as_str(), bytes.as_slice()).map_err(fail)?;
                    }
                    Some(None) => {
                        table.remove(key.as_str()).map_err(fail)?;
                    }
                    None => {}
                }
                out
            };
            txn.commit().map_err(fail)?;
            Ok(out)
        })
        .await
        .map_err(fail)?
    }
}

#[async_trait]
impl IdempotencyStore for EmbeddedIdempotencyStore {
    async fn acquire(
        &self,
        record: &IdempotencyRecord,
        now: DateTime<Utc>,
    ) -> Result<Acquire, StoreFailure> {
        let record = record.clone();
        self.write(self.full_key(&record.key), move |current| {
            match current.filter(|r| r.is_live(now)) {
                Some(existing) => Ok((None, Acquire::Existing(existing))),
                None => Ok((Some(Some(record)), Acquire::Acquired)),
            }
        })
        .await
    }

    async fn complete(
        &self,
        key: &str,
        response: serde_json::Value,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreFailure> {
        let k = key.to_owned();
        self.write(self.full_key(key), move |current| {
            let mut r = current.ok_or_else(|| StoreFailure(format!("no record for {k}")))?;
            r.status = Status::Completed;
            r.response = Some(response);
            r.expires_at = expires_at;
            r.in_progress_expires_at = None;
            Ok((Some(Some(r)), ()))
        })
        .await
    }

    async fn release(&self, key: &str) -> Result<(), StoreFailure> {
        self.write(self.full_key(key), |_| Ok((Some(None), ())))
            .await
    }
}
