//! The capture use case: from a raw webhook request to a stored, published canonical event.
//!
//! Steps (each failure has exactly one answer, see [`CaptureError::status`]):
//! 1. route: vendor known (404), `POST` (405), body within the limit (413), media type (415);
//! 2. verify the signature over the exact raw bytes (401); on a mismatch, refresh the secrets once
//!    (rate-limited) in case they were rotated since our cached copy;
//! 3. interpret: malformed (400), ignorable (200, recorded), unmappable (quarantined: 200
//!    `quarantined` for a vendor's delivery, which is our mapping's problem and must not make the vendor
//!    retry and then drop its subscription; 422 for Standard Webhooks, whose senders can fix their payload);
//! 4. one atomic store write: delivery record + canonical record + outbox entry (and, for a fact too big
//!    for the bus, its lines stored aside with a reference in the event: [`claim`]). That write is the
//!    request's only call to the platform's infrastructure: a 2xx means the fact is durable.
//!
//! Publication is not on this path: the store's change stream (DynamoDB Streams on AWS, the embedded
//! store's feed locally) hands each new outbox entry to the publisher ([`crate::outbox::stream`],
//! [`crate::outbox::feed`]), and the scheduled relay sweeps whatever is still pending after a minute. A
//! duplicate delivery costs one failed conditional write and publishes nothing: its fact's entry is
//! already on its way.

use crate::ids::EventId;
use crate::metrics::{Metrics, Sink};
use crate::model::{CanonicalEvent, EventEnvelope, Vendor};
use crate::ports::{CaptureStore, Clock, SecretSource};
use crate::secrets::SecretError;
use crate::store::claim;
use crate::store::{
    CanonicalRecord, CaptureOutcome, CaptureWrite, DeliveryOutcome, DeliveryRecord, OutboxEntry,
    OutboxStatus, QuarantineRecord, Requirement, StoreError,
};
use crate::vendors::{
    self, AuthError, Interpretation, Interpreted, Malformed, MappingConfig, Signer,
};
use base64::Engine;
use chrono::Duration;
use http::{HeaderMap, Method, StatusCode};
use serde::Serialize;
use std::sync::Arc;

/// Tunables of the capture function.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    /// Largest body accepted (413 above).
    pub max_body_bytes: usize,
    /// How long a delivery record deduplicates (longer than any vendor's retry window: Square 72 h).
    pub delivery_ttl: Duration,
    /// Mapping settings.
    pub mapping: MappingConfig,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            delivery_ttl: Duration::days(7),
            mapping: MappingConfig::default(),
        }
    }
}

/// A webhook request, independent of how it arrived (API Gateway event, local HTTP, test).
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    /// HTTP method.
    pub method: Method,
    /// The `{vendor}` path segment.
    pub vendor: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// The exact raw body bytes.
    pub body: Vec<u8>,
    /// Correlation id for logs and events.
    pub correlation_id: String,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Captured {
    /// A new fact was stored; its event is in the outbox, on its way to the bus (202).
    Accepted {
        /// The fact's event.
        event_id: EventId,
    },
    /// A redelivery, or another delivery of a fact already stored: no new effect (200).
    Duplicate {
        /// The event of the fact, when the delivery carried one.
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<EventId>,
    },
    /// Acknowledged, recorded, no effect (200).
    Ignored {
        /// Why.
        reason: String,
    },
    /// A vendor's signed delivery we cannot map yet: kept in quarantine for a reprocess after a mapping
    /// fix, acknowledged so the vendor neither retries nor disables the webhook (200).
    Quarantined,
}

impl Captured {
    /// HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Captured::Accepted { .. } => StatusCode::ACCEPTED,
            Captured::Duplicate { .. } | Captured::Ignored { .. } | Captured::Quarantined => {
                StatusCode::OK
            }
        }
    }
}

