//! Idempotency for any handler, with the guarantees Powertools for AWS Lambda (Python, TypeScript) users
//! expect, since no Rust Powertools exists:
//!
//! - one record per key, `INPROGRESS` then `COMPLETED`, with an expiry checked on read (DynamoDB TTL
//!   can lag for days, so it only cleans up);
//! - an in-progress expiry from the Lambda's remaining time: a function that timed out does not block
//!   its key forever;
//! - the stored result is returned for a repeat (same key + same payload), with no second effect;
//! - same key + different payload is a [`IdempotencyError::PayloadMismatch`], never a silent accept;
//! - a concurrent duplicate while `INPROGRESS` is [`IdempotencyError::AlreadyInProgress`] (retryable);
//! - a failing handler removes the record so a retry can succeed;
//! - storage errors are [`IdempotencyError::Persistence`] (retryable), never reported as a duplicate.
//!
//! The payload hash is taken before the handler runs, so a handler that mutates its input cannot change
//! what counts as "the same payload". Backends: [`memory`], [`embedded`] (redb), [`dynamodb`].

pub mod dynamodb;
pub mod embedded;
pub mod memory;

use crate::ports::Clock;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;

/// Record status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// The handler is running (or died without cleaning up).
    InProgress,
    /// The handler finished; `response` holds its result.
    Completed,
}

/// One idempotency record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The idempotency key.
    pub key: String,
    /// Status.
    pub status: Status,
    /// Hex SHA-256 of the payload's JSON.
    pub payload_hash: String,
    /// After this the record is ignored (and may be overwritten).
    pub expires_at: DateTime<Utc>,
    /// While `INPROGRESS`: after this the run is presumed dead (Lambda timed out) and the key is free.
    pub in_progress_expires_at: Option<DateTime<Utc>>,
    /// The stored result (JSON), once `COMPLETED`.
    pub response: Option<serde_json::Value>,
}

impl IdempotencyRecord {
    /// Whether the record still holds the key at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        if now >= self.expires_at {
            return false;
        }
        match (self.status, self.in_progress_expires_at) {
            (Status::InProgress, Some(limit)) => now < limit,
            _ => true,
        }
    }
}

/// What a conditional acquire found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// The key was free (absent, expired, or a dead in-progress run): our record is stored.
    Acquired,
    /// A live record holds the key.
    Existing(IdempotencyRecord),
}

/// A storage failure (always retryable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("idempotency store: {0}")]
pub struct StoreFailure(pub String);

/// The idempotency persistence port.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Stores `record` (INPROGRESS) unless a record live at `now` holds the key, atomically.
    async fn acquire(
        &self,
        record: &IdempotencyRecord,
        now: DateTime<Utc>,
    ) -> Result<Acquire, StoreFailure>;
    /// Marks the key COMPLETED with its response.
    async fn complete(
        &self,
        key: &str,
        response: serde_json::Value,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreFailure>;
    /// Deletes the key's record (the handler failed).
    async fn release(&self, key: &str) -> Result<(), StoreFailure>;
}

/// Why an idempotent call did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError<E> {
    /// The key is empty (the caller must always provide one).
    #[error("idempotency key is missing")]
    MissingKey,
    /// Another run holds the key right now: retry later.
    #[error("another request with this idempotency key is in progress")]
    AlreadyInProgress,
    /// The key was used with a different payload.
    #[error("idempotency key reused with a different payload")]
    PayloadMismatch,
    /// The store failed: retry.
    #[error(transparent)]
    Persistence(#[from] StoreFailure),
    /// The stored response could not be decoded as the handler's result type.
    #[error("stored response cannot be decoded: {0}")]
    Corrupt(String),
    /// The handler failed (its record was removed, a retry runs it again).
    #[error("handler failed: {0}")]
    Handler(E),
}

impl<E> IdempotencyError<E> {
    /// Whether retrying later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::AlreadyInProgress | Self::Persistence(_) | Self::Handler(_)
        )
    }
}

/// Hex SHA-256 of a value's JSON.
pub fn payload_hash(payload: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(payload).unwrap_or_default();
    crate::vendors::signing::sha256_hex(&bytes)
}

/// The idempotency wrapper.
pub struct Idempotency {
    store: Arc<dyn IdempotencyStore>,
    clock: Arc<dyn Clock>,
    expires_after: Duration,
}

impl Idempotency {
    /// Records live for `expires_after` after completion (Powertools default: 1 hour).
    pub fn new(
        store: Arc<dyn IdempotencyStore>,
        clock: Arc<dyn Clock>,
        expires_after: Duration,
    ) -> Self {
        Self {
            store,
            clock,
            expires_after,
        }
    }

    /// Runs `handler` at most once per `key` + `payload`. `remaining` is the invocation's remaining time
    /// (Lambda context deadline): an `INPROGRESS` record outlives it by nothing.
    pub async fn run<T, E, F, Fut>(
        &self,
        key: &str,
        payload: &impl Serialize,
        remaining: Option<std::time::Duration>,
        handler: F,
    ) -> Result<T, IdempotencyError<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if key.is_empty() {
            return Err(IdempotencyError::MissingKey);
        }
        let hash = payload_hash(payload);
        let now = self.clock.now();
        let record = IdempotencyRecord {
            key: key.to_owned(),
            status: Status::InProgress,
            payload_hash: hash.clone(),
            expires_at: now + self.expires_after,
            in_progress_expires_at: remaining
                .and_then(|r| Duration::from_std(r).ok())
                .map(|r| now + r),
            response: None,
        };
        match self.store.acquire(&record, now).await? {
            Acquire::Acquired => {}
            Acquire::Existing(existing) => return Self::existing(existing, &hash),
        }
        match handler().await {
            Ok(value) => {
                let response = serde_json::to_value(&value)
                    .map_err(|e| IdempotencyError::Corrupt(e.to_string()))?;
                let expires_at = self.clock.now() + self.expires_after;
                self.store.complete(key, response, expires_at).await?;
                Ok(value)
            }
            Err(e) => {
                self.store.release(key).await?;
                Err(IdempotencyError::Handler(e))
            }
        }
    }

    fn existing<T: DeserializeOwned, E>(
        existing: IdempotencyRecord,
        hash: &str,
    ) -> Result<T, IdempotencyError<E>> {
        if existing.payload_hash != hash {
            return Err(IdempotencyError::PayloadMismatch);
        }
        match existing.status {
            Status::InProgress => Err(IdempotencyError::AlreadyInProgress),
            Status::Completed => {
                let response = existing.response.unwrap_or(serde_json::Value::Null);
                serde_json::from_value(response)
                    .map_err(|e| IdempotencyError::Corrupt(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests;
