//! The sale store: delivery (idempotency) records, canonical records, the outbox and the quarantine.
//!
//! One capture is one atomic write of three things: the delivery record (keyed by vendor + the vendor's
//! delivery id, with a payload hash and an expiry checked on read), the canonical record (keyed by the
//! business fact, so two different deliveries of the same sale store it once) and the outbox entry (the
//! domain event to publish, marked published afterwards; a relay republishes what a crash left pending).
//!
//! A fact too big for the bus travels with a claim check ([`claim`]): its lines are written aside, as
//! chunks, in the same atomic write, and the record and the event carry a reference to them.
//!
//! Adapters: [`dynamodb`] (AWS), [`embedded`] (redb file for local runs, or redb in memory for tests),
//! [`memory`] (process memory: unit tests and the capture latency benchmark).
//! The rules of what counts as new, duplicate or conflicting live here once, in [`decide`].

pub mod claim;
pub mod dynamodb;
pub mod embedded;
pub mod group;
pub mod memory;

use crate::ids::EventId;
use crate::model::{CanonicalEvent, EventEnvelope, LinesRef, Vendor};
use crate::secrets::SenderName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Storage failures. Every variant is an infrastructure error: the caller answers 5xx so the vendor
/// retries; none of them is ever reported as "duplicate".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or refused the call (throttling, network, I/O).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored item could not be decoded (data written by an incompatible version).
    #[error("stored item is corrupt: {0}")]
    Corrupt(String),
}

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// It carried a new business fact, stored under `record_key` and announced by `event_id`.
    Captured {
        /// Key of the canonical record.
        record_key: String,
        /// Id of the domain event in the outbox.
        event_id: EventId,
    },
    /// It carried a fact an earlier delivery had already captured (e.g. a second Lightspeed version of a
    /// closed sale): no new effect.
    DuplicateOf {
        /// Key of the canonical record captured earlier.
        record_key: String,
        /// Id of the domain event announcing it.
        event_id: EventId,
    },
    /// A valid delivery of an event type or state we do not act on (test notifications, open sales).
    Ignored {
        /// Why, for the operator.
        reason: String,
    },
}

/// The idempotency record of one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Sending vendor.
    pub vendor: Vendor,
    /// The vendor's delivery / event id (our idempotency key within the vendor).
    pub delivery_key: String,
    /// Hex SHA-256 of the raw body: same key with another payload is a conflict, never a silent accept.
    pub payload_hash: String,
    /// What the delivery did.
    #[serde(flatten)]
    pub outcome: DeliveryOutcome,
    /// Correlation id of the request that first delivered it.
    pub correlation_id: String,
    /// When it was first received.
    pub received_at: DateTime<Utc>,
    /// After this instant the record no longer deduplicates (checked on read; DynamoDB TTL only cleans up).
    pub expires_at: DateTime<Utc>,
}

impl DeliveryRecord {
    /// The store key: vendor + delivery key.
    pub fn key(&self) -> String {
        delivery_store_key(self.vendor, &self.delivery_key)
    }

    /// Whether the record still deduplicates at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

/// Store key of a delivery record.
pub fn delivery_store_key(vendor: Vendor, delivery_key: &str) -> String {
    format!("{}#{}", vendor.as_str(), delivery_key)
}

/// A canonical business fact as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanonicalRecord {
    /// Key of the fact ([`CanonicalEvent::record_key`]).
    pub record_key: String,
    /// When the platform captured it.
    pub captured_at: DateTime<Utc>,
    /// The vendor and delivery that first carried it.
    pub vendor: Vendor,
    /// The delivery key that first carried it.
    pub delivery_key: String,
    /// The fact (with `lines: []` when `lines_ref` is set).
    pub event: CanonicalEvent,
    /// Where the fact's lines are when they were stored aside ([`claim`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines_ref: Option<LinesRef>,
}

/// Publication state of an outbox entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Not yet confirmed on the bus.
    Pending,
    /// Confirmed on the bus.
    Published {
        /// When the bus accepted it.
        at: DateTime<Utc>,
    },
    /// Refused by the bus for good (over its size limit): out of the relay's way, kept for an operator
    /// (the relay counts it as `OutboxPoisoned`, an alarmed metric).
    Failed {
        /// When the relay gave up on it.
        at: DateTime<Utc>,
        /// Why.
        reason: String,
    },
}

/// A domain event waiting for (or past) publication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The event.
    pub envelope: EventEnvelope,
    /// Publication state.
    #[serde(flatten)]
    pub status: OutboxStatus,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// A signed delivery we could not map, kept for an operator: nothing is lost.
