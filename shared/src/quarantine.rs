//! Reprocessing quarantined deliveries, exactly once, after a mapping fix.
//!
//! A signed delivery we could not map is kept with its raw body and the headers the mapping reads
//! ([`QuarantineRecord`]). Once a fix is deployed, an operator reprocesses it (`pos-local reprocess`, see
//! the README and the runbook in `infra/README.md`):
//!
//! 1. interpret the kept body again, with today's mapping (no signature check: it was verified when it
//!    arrived, and signature headers are not kept, so nothing can be slipped into the quarantine);
//! 2. capture it through [`CaptureService::capture_interpreted`], the same idempotent write a new delivery
//!    takes: the delivery key and the fact key dedupe it, so a second reprocess, a racing one or a vendor
//!    redelivery cannot apply it twice;
//! 3. record the resolution with a conditional write (first one wins).
//!
//! A crash between 2 and 3 leaves the record open; the next reprocess finds the delivery already captured
//! (a duplicate, no second effect) and resolves it. A delivery that is still unmappable stays open.

use crate::capture::{CaptureError, CaptureService, Captured};
use crate::ids::EventId;
use crate::model::Vendor;
use crate::ports::{Clock, QuarantineStore};
use crate::store::{QuarantineRecord, QuarantineResolution, StoreError};
use crate::vendors::{self, Signer};
use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

/// What a reprocess did with one quarantined delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Reprocessed {
    /// Captured as a new fact and published (or left in the outbox for the relay).
    Accepted {
        /// The fact's event.
        event_id: EventId,
    },
    /// The fact was already captured (by another delivery or an earlier, interrupted reprocess).
    Duplicate {
        /// The fact's event, when there is one.
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<EventId>,
    },
    /// Now understood as a delivery without effect.
    Ignored {
        /// Why.
        reason: String,
    },
    /// The same delivery id was captured later with another payload (a Standard sender fixed and resent
    /// it): that one counts.
    Superseded,
    /// Today's mapping still cannot map it: it stays in quarantine.
    StillUnmappable {
        /// Why.
        reason: String,
    },
    /// A reprocess already settled it: nothing done.
    AlreadyResolved,
    /// No such quarantined delivery.
    NotFound,
}

/// Why a reprocess could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReprocessError {
    /// The store failed (retry later).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The capture failed for an infrastructure reason (retry later; nothing was lost).
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The kept record is damaged (its body is not base64, or a kept header is not a header).
    #[error("quarantined delivery {0} is damaged: {1}")]
    Damaged(String, String),
}

/// One quarantined delivery's result, for reports.
#[derive(Debug, Serialize)]
pub struct ReprocessReport {
    /// Vendor.
    pub vendor: Vendor,
    /// Delivery key.
    pub delivery_key: String,
    /// The result, or the error text (infrastructure, never secrets).
    #[serde(flatten)]
    pub result: ReportResult,
}

/// A result or an error message.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ReportResult {
    /// Done.
    Done(Reprocessed),
    /// Failed; retry.
    Failed {
        /// What failed.
        error: String,
    },
}

/// Reprocesses quarantined deliveries through the capture service.
pub struct Reprocessor<'a> {
    capture: &'a CaptureService,
    quarantine: &'a dyn QuarantineStore,
    clock: &'a dyn Clock,
}

impl<'a> Reprocessor<'a> {
    /// A reprocessor over `capture` (which carries today's mapping) and the quarantine it writes to.
    pub fn new(
        capture: &'a CaptureService,
        quarantine: &'a dyn QuarantineStore,
        clock: &'a dyn Clock,
    ) -> Self {
        Self {
            capture,
            quarantine,
            clock,
        }
    }

    /// Reprocesses one quarantined delivery.
    pub async fn reprocess(
        &self,
        vendor: Vendor,
        delivery_key: &str,
    ) -> Result<Reprocessed, ReprocessError> {
        match self
            .quarantine
            .quarantined_delivery(vendor, delivery_key)
            .await?
        {
            None => Ok(Reprocessed::NotFound),
            Some(record) if record.resolution.is_some() => Ok(Reprocessed::AlreadyResolved),
            Some(record) => self.reprocess_record(&record).await,
        }
    }

