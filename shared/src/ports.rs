//! Ports: the narrow traits the domain asks of the outside world.
//!
//! Each port has an AWS adapter, an embedded (durable, local) adapter and an in-memory fake; the capture
//! logic only ever sees these traits, never an SDK type.

use crate::bus::PublishError;
use crate::ids::EventId;
use crate::model::{EventEnvelope, LinesRef, Vendor};
use crate::secrets::{SecretError, VendorSecrets};
use crate::store::{
    CaptureOutcome, CaptureWrite, OutboxEntry, QuarantineRecord, QuarantineResolution, StoreError,
};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use std::sync::Mutex;

/// The current time, injected so tests and simulations are deterministic.
pub trait Clock: Send + Sync {
    /// Now, UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock tests set and advance by hand.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut t = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *t += by;
    }

    /// Sets the clock.
    pub fn set(&self, at: DateTime<Utc>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Where vendor secrets come from.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The current secret document.
    async fn load(&self) -> Result<Arc<VendorSecrets>, SecretError>;

    /// Asks for a fresh copy (a caching source refetches, rate-limited). Returns whether anything changed
    /// hands; sources without a cache return `false`.
    async fn refresh(&self) -> Result<bool, SecretError> {
        Ok(false)
    }
}

/// The capture side of the sale store: idempotent, atomic writes of what a webhook delivered.
#[async_trait]
pub trait CaptureStore: Send + Sync {
    /// Atomically stores the delivery record, the canonical record and its outbox entry, unless the
    /// delivery (or the business fact) is already there. See [`CaptureOutcome`].
    async fn capture(&self, write: CaptureWrite) -> Result<CaptureOutcome, StoreError>;

    /// Reads an outbox entry.
    async fn outbox_entry(&self, event_id: &EventId) -> Result<Option<OutboxEntry>, StoreError>;

    /// Marks an outbox entry published (idempotent).
    async fn mark_published(&self, event_id: &EventId, at: DateTime<Utc>)
    -> Result<(), StoreError>;

    /// Keeps a signed but unmappable delivery for an operator (idempotent per vendor + delivery key).
    async fn quarantine(&self, record: QuarantineRecord) -> Result<(), StoreError>;
}

/// The operator side of the quarantine: find what is waiting and settle it, once.
#[async_trait]
pub trait QuarantineStore: Send + Sync {
    /// One quarantined delivery.
    async fn quarantined_delivery(
        &self,
        vendor: Vendor,
        delivery_key: &str,
    ) -> Result<Option<QuarantineRecord>, StoreError>;

    /// Every quarantined delivery not yet resolved, oldest first.
    async fn open_quarantine(&self) -> Result<Vec<QuarantineRecord>, StoreError>;

    /// Records the resolution, only if none is recorded yet (a conditional write). Returns whether this
    /// call recorded it; `false` when it was already resolved or is absent.
    async fn resolve_quarantine(
        &self,
        vendor: Vendor,
        delivery_key: &str,
        resolution: QuarantineResolution,
    ) -> Result<bool, StoreError>;
}

/// Publishes domain events on the bus.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes every event or fails; a partial failure is reported as a failure (the outbox keeps them
    /// and republication is idempotent for consumers, which dedupe on the event id).
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), PublishError>;
}

/// Reads the lines a capture stored aside for a claim-checked fact ([`crate::store::claim`]): the one
/// capability the consumers and the sales read model need of the capture store.
///
/// Adapters: `DynamoStore` (`GetItem` per chunk), `EmbeddedStore` (redb, also in memory for tests);
/// `NoLinesSource` for a reader not wired to the store (every reference fails, retryable).
#[async_trait]
pub trait LinesSource: Send + Sync {
    /// The stored chunks of `reference`, in order; `None` when any is absent.
    async fn line_chunks(&self, reference: &LinesRef) -> Result<Option<Vec<Vec<u8>>>, StoreError>;
}