///
/// After a mapping fix it is reprocessed ([`crate::quarantine`]): interpreted again from what is kept here
/// (no signature check: it was verified on arrival, and the signature headers are not kept), captured
/// through the same idempotent write as a new delivery, then marked resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    /// Sending vendor.
    pub vendor: Vendor,
    /// The vendor's delivery id.
    pub delivery_key: String,
    /// Why it could not be mapped.
    pub reason: String,
    /// The raw body, base64 (it is data at rest, encrypted with the table; it is never logged).
    pub body_base64: String,
    /// The headers the mapping reads (topic, delivery ids; never signatures), as received.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The Standard Webhooks sender whose key verified it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<SenderName>,
    /// Correlation id of the request.
    pub correlation_id: String,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// Set once, when a reprocess captured (or settled) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<QuarantineResolution>,
}

impl QuarantineRecord {
    /// Store key: vendor + delivery key.
    pub fn key(&self) -> String {
        delivery_store_key(self.vendor, &self.delivery_key)
    }
}

/// How a quarantined delivery was settled by a reprocess.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineResolution {
    /// When.
    pub at: DateTime<Utc>,
    /// `accepted` (a new fact, published), `duplicate` (the fact was already captured by another
    /// delivery), `ignored` (now understood as a delivery without effect) or `superseded` (the same
    /// delivery id was later captured with another payload).
    pub outcome: String,
    /// The fact's event, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
}

/// Everything one capture writes, atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureWrite {
    /// The delivery (idempotency) record.
    pub delivery: DeliveryRecord,
    /// The canonical record and its outbox entry, unless the delivery is ignored.
    pub fact: Option<(CanonicalRecord, OutboxEntry)>,
    /// Further facts of the same delivery (a Lightspeed exchange is a sale and a return), written in the
    /// same atomic write. The facts of one delivery stand or fall together: if any is already stored,
    /// the delivery is a duplicate of the first and writes none of them.
    pub also: Vec<(CanonicalRecord, OutboxEntry)>,
    /// A fact that must already be stored for this one to mean anything (a void reverses a sale we
    /// captured); checked in the same atomic write.
    pub requires: Option<Requirement>,
    /// The lines of the write's claim-checked facts, written with their records (only when the facts
    /// are).
    pub lines: Vec<claim::ClaimedLines>,
}

/// A record that must exist for a capture's facts to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Key of the canonical record that must be stored.
    pub record_key: String,
    /// Why the delivery is ignored when it is not (recorded on the delivery, answered to the vendor).
    pub otherwise: String,
}

impl CaptureWrite {
    /// Every fact of the write, the first one first.
    pub fn facts(&self) -> impl Iterator<Item = &(CanonicalRecord, OutboxEntry)> {
        self.fact.iter().chain(self.also.iter())
    }
}

/// What a capture did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureOutcome {
    /// Everything was written.
    Stored,
    /// The delivery was seen before with the same payload; nothing was written.
    Duplicate(DeliveryRecord),
    /// The delivery key was seen before with a different payload; nothing was written.
    Conflict(DeliveryRecord),
    /// A new delivery of a fact captured earlier: only a delivery record pointing at it was written.
    FactAlreadyCaptured {
        /// The delivery record written.
        delivery: DeliveryRecord,
    },
    /// The write's [`Requirement`] was not stored: only the delivery record, as ignored, was written.
    RequirementMissing {
        /// The delivery record written (outcome `Ignored` with the requirement's reason).
        delivery: DeliveryRecord,
    },
}

/// The decision of a capture given what the store holds; shared by every adapter that reads then writes
/// inside one transaction (the DynamoDB adapter reaches the same outcomes through conditional writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write the delivery record and, if any, the fact and its outbox entry.
    WriteAll,
    /// Write only this delivery record (the fact exists already).
    WriteDeliveryOnly(DeliveryRecord),
    /// Write only this delivery record, as ignored (the write's requirement is not stored).
    WriteIgnored(DeliveryRecord),
    /// Write nothing; answer with this outcome.
    Nothing(CaptureOutcome),
}

/// Decides a capture. `existing` is the stored delivery record for the same key (if any), `fact_exists`
/// whether the canonical record of any of the write's facts is already stored, `requirement_met`
/// whether the write's [`Requirement`] (if any) is stored.
pub fn decide(
    existing: Option<&DeliveryRecord>,
    fact_exists: bool,
    requirement_met: bool,
    write: &CaptureWrite,
    now: DateTime<Utc>,
) -> Decision {
    if let Some(old) = existing.filter(|d| d.is_live(now)) {
        return if old.payload_hash == write.delivery.payload_hash {
            Decision::Nothing(CaptureOutcome::Duplicate(old.clone()))
        } else {
            Decision::Nothing(CaptureOutcome::Conflict(old.clone()))
        };
    }
    match &write.fact {
        Some((record, outbox)) if fact_exists => {
            let mut delivery = write.delivery.clone();
            delivery.outcome = DeliveryOutcome::DuplicateOf {
                record_key: record.record_key.clone(),
                event_id: outbox.envelope.event_id.clone(),
            };
            Decision::WriteDeliveryOnly(delivery)
        }
        Some(_) => match &write.requires {
            Some(req) if !requirement_met => Decision::WriteIgnored(ignored_delivery(write, req)),
            _ => Decision::WriteAll,
        },
        None => Decision::WriteAll,
    }
}