    /// [`Self::reprocess`] as a report line (an infrastructure failure is reported, not returned).
    pub async fn report(&self, vendor: Vendor, delivery_key: String) -> ReprocessReport {
        let result = match self.reprocess(vendor, &delivery_key).await {
            Ok(done) => ReportResult::Done(done),
            Err(e) => ReportResult::Failed {
                error: e.to_string(),
            },
        };
        ReprocessReport {
            vendor,
            delivery_key,
            result,
        }
    }

    /// Reprocesses every open quarantined delivery, oldest first; one failure does not stop the others.
    pub async fn reprocess_all(&self) -> Result<Vec<ReprocessReport>, StoreError> {
        let mut reports = Vec::new();
        for record in self.quarantine.open_quarantine().await? {
            let result = match self.reprocess_record(&record).await {
                Ok(done) => ReportResult::Done(done),
                Err(e) => ReportResult::Failed {
                    error: e.to_string(),
                },
            };
            reports.push(ReprocessReport {
                vendor: record.vendor,
                delivery_key: record.delivery_key,
                result,
            });
        }
        Ok(reports)
    }

    async fn reprocess_record(
        &self,
        record: &QuarantineRecord,
    ) -> Result<Reprocessed, ReprocessError> {
        let damaged = |why: String| ReprocessError::Damaged(record.key(), why);
        let body = base64::engine::general_purpose::STANDARD
            .decode(&record.body_base64)
            .map_err(|e| damaged(format!("body: {e}")))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &record.headers {
            headers.insert(
                HeaderName::try_from(name.as_str()).map_err(|e| damaged(e.to_string()))?,
                HeaderValue::try_from(value.as_str()).map_err(|e| damaged(e.to_string()))?,
            );
        }
        let signer = record.sender.clone().map_or(Signer::Vendor, Signer::Sender);
        let interpreted = match vendors::interpret(
            record.vendor,
            &signer,
            &headers,
            &body,
            self.capture.mapping(),
        ) {
            Ok(i) => i,
            Err(malformed) => {
                return Ok(Reprocessed::StillUnmappable {
                    reason: malformed.to_string(),
                });
            }
        };
        let captured = self
            .capture
            .capture_interpreted(
                record.vendor,
                interpreted,
                vendors::signing::sha256_hex(&body),
                &record.correlation_id,
            )
            .await;
        let done = match captured {
            Ok(Captured::Accepted { event_id }) => Reprocessed::Accepted { event_id },
            Ok(Captured::Duplicate { event_id }) => Reprocessed::Duplicate { event_id },
            Ok(Captured::Ignored { reason }) => Reprocessed::Ignored { reason },
            Err(CaptureError::Conflict) => Reprocessed::Superseded,
            Err(CaptureError::Unmappable { reason }) => {
                tracing::warn!(vendor = %record.vendor, delivery_key = %record.delivery_key, %reason, "still unmappable");
                return Ok(Reprocessed::StillUnmappable { reason });
            }
            // capture_interpreted never answers this (it is the caller's choice for a new delivery).
            Ok(Captured::Quarantined) => {
                return Ok(Reprocessed::StillUnmappable {
                    reason: record.reason.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let (outcome, event_id) = match &done {
            Reprocessed::Accepted { event_id } => ("accepted", Some(event_id.clone())),
            Reprocessed::Duplicate { event_id } => ("duplicate", event_id.clone()),
            Reprocessed::Ignored { .. } => ("ignored", None),
            _ => ("superseded", None),
        };
        let recorded = self
            .quarantine
            .resolve_quarantine(
                record.vendor,
                &record.delivery_key,
                QuarantineResolution {
                    at: self.clock.now(),
                    outcome: outcome.into(),
                    event_id,
                },
            )
            .await?;
        tracing::info!(vendor = %record.vendor, delivery_key = %record.delivery_key, outcome, recorded, "quarantined delivery reprocessed");
        Ok(done)
    }
}
