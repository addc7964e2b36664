//! In-memory idempotency store (unit tests), with failure injection per operation.

use super::{Acquire, IdempotencyRecord, IdempotencyStore, Status, StoreFailure};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Records in a map; each operation can be made to fail.
#[derive(Debug, Default)]
pub struct MemoryIdempotencyStore {
    records: Mutex<HashMap<String, IdempotencyRecord>>,
    /// Fail the next `acquire`.
    pub fail_acquire: AtomicBool,
    /// Fail the next `complete`.
    pub fail_complete: AtomicBool,
    /// Fail the next `release`.
    pub fail_release: AtomicBool,
}

impl MemoryIdempotencyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The record of `key`, if any.
    pub fn get(&self, key: &str) -> Option<IdempotencyRecord> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Inserts a record as is (to set up expired or in-progress states).
    pub fn insert(&self, record: IdempotencyRecord) {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(record.key.clone(), record);
    }
}

fn injected(flag: &AtomicBool, op: &str) -> Result<(), StoreFailure> {
    if flag.swap(false, Ordering::SeqCst) {
        return Err(StoreFailure(format!("injected {op} failure")));
    }
    Ok(())
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotencyStore {
    async fn acquire(
        &self,
        record: &IdempotencyRecord,
        now: DateTime<Utc>,
    ) -> Result<Acquire, StoreFailure> {
        injected(&self.fail_acquire, "acquire")?;
        let mut map = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = map.get(&record.key).filter(|r| r.is_live(now)) {
            return Ok(Acquire::Existing(existing.clone()));
        }
        map.insert(record.key.clone(), record.clone());
        Ok(Acquire::Acquired)
    }

    async fn complete(
        &self,
        key: &str,
        response: serde_json::Value,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreFailure> {
        injected(&self.fail_complete, "complete")?;
        let mut map = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = map
            .get_mut(key)
            .ok_or_else(|| StoreFailure(format!("no record for {key}")))?;
        r.status = Status::Completed;
        r.response = Some(response);
        r.expires_at = expires_at;
        r.in_progress_expires_at = None;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreFailure> {
        injected(&self.fail_release, "release")?;
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
        Ok(())
    }
}