/// The delivery record of a write whose requirement is missing: ignored, with the requirement's reason.
pub fn ignored_delivery(write: &CaptureWrite, req: &Requirement) -> DeliveryRecord {
    let mut delivery = write.delivery.clone();
    delivery.outcome = DeliveryOutcome::Ignored {
        reason: req.otherwise.clone(),
    };
    delivery
}

/// Read access for operators and the local runner's inspection endpoints.
#[async_trait::async_trait]
pub trait StoreInspect: Send + Sync {
    /// Every canonical record, oldest capture first.
    async fn records(&self) -> Result<Vec<CanonicalRecord>, StoreError>;
    /// Every quarantined delivery.
    async fn quarantined(&self) -> Result<Vec<QuarantineRecord>, StoreError>;
    /// Every outbox entry still pending publication (what the relay will publish).
    async fn pending_outbox(&self) -> Result<Vec<OutboxEntry>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn delivery(hash: &str, now: DateTime<Utc>) -> DeliveryRecord {
        DeliveryRecord {
            vendor: Vendor::Standard,
            delivery_key: "msg_1".into(),
            payload_hash: hash.into(),
            outcome: DeliveryOutcome::Ignored {
                reason: "test".into(),
            },
            correlation_id: "c".into(),
            received_at: now,
            expires_at: now + Duration::days(7),
        }
    }

    #[test]
    fn same_key_same_payload_is_duplicate_other_payload_is_conflict() {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let write = CaptureWrite {
            delivery: delivery("aa", now),
            fact: None,
            also: Vec::new(),
            requires: None,
            lines: Vec::new(),
        };
        let same = delivery("aa", now);
        let other = delivery("bb", now);
        assert!(matches!(
            decide(Some(&same), false, true, &write, now),
            Decision::Nothing(CaptureOutcome::Duplicate(_))
        ));
        assert!(matches!(
            decide(Some(&other), false, true, &write, now),
            Decision::Nothing(CaptureOutcome::Conflict(_))
        ));
        assert_eq!(decide(None, false, true, &write, now), Decision::WriteAll);
    }

    #[test]
    fn a_missing_requirement_writes_an_ignored_delivery_and_an_existing_fact_wins() {
        use crate::ids::SaleId;
        use crate::model::{CanonicalEvent, Return, Source};
        use crate::money::{Currency, Money};
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let eur = Currency::parse("EUR").expect("eur");
        let event = CanonicalEvent::ReturnCompleted(Return {
            return_id: crate::ids::ReturnId::parse("lightspeed:s1:void").expect("id"),
            sale_id: Some(SaleId::parse("lightspeed:s1").expect("id")),
            store_id: crate::ids::StoreId::parse("lightspeed:o1").expect("id"),
            occurred_at: now,
            source: Source {
                vendor: Vendor::Lightspeed,
                external_id: "s1".into(),
                channel: None,
            },
            member_id: None,
            currency: eur,
            lines: Vec::new(),
            total_refund: Money::zero(eur),
        });
        let envelope = EventEnvelope::new(event.clone(), "c".into(), now);
        let write = CaptureWrite {
            delivery: delivery("aa", now),
            fact: Some((
                CanonicalRecord {
                    record_key: event.record_key(),
                    captured_at: now,
                    vendor: Vendor::Lightspeed,
                    delivery_key: "msg_1".into(),
                    event,
                    lines_ref: None,
                },
                OutboxEntry {
                    envelope,
                    status: OutboxStatus::Pending,
                    created_at: now,
                },
            )),
            also: Vec::new(),
            requires: Some(Requirement {
                record_key: "sale#lightspeed:s1".into(),
                otherwise: "never captured".into(),
            }),
            lines: Vec::new(),
        };
        match decide(None, false, false, &write, now) {
            Decision::WriteIgnored(d) => assert_eq!(
                d.outcome,
                DeliveryOutcome::Ignored {
                    reason: "never captured".into()
                }
            ),
            other => panic!("expected an ignored delivery, got {other:?}"),
        }
        assert_eq!(decide(None, false, true, &write, now), Decision::WriteAll);
        assert!(matches!(
            decide(None, true, false, &write, now),
            Decision::WriteDeliveryOnly(_)
        ));
    }

    #[test]
    fn expired_record_no_longer_deduplicates() {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let mut old = delivery("bb", now);
        old.expires_at = now;
        let write = CaptureWrite {
            delivery: delivery("aa", now),
            fact: None,
            also: Vec::new(),
            requires: None,
            lines: Vec::new(),
        };
        assert_eq!(
            decide(Some(&old), false, true, &write, now),
            Decision::WriteAll
        );
    }
}