/// Every way a capture can fail; [`CaptureError::status`] is the one place they meet HTTP.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// No such vendor route.
    #[error("unknown webhook route")]
    UnknownVendor,
    /// Not a POST.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Body over the limit.
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A body within the limit whose lines, stored aside, would exceed what one atomic capture write
    /// holds ([`claim::MAX_CLAIMED_BYTES`]; only reachable with `MAX_BODY_BYTES` above its default).
    #[error("the delivery's lines take {bytes} bytes, over the {limit}-byte limit of one capture")]
    LinesTooLarge {
        /// Bytes of the lines' JSON.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Wrong or missing `Content-Type`.
    #[error("content type must be {expected}")]
    UnsupportedMediaType {
        /// The vendor's media type.
        expected: &'static str,
    },
    /// Signature missing or wrong, or stale timestamp.
    #[error("signature verification failed: {0}")]
    Unauthorized(#[from] AuthError),
    /// Not what the vendor sends.
    #[error("malformed request: {0}")]
    Malformed(#[from] Malformed),
    /// Signed, well-formed, not mappable, from a sender that can fix it (Standard Webhooks): quarantined
    /// and refused with the reason.
    #[error("the delivery cannot be mapped and was quarantined: {reason}")]
    Unmappable {
        /// Why.
        reason: String,
    },
    /// Same delivery id as an earlier delivery, different payload.
    #[error("this delivery id was already used with a different payload")]
    Conflict,
    /// No secrets configured for the vendor (operator error; 503 so the vendor retries once fixed).
    #[error("vendor {0} is not configured")]
    VendorNotConfigured(Vendor),
    /// Secrets could not be loaded.
    #[error(transparent)]
    Secrets(#[from] SecretError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CaptureError {
    /// The HTTP status: 4xx for the caller's mistakes, 503 only for our infrastructure.
    pub fn status(&self) -> StatusCode {
        match self {
            CaptureError::UnknownVendor => StatusCode::NOT_FOUND,
            CaptureError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            CaptureError::PayloadTooLarge { .. } | CaptureError::LinesTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            CaptureError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            CaptureError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            CaptureError::Malformed(_) => StatusCode::BAD_REQUEST,
            CaptureError::Unmappable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            CaptureError::Conflict => StatusCode::CONFLICT,
            CaptureError::VendorNotConfigured(_)
            | CaptureError::Secrets(_)
            | CaptureError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable slug naming the problem type.
    pub fn slug(&self) -> &'static str {
        match self {
            CaptureError::UnknownVendor => "unknown-route",
            CaptureError::MethodNotAllowed => "method-not-allowed",
            CaptureError::PayloadTooLarge { .. } | CaptureError::LinesTooLarge { .. } => {
                "payload-too-large"
            }
            CaptureError::UnsupportedMediaType { .. } => "unsupported-media-type",
            CaptureError::Unauthorized(_) => "invalid-signature",
            CaptureError::Malformed(_) => "malformed-request",
            CaptureError::Unmappable { .. } => "unmappable-delivery",
            CaptureError::Conflict => "delivery-conflict",
            CaptureError::VendorNotConfigured(_)
            | CaptureError::Secrets(_)
            | CaptureError::Store(_) => "temporarily-unavailable",
        }
    }

    /// The detail shown to the caller: the caller's own mistake in full, never our internals.
    pub fn public_detail(&self) -> String {
        match self {
            CaptureError::Unauthorized(AuthError::BadSignature) => {
                "signature does not match".into()
            }
            CaptureError::VendorNotConfigured(_)
            | CaptureError::Secrets(_)
            | CaptureError::Store(_) => {
                "the platform could not process the delivery now; retry later".into()
            }
            other => other.to_string(),
        }
    }
}

/// The capture service: ports in, answers out.
pub struct CaptureService {
    store: Arc<dyn CaptureStore>,
    secrets: Arc<dyn SecretSource>,
    clock: Arc<dyn Clock>,
    settings: CaptureSettings,
    metrics: Arc<Metrics>,
    /// Local sample replay only ([`CaptureService::with_standard_replay_instant`]).
    replay_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        v.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

impl CaptureService {
    /// Wires the service to its ports.
    pub fn new(
        store: Arc<dyn CaptureStore>,
        secrets: Arc<dyn SecretSource>,
        clock: Arc<dyn Clock>,
        settings: CaptureSettings,
    ) -> Self {
        Self {
            store,
            secrets,
            clock,
            settings,
            metrics: Arc::new(Metrics::new("sale-capture", Sink::Off)),
            replay_at: None,
        }
    }

    /// Local replay of signed samples (embedded backend only; the config refuses it with AWS): a
    /// Standard Webhooks timestamp stale or ahead of now is also accepted within the tolerance around
    /// `at`, the instant the samples were signed. The signature is still checked.
    pub fn with_standard_replay_instant(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
        self.replay_at = Some(at);
        self
    }

    /// Sends the service's EMF metrics to `metrics` (default: dropped).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The mapping settings in force.
    pub fn mapping(&self) -> &MappingConfig {
        &self.settings.mapping
    }

    /// The service's metrics emitter.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Handles one webhook delivery.
    pub async fn handle(&self, req: &WebhookRequest) -> Result<Captured, CaptureError> {
        let vendor = Vendor::from_path(&req.vendor).ok_or(CaptureError::UnknownVendor)?;
        if req.method != Method::POST {
            return Err(CaptureError::MethodNotAllowed);
        }
        if req.body.len() > self.settings.max_body_bytes {
            return Err(CaptureError::PayloadTooLarge {
                limit: self.settings.max_body_bytes,
            });
        }
        let expected = vendors::expected_media_type(vendor);
        if media_type(&req.headers).as_deref() != Some(expected) {
            return Err(CaptureError::UnsupportedMediaType { expected });
        }
        let signer = self.verify(vendor, req).await?;
        let interpreted = vendors::interpret(
            vendor,
            &signer,
            &req.headers,
            &req.body,
            &self.settings.mapping,
        )?;
        if let Interpretation::Unmappable(reason) = &interpreted.interpretation {
            self.store
                .quarantine(QuarantineRecord {
                    vendor,
                    delivery_key: interpreted.delivery_key.clone(),
                    reason: reason.clone(),
                    body_base64: base64::engine::general_purpose::STANDARD.encode(&req.body),
                    headers: vendors::mapping_headers(vendor, &req.headers),
                    sender: match signer {
                        Signer::Sender(name) => Some(name),
                        Signer::Vendor => None,
                    },
                    correlation_id: req.correlation_id.clone(),
                    received_at: self.clock.now(),
                    resolution: None,
                })
                .await?;
            tracing::warn!(%vendor, delivery_key = %interpreted.delivery_key, %reason, "delivery quarantined");
            return if vendors::refuses_unmappable(vendor) {
                Err(CaptureError::Unmappable {
                    reason: reason.clone(),
                })
            } else {
                Ok(Captured::Quarantined)
            };
        }
        self.capture_interpreted(
            vendor,
            interpreted,
            vendors::signing::sha256_hex(&req.body),
            &req.correlation_id,
        )
        .await
    }

    /// Stores a verified, interpreted delivery: the one write path of new deliveries and of
    /// quarantined ones being reprocessed, so both dedupe the same way (by delivery key and by fact).
    /// An unmappable interpretation is returned as [`CaptureError::Unmappable`], without storing anything.
    pub async fn capture_interpreted(
        &self,
        vendor: Vendor,
        interpreted: Interpreted,
        payload_hash: String,
        correlation_id: &str,
    ) -> Result<Captured, CaptureError> {
        let now = self.clock.now();
        let delivery = |outcome| DeliveryRecord {
            vendor,
            delivery_key: interpreted.delivery_key.clone(),
            payload_hash: payload_hash.clone(),
            outcome,
            correlation_id: correlation_id.to_owned(),
            received_at: now,
            expires_at: now + self.settings.delivery_ttl,
        };
        // One fact, several (an exchange), or one that needs another captured first (a void).
        let (events, requires) = match interpreted.interpretation.clone() {
            Interpretation::Unmappable(reason) => return Err(CaptureError::Unmappable { reason }),
            Interpretation::Ignored(reason) => {
                let write = CaptureWrite {
                    delivery: delivery(DeliveryOutcome::Ignored {
                        reason: reason.clone(),
                    }),
                    fact: None,
                    also: Vec::new(),
                    requires: None,
                    lines: Vec::new(),
                };
                return match self.store.capture(write).await? {
                    CaptureOutcome::Stored => Ok(Captured::Ignored { reason }),
                    CaptureOutcome::Conflict(_) => Err(CaptureError::Conflict),
                    CaptureOutcome::Duplicate(old)
                    | CaptureOutcome::FactAlreadyCaptured { delivery: old }
                    | CaptureOutcome::RequirementMissing { delivery: old } => {
                        Ok(Self::duplicate(&old))
                    }
                };
            }
            Interpretation::Event(event) => (vec![event], None),
            Interpretation::Events(events) => (events, None),
            Interpretation::Reversal {
                event,
                requires,
                otherwise,
            } => (
                vec![event],
                Some(Requirement {
                    record_key: requires,
                    otherwise,
                }),
            ),
        };
        self.capture_facts(
            vendor,
            correlation_id,
            &interpreted.delivery_key,
            now,
            delivery,
            events,
            requires,
        )
        .await
    }

    /// Stores the facts of one delivery in one atomic write (their events in the outbox with them).
    #[allow(clippy::too_many_arguments)]
    async fn capture_facts(
        &self,
        vendor: Vendor,
        correlation_id: &str,
        delivery_key: &str,
        now: chrono::DateTime<chrono::Utc>,
        delivery: impl Fn(DeliveryOutcome) -> DeliveryRecord,
        events: Vec<CanonicalEvent>,
        requires: Option<Requirement>,
    ) -> Result<Captured, CaptureError> {
        let mut facts = Vec::with_capacity(events.len());
        let mut lines = Vec::new();
        for event in events {
            let mut envelope = EventEnvelope::new(event, correlation_id.to_owned(), now);
            let record_key = envelope.event.record_key();
            // Too big for the bus: the lines go aside, in this same write ([`claim`]).
            lines.extend(claim::claim_check(&mut envelope, &record_key)?);
            let record = CanonicalRecord {
                record_key,
                captured_at: now,
                vendor,
                delivery_key: delivery_key.to_owned(),
                event: envelope.event.clone(),
                lines_ref: envelope.lines_ref.clone(),
            };
            let entry = OutboxEntry {
                envelope,
                status: OutboxStatus::Pending,
                created_at: now,
            };
            facts.push((record, entry));
        }
        let claimed: usize = lines
            .iter()
            .map(|l: &claim::ClaimedLines| l.chunks.iter().map(Vec::len).sum::<usize>())
            .sum();
        if claimed > claim::MAX_CLAIMED_BYTES {
            return Err(CaptureError::LinesTooLarge {
                bytes: claimed,
                limit: claim::MAX_CLAIMED_BYTES,
            });
        }
        let mut facts = facts.into_iter();
        let Some(first) = facts.next() else {
            return Err(CaptureError::Unmappable {
                reason: "the delivery carries no fact".into(),
            });
        };
        let also: Vec<_> = facts.collect();
        // The delivery points at its first fact; the others share its key prefix (same vendor sale).
        let write = CaptureWrite {
            delivery: delivery(DeliveryOutcome::Captured {
                record_key: first.0.record_key.clone(),
                event_id: first.1.envelope.event_id.clone(),
            }),
            fact: Some(first),
            also,
            requires,
            lines,
        };
        let mut captured: Vec<(EventId, &'static str)> = write
            .facts()
            .map(|(_, e)| (e.envelope.event_id.clone(), e.envelope.detail_type()))
            .collect();
        match self.store.capture(write).await? {
            CaptureOutcome::Stored => {
                for (event_id, detail_type) in &captured {
                    tracing::info!(%vendor, %event_id, detail_type, "captured");
                }
                let (event_id, _) = captured.swap_remove(0);
                Ok(Captured::Accepted { event_id })
            }
            CaptureOutcome::Conflict(_) => Err(CaptureError::Conflict),
            CaptureOutcome::RequirementMissing { delivery } => {
                let reason = match delivery.outcome {
                    DeliveryOutcome::Ignored { reason } => reason,
                    _ => "not acted on".into(),
                };
                tracing::info!(%vendor, %delivery_key, %reason, "delivery ignored");
                Ok(Captured::Ignored { reason })
            }
            CaptureOutcome::Duplicate(old)
            | CaptureOutcome::FactAlreadyCaptured { delivery: old } => Ok(Self::duplicate(&old)),
        }
    }

    async fn verify(&self, vendor: Vendor, req: &WebhookRequest) -> Result<Signer, CaptureError> {
        let secrets = self.secrets.load().await?;
        if !vendors::is_configured(vendor, &secrets) {
            tracing::error!(%vendor, "no secrets configured for vendor");
            return Err(CaptureError::VendorNotConfigured(vendor));
        }
        let now = self.clock.now();
        let mut verified = vendors::verify(vendor, &req.headers, &req.body, &secrets, now);
        if let (Err(AuthError::StaleTimestamp | AuthError::FutureTimestamp), Some(at)) =
            (&verified, self.replay_at)
        {
            verified = vendors::verify(vendor, &req.headers, &req.body, &secrets, at);
            if verified.is_ok() {
                tracing::info!(%vendor, "accepted as a local replay of a sample signed at the replay instant");
            }
        }
        match verified {
            Err(AuthError::BadSignature) => {
                // The secret may have been rotated after we cached it: look once more (rate-limited by the
                // cache, so forged requests cannot hammer the secret store).
                if self.secrets.refresh().await.unwrap_or(false) {
                    let fresh = self.secrets.load().await?;
                    if let Ok(signer) =
                        vendors::verify(vendor, &req.headers, &req.body, &fresh, now)
                    {
                        return Ok(signer);
                    }
                }
                tracing::warn!(%vendor, "signature mismatch");
                Err(AuthError::BadSignature.into())
            }
            Err(e) => {
                tracing::warn!(%vendor, reason = %e, "signature check failed");
                Err(e.into())
            }
            Ok(signer) => Ok(signer),
        }
    }

    /// A repeated delivery, or another delivery of a fact already stored: no new effect (200). Nothing
    /// is published here: the fact's entry went to the publisher when it was stored, and the relay's
    /// sweep publishes it if that failed.
    fn duplicate(old: &DeliveryRecord) -> Captured {
        let event_id = match &old.outcome {
            DeliveryOutcome::Captured { event_id, .. }
            | DeliveryOutcome::DuplicateOf { event_id, .. } => Some(event_id.clone()),
            DeliveryOutcome::Ignored { .. } => None,
        };
        tracing::info!(vendor = %old.vendor, delivery_key = %old.delivery_key, event_id = ?event_id.as_ref().map(EventId::as_str), "duplicate delivery");
        Captured::Duplicate { event_id }
    }
}
