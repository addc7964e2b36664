//! The delivery ledger: per (event, destination), what reached whom. It is the proof of delivery
//! (`GET /v1/sales/{sale_id}/deliveries`) and the first thing a redelivered record checks: an event
//! already `delivered` to a destination is not sent again.
//!
//! Entries are written with compare-and-set on `version`, so two instances racing on one record (an
//! SQS redelivery while the first is still running) cannot both claim an attempt. `last_error` holds
//! our own classification and the destination's status and error code, never request bodies, tokens
//! or customer data.

use crate::ids::{EventId, SaleId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet attempted.
    Pending,
    /// The destination has it (read back or acknowledged).
    Delivered,
    /// Failed transiently; will be retried.
    Retrying,
    /// Failed permanently or too often: in the DLQ, an operator must look.
    Dead,
}

/// One (event, destination) entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryEntry {
    /// The event delivered.
    pub event_id: EventId,
    /// The sale it belongs to (for a return, the original sale), when there is one.
    pub sale_id: Option<SaleId>,
    /// Destination name (`commercetools`, `dynamics`, `webhooks:{subscription}`).
    pub destination: String,
    /// Status.
    pub status: DeliveryStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// The destination's id for what we created (order id, journal id), once known.
    pub remote_id: Option<String>,
    /// The destination's version or ETag of it, once known.
    pub remote_version: Option<String>,
    /// The last failure: our classification and the destination's status/code only.
    pub last_error: Option<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Compare-and-set counter.
    pub version: u64,
}

impl DeliveryEntry {
    /// A fresh pending entry.
    pub fn pending(
        event_id: EventId,
        sale_id: Option<SaleId>,
        destination: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            event_id,
            sale_id,
            destination: destination.into(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            remote_id: None,
            remote_version: None,
            last_error: None,
            updated_at: now,
            version: 0,
        }
    }
}

/// Why the ledger failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("delivery ledger unavailable: {0}")]
pub struct LedgerError(pub String);

/// The ledger port.
#[async_trait]
pub trait DeliveryLedger: Send + Sync {
    /// The entry of `event_id` for `destination`.
    async fn get(
        &self,
        event_id: &EventId,
        destination: &str,
    ) -> Result<Option<DeliveryEntry>, LedgerError>;

    /// Writes `entry` if the stored version is `expected` (`None`: no entry yet); `entry.version` must
    /// be the next one. Returns whether it was written.
    async fn put(&self, entry: &DeliveryEntry, expected: Option<u64>) -> Result<bool, LedgerError>;

    /// Every entry of a sale, by destination then event.
    async fn for_sale(&self, sale_id: &SaleId) -> Result<Vec<DeliveryEntry>, LedgerError>;
}

/// The ledger in memory: the fake for unit tests (same compare-and-set semantics; not durable, not
/// shared between processes).
#[derive(Debug, Default)]
pub struct MemoryDeliveryLedger {
    entries: Mutex<BTreeMap<(String, String), DeliveryEntry>>,
}

#[async_trait]
impl DeliveryLedger for MemoryDeliveryLedger {
    async fn get(
        &self,
        event_id: &EventId,
        destination: &str,
    ) -> Result<Option<DeliveryEntry>, LedgerError> {
        Ok(self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(destination.to_owned(), event_id.to_string()))
            .cloned())
    }

    async fn put(&self, entry: &DeliveryEntry, expected: Option<u64>) -> Result<bool, LedgerError> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (entry.destination.clone(), entry.event_id.to_string());
        if entries.get(&key).map(|e| e.version) != expected {
            return Ok(false);
        }
        entries.insert(key, entry.clone());
        Ok(true)
    }

    async fn for_sale(&self, sale_id: &SaleId) -> Result<Vec<DeliveryEntry>, LedgerError> {
        Ok(self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|e| e.sale_id.as_ref() == Some(sale_id))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_ledger_keeps_the_contract() {
        crate::delivery::conformance::ledger_compare_and_set_and_listing(
            &MemoryDeliveryLedger::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
}
