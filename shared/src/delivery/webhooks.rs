//! Signed webhooks out: every domain event POSTed to the URLs subscribed to it, signed per Standard
//! Webhooks (the scheme [`crate::vendors::standard`] verifies inbound, now as the sender).
//!
//! - **Subscriptions** ([`Subscription`]) come from the `webhooks` section of the connectors file
//!   ([`subscriptions_from_connectors`]): an id, an `https` URL (plain `http` only to a loopback
//!   address), the event types it takes (empty: all) and its `whsec_` secrets, newest first.
//! - **Signing.** Each request carries `webhook-id` (our event id: the receiver's idempotency key),
//!   `webhook-timestamp` (Unix seconds, from the injected clock) and `webhook-signature`, one
//!   `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` per secret, space-separated: during a
//!   rotation the receiver may hold the old or the new secret and both verify. The body is the event
//!   envelope JSON, the same bytes signed and sent. One HMAC in the repo: [`crate::vendors::signing`].
//! - **Delivery** ([`WebhookEndpoint`], a [`Destination`] named `webhooks:{id}`): a 2xx is delivered;
//!   anything else (3xx included: redirects are not followed) is retried, as the spec says. There is no
//!   read-back (`read_back` is `None`): after an ambiguous failure the event is sent again with the same
//!   `webhook-id`, and the receiver deduplicates on it.
//! - **Retries** on the schedule the spec recommends ([`super::retry::STANDARD_WEBHOOKS`]: 5 s, 5 min,
//!   30 min, 2 h, 5 h, 10 h, 10 h), one try per receive; after the 8th failed attempt the entry is
//!   `dead` ("retry schedule exhausted") and the record goes the way of poison (DLQ).
//! - **Disabling** ([`EndpointHealth`]): an endpoint failing without a single success for longer than
//!   `disable_after` (default 5 days, as the spec suggests) is disabled: `tracing::error!` and the EMF
//!   metric `WebhookEndpointDisabled` (dimension `subscription`) once, then its records are acknowledged
//!   as `dead` with reason "endpoint disabled" without a call. Nothing is lost: the ledger lists them and
//!   they are delivered when replayed after [`EndpointHealth::enable`] (the engine retries `dead`
//!   entries).
//! - **Fan-out** ([`WebhookFanout`]): one event to every subscription that wants it, one outcome per
//!   record; subscriptions already delivered are skipped by the ledger on the next receive.

use super::breaker::{BreakerConfig, BreakerStore, CircuitBreaker};
use super::client::DestinationClient;
use super::engine::{Deliverer, Destination, EngineError, Failure, Landed, Outcome};
use super::ledger::{DeliveryEntry, DeliveryLedger, DeliveryStatus, LedgerError};
use super::retry::{RetryPolicy, STANDARD_WEBHOOKS, Schedule};
use super::sync::{DeliveryError, RecordDelivery};
use crate::metrics::{Metrics, Unit};
use crate::model::EventEnvelope;
use crate::ports::Clock;
use crate::secrets::KeyRing;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// The EMF metric emitted once when an endpoint is disabled (dimensions `function`, `subscription`).
pub const ENDPOINT_DISABLED_METRIC: &str = "WebhookEndpointDisabled";

/// The ledger's reason for records of a disabled endpoint.
pub const ENDPOINT_DISABLED: &str = "endpoint disabled";

/// The event types a subscription may filter on (the bus `detail-type`s).
pub const EVENT_TYPES: [&str; 6] = [
    "SaleCompleted",
    "ReturnCompleted",
    "StockAdjusted",
    "SaleAwaitingEnrichment",
    "StockLow",
    "StockNegative",
];

/// One webhook subscription.
#[derive(Clone)]
pub struct Subscription {
    /// Its id (1 to 64 of `a-z`, `0-9`, `-`, `_`): the destination is `webhooks:{id}`.
    pub id: String,
    /// Where events are POSTed.
    pub url: reqwest::Url,
    /// The event types it takes; empty: all.
    pub event_types: Vec<String>,
    /// Its secrets, newest first (several during a rotation overlap).
    pub secrets: Vec<SecretString>,
    /// Whether it takes anything.
    pub enabled: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("url", &self.url.as_str())
            .field("event_types", &self.event_types)
            .field(
                "secrets",
                &format_args!("[REDACTED; {}]", self.secrets.len()),
            )
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// Why the subscriptions could not be read. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// Not the expected JSON shape.
    #[error("webhooks section: {0}")]
    Shape(String),
    /// A bad id.
    #[error("subscription id {0:?}: 1 to 64 characters of a-z, 0-9, - and _")]
    Id(String),
    /// Two subscriptions with one id.
    #[error("subscription id {0:?} appears twice")]
    Duplicate(String),
    /// Not a URL we may call.
    #[error("subscription {id}: url {reason}")]
    Url {
        /// The subscription.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A secret that is not `whsec_` + base64 of 24 to 64 bytes.
    #[error(
        "subscription {id}: secret {index} is not whsec_ followed by the base64 of 24 to 64 bytes"
    )]
    Secret {
        /// The subscription.
        id: String,
        /// Its position in the list (from 0).
        index: usize,
    },
    /// An event type we never publish.
    #[error("subscription {id}: unknown event type {event_type:?} (known: {known})", known = EVENT_TYPES.join(", "))]
    EventType {
        /// The subscription.
        id: String,
        /// The type.
        event_type: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSection {
    subscriptions: Vec<RawSubscription>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscription {
    id: String,
    url: String,
    #[serde(default)]
    event_types: Vec<String>,
    /// One secret or a list, newest first (`secret` is accepted too).
    #[serde(alias = "secret")]
    secrets: KeyRing,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The sale an event belongs to, for the ledger's per-sale listing (as the engine records it).
fn sale_of(event: &EventEnvelope) -> Option<crate::ids::SaleId> {
    use crate::model::CanonicalEvent;
    match &event.event {
        CanonicalEvent::SaleCompleted(s) => Some(s.sale_id.clone()),
        CanonicalEvent::ReturnCompleted(r) => r.sale_id.clone(),
        CanonicalEvent::SaleAwaitingEnrichment(p) => Some(p.sale_id.clone()),
        _ => None,
    }
}

/// The subscriptions of a connectors file (`{"webhooks": {"subscriptions": [...]}}`); none when it has no
/// `webhooks` section.
pub fn subscriptions_from_connectors(text: &str) -> Result<Vec<Subscription>, SubscriptionError> {
    let file: serde_json::Value =
        serde_json::from_str(text).map_err(|e| SubscriptionError::Shape(e.to_string()))?;
    match file.get("webhooks") {
        None => Ok(Vec::new()),
        Some(section) => subscriptions_from_json(section),
    }
}

/// The subscriptions of a `webhooks` section (`{"subscriptions": [...]}`), checked.
pub fn subscriptions_from_json(
    section: &serde_json::Value,
) -> Result<Vec<Subscription>, SubscriptionError> {
    let raw =
        RawSection::deserialize(section).map_err(|e| SubscriptionError::Shape(e.to_string()))?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.subscriptions.len());
    for s in raw.subscriptions {
        let id_ok = !s.id.is_empty()
            && s.id.len() <= 64
            && s.id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(SubscriptionError::Id(s.id));
        }
        if !seen.insert(s.id.clone()) {
            return Err(SubscriptionError::Duplicate(s.id));
        }
        let url_error = |reason: &str| SubscriptionError::Url {
            id: s.id.clone(),
            reason: reason.to_owned(),
        };
        let url =
            reqwest::Url::parse(&s.url).map_err(|e| url_error(&format!("is not a URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => {
                return Err(url_error(
                    "must be https (plain http only to a loopback address)",
                ));
            }
            _ => return Err(url_error("must be https")),
        }
        if url.host().is_none() {
            return Err(url_error("has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(url_error("may not carry credentials"));
        }
        for (index, secret) in s.secrets.values().enumerate() {
            let key = secret
                .strip_prefix("whsec_")
                .and_then(crate::vendors::signing::standard_key);
            if !key.is_some_and(|k| (24..=64).contains(&k.len())) {
                return Err(SubscriptionError::Secret {
                    id: s.id.clone(),
                    index,
                });
            }
        }
        if let Some(unknown) = s
            .event_types
            .iter()
            .find(|t| !EVENT_TYPES.contains(&t.as_str()))
        {
            return Err(SubscriptionError::EventType {
                id: s.id.clone(),
                event_type: unknown.clone(),
            });
        }
        out.push(Subscription {
            secrets: s
                .secrets
                .values()
                .map(|v| SecretString::from(v.to_owned()))
                .collect(),
            id: s.id,
            url,
            event_types: s.event_types,
            enabled: s.enabled,
        });
    }
    Ok(out)
}

/// The `webhook-signature` value: one `v1,<base64>` per secret, space-separated.
pub fn signature_header(
    secrets: &[SecretString],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .filter_map(|s| {
            crate::vendors::signing::standard_signature(s.expose_secret(), msg_id, timestamp, body)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A reqwest client for webhooks: redirects are not followed (a 3xx is a failure, per the spec).
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// One subscription as a destination.
pub struct WebhookEndpoint {
    subscription: Subscription,
    name: String,
    client: DestinationClient,
    clock: Arc<dyn Clock>,
}

impl WebhookEndpoint {
    /// The endpoint of `subscription`, called through `client` (built with
    /// [`DestinationClient::unauthenticated`] over [`http_client`]).
    pub fn new(
        subscription: Subscription,
        client: DestinationClient,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            name: format!("webhooks:{}", subscription.id),
            subscription,
            client,
            clock,
        }
    }

    /// Its subscription.
    pub fn subscription(&self) -> &Subscription {
        &self.subscription
    }
}

#[async_trait]
impl Destination for WebhookEndpoint {
    fn name(&self) -> &str {
        &self.name
    }

    fn wants(&self, event: &EventEnvelope) -> bool {
        let types = &self.subscription.event_types;
        self.subscription.enabled
            && (types.is_empty() || types.iter().any(|t| t == event.detail_type()))
    }

    /// None: Standard Webhooks has no read-back; the idempotency key is `webhook-id`.
    async fn read_back(&self, _event: &EventEnvelope) -> Result<Option<Landed>, Failure> {
        Ok(None)
    }

    async fn send(&self, event: &EventEnvelope) -> Result<Landed, Failure> {
        let body = serde_json::to_vec(event).map_err(|e| Failure::Permanent {
            reason: format!("event not serialisable: {e}"),
        })?;
        let msg_id = event.event_id.to_string();
        let timestamp = self.clock.now().timestamp();
        let signature = signature_header(&self.subscription.secrets, &msg_id, timestamp, &body);
        let url = self.subscription.url.clone();
        let sent = self
            .client
            .send(|http| {
                http.post(url.clone())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header("webhook-id", &msg_id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", &signature)
                    .body(body.clone())
            })
            .await;
        match sent {
            Ok(reply) if reply.status.is_success() => Ok(Landed::default()),
            Ok(reply) => Err(refused(reply.status)),
            // Every non-2xx is retried (the spec's rule); the endpoint is disabled if it never recovers.
            Err(Failure::Permanent { reason }) => Err(Failure::Transient {
                reason,
                retry_after: None,
            }),
            Err(transient) => Err(transient),
        }
    }
}

fn refused(status: StatusCode) -> Failure {
    Failure::Transient {
        reason: format!("HTTP {}", status.as_u16()),
        retry_after: None,
    }
}

/// An endpoint's health as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    /// The first failure since the last success, while it keeps failing.
    pub failing_since: Option<DateTime<Utc>>,
    /// When it was disabled.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Incremented by every write.
    pub version: u64,
}

/// Why the health store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("endpoint health store unavailable: {0}")]
pub struct HealthStoreError(pub String);

/// Where endpoint health records live (DynamoDB: the deliveries table; memory in tests).
#[async_trait]
pub trait HealthStore: Send + Sync {
    /// The subscription's record, if any.
    async fn load(&self, subscription: &str) -> Result<Option<HealthRecord>, HealthStoreError>;

    /// Writes `record` if the stored version is `expected` (`None`: no record yet); whether it was
    /// written.
    async fn compare_and_set(
        &self,
        subscription: &str,
        expected: Option<u64>,
        record: &HealthRecord,
    ) -> Result<bool, HealthStoreError>;
}

/// Health records in memory (tests; same compare-and-set semantics).
#[derive(Debug, Default)]
pub struct MemoryHealthStore(Mutex<HashMap<String, HealthRecord>>);

#[async_trait]
impl HealthStore for MemoryHealthStore {
    async fn load(&self, subscription: &str) -> Result<Option<HealthRecord>, HealthStoreError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(subscription)
            .cloned())
    }

    async fn compare_and_set(
        &self,
        subscription: &str,
        expected: Option<u64>,
        record: &HealthRecord,
    ) -> Result<bool, HealthStoreError> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.get(subscription).map(|r| r.version) != expected {
            return Ok(false);
        }
        map.insert(subscription.to_owned(), record.clone());
        Ok(true)
    }
}

/// What a failure made of the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Failing, not for long enough to disable it.
    Failing,
    /// This failure disabled it (reported by exactly one caller: the one whose write won).
    DisabledNow,
    /// It was disabled already.
    Disabled,
}

/// The endpoint health rule: failing continuously for longer than `disable_after` disables it.
#[derive(Clone)]
pub struct EndpointHealth {
    store: Arc<dyn HealthStore>,
    disable_after: chrono::Duration,
}

impl EndpointHealth {
    /// The spec's suggestion: 5 days.
    pub const DEFAULT_DISABLE_AFTER: chrono::Duration = chrono::Duration::days(5);

    /// The rule over `store`.
    pub fn new(store: Arc<dyn HealthStore>, disable_after: chrono::Duration) -> Self {
        Self {
            store,
            disable_after,
        }
    }

    /// Applies `change` to the record (compare-and-set, reloaded after a lost race); `change` returns
    /// `None` when nothing is to be written, and the value handed back.
    async fn update<T>(
        &self,
        subscription: &str,
        change: impl Fn(&HealthRecord) -> (Option<HealthRecord>, T),
    ) -> Result<T, HealthStoreError> {
        loop {
            let stored = self.store.load(subscription).await?;
            let expected = stored.as_ref().map(|r| r.version);
            let current = stored.unwrap_or_default();
            let (next, value) = change(&current);
            let Some(mut next) = next else {
                return Ok(value);
            };
            next.version = current.version + 1;
            if self
                .store
                .compare_and_set(subscription, expected, &next)
                .await?
            {
                return Ok(value);
            }
        }
    }

    /// Records a failure at `now`.
    pub async fn record_failure(
        &self,
        subscription: &str,
        now: DateTime<Utc>,
    ) -> Result<Verdict, HealthStoreError> {
        self.update(subscription, |r| {
            if r.disabled_at.is_some() {
                return (None, Verdict::Disabled);
            }
            match r.failing_since {
                None => (
                    Some(HealthRecord {
                        failing_since: Some(now),
                        ..r.clone()
                    }),
                    Verdict::Failing,
                ),
                Some(since) if now - since > self.disable_after => (
                    Some(HealthRecord {
                        disabled_at: Some(now),
                        ..r.clone()
                    }),
                    Verdict::DisabledNow,
                ),
                Some(_) => (None, Verdict::Failing),
            }
        })
        .await
    }

    /// Records a success: the failing period ends.
    pub async fn record_success(&self, subscription: &str) -> Result<(), HealthStoreError> {
        self.update(subscription, |r| {
            let next =
                (r.failing_since.is_some() && r.disabled_at.is_none()).then(|| HealthRecord {
                    failing_since: None,
                    ..r.clone()
                });
            (next, ())
        })
        .await
    }

    /// Whether the endpoint is disabled.
    pub async fn is_disabled(&self, subscription: &str) -> Result<bool, HealthStoreError> {
        Ok(self
            .store
            .load(subscription)
            .await?
            .is_some_and(|r| r.disabled_at.is_some()))
    }

    /// Enables it again (an operator, once the receiver is fixed): its dead records may be replayed.
    pub async fn enable(&self, subscription: &str) -> Result<(), HealthStoreError> {
        self.update(subscription, |r| {
            let next =
                (r.disabled_at.is_some() || r.failing_since.is_some()).then(|| HealthRecord {
                    failing_since: None,
                    disabled_at: None,
                    ..r.clone()
                });
            (next, ())
        })
        .await
    }
}

/// Why the fan-out could not decide (its stores failed): the record is retried as a whole.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// The engine's stores failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The health store failed.
    #[error(transparent)]
    Health(#[from] HealthStoreError),
}

/// What the fan-out needs besides the subscriptions.
#[derive(Clone)]
pub struct FanoutParts {
    /// The HTTP client (unauthenticated, over [`http_client`]).
    pub client: DestinationClient,
    /// The delivery ledger.
    pub ledger: Arc<dyn DeliveryLedger>,
    /// Where the breakers (one per subscription) live.
    pub breakers: Arc<dyn BreakerStore>,
    /// Their tunables.
    pub breaker_config: BreakerConfig,
    /// The disabling rule.
    pub health: EndpointHealth,
    /// The clock (timestamps, health).
    pub clock: Arc<dyn Clock>,
    /// Where `WebhookEndpointDisabled` goes.
    pub metrics: Arc<Metrics>,
}

/// One event's outcome: per subscription, and for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fanned {
    /// The record: `Requeue` with the shortest delay if any subscription must retry; else `Dead` if a
    /// subscription exhausted its schedule (poison: the DLQ); else `Delivered` if any subscription was
    /// delivered now; else `Skipped`. A disabled endpoint's `dead` records are acknowledged.
    pub record: Outcome,
    /// `(destination, outcome)` for each subscription, in configuration order.
    pub subscriptions: Vec<(String, Outcome)>,
}

struct Route {
    endpoint: Arc<WebhookEndpoint>,
    deliverer: Deliverer,
}

/// Every subscription's delivery of one event.
pub struct WebhookFanout {
    routes: Vec<Route>,
    ledger: Arc<dyn DeliveryLedger>,
    health: EndpointHealth,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    schedule: Schedule,
}

impl WebhookFanout {
    /// A fan-out to `subscriptions`, on the Standard Webhooks schedule.
    pub fn new(subscriptions: Vec<Subscription>, parts: FanoutParts) -> Self {
        let schedule = STANDARD_WEBHOOKS;
        let routes = subscriptions
            .into_iter()
            .map(|s| {
                let endpoint = Arc::new(WebhookEndpoint::new(
                    s,
                    parts.client.clone(),
                    parts.clock.clone(),
                ));
                let deliverer = Deliverer::new(
                    endpoint.clone(),
                    parts.ledger.clone(),
                    CircuitBreaker::new(
                        parts.breakers.clone(),
                        parts.clock.clone(),
                        parts.breaker_config,
                    ),
                    RetryPolicy::scheduled(schedule),
                    parts.clock.clone(),
                );
                Route {
                    endpoint,
                    deliverer,
                }
            })
            .collect();
        Self {
            routes,
            ledger: parts.ledger,
            health: parts.health,
            clock: parts.clock,
            metrics: parts.metrics,
            schedule,
        }
    }

    /// Delivers `event`, received `receive_count` times (from 1), to each subscription that wants it, one
    /// after the other (each request is bounded by the client's timeout).
    pub async fn deliver(
        &self,
        event: &EventEnvelope,
        receive_count: u32,
    ) -> Result<Fanned, FanoutError> {
        let mut subscriptions = Vec::with_capacity(self.routes.len());
        for route in &self.routes {
            let outcome = self.one(route, event, receive_count).await?;
            subscriptions.push((route.endpoint.name().to_owned(), outcome));
        }
        let record = combine(&subscriptions);
        Ok(Fanned {
            record,
            subscriptions,
        })
    }

    async fn one(
        &self,
        route: &Route,
        event: &EventEnvelope,
        receive_count: u32,
    ) -> Result<Outcome, FanoutError> {
        let endpoint = &route.endpoint;
        let id = endpoint.subscription().id.as_str();
        if !endpoint.wants(event) {
            return Ok(Outcome::Skipped);
        }
        if self.health.is_disabled(id).await? {
            return self.dead(event, endpoint.name(), ENDPOINT_DISABLED).await;
        }
        match route.deliverer.deliver(event, receive_count).await? {
            Outcome::Delivered(landed) => {
                self.health.record_success(id).await?;
                Ok(Outcome::Delivered(landed))
            }
            Outcome::Requeue(after) => {
                match self.health.record_failure(id, self.clock.now()).await? {
                    Verdict::DisabledNow => {
                        tracing::error!(subscription = %id, "webhook endpoint disabled: failing for longer than its disable period; its events are kept as dead in the ledger");
                        self.metrics.emit_with(
                            Some(("subscription", id)),
                            &[(ENDPOINT_DISABLED_METRIC, Unit::Count, 1.0)],
                        );
                        self.dead(event, endpoint.name(), ENDPOINT_DISABLED).await
                    }
                    Verdict::Disabled => self.dead(event, endpoint.name(), ENDPOINT_DISABLED).await,
                    Verdict::Failing => {
                        // The schedule counts real attempts (the ledger's), not receives: a breaker's
                        // rejections return records without an attempt.
                        let attempts = self
                            .ledger
                            .get(&event.event_id, endpoint.name())
                            .await?
                            .map_or(0, |e| e.attempts);
                        match self.schedule.after(attempts) {
                            Some(next) => Ok(Outcome::Requeue(after.max(next))),
                            None => {
                                let reason =
                                    format!("retry schedule exhausted after {attempts} attempts");
                                tracing::error!(subscription = %id, event_id = %event.event_id, %reason, "webhook delivery failed for good");
                                self.dead(event, endpoint.name(), &reason).await
                            }
                        }
                    }
                }
            }
            other => Ok(other),
        }
    }

    /// Marks the entry `dead` with `reason` (unless it is delivered).
    async fn dead(
        &self,
        event: &EventEnvelope,
        destination: &str,
        reason: &str,
    ) -> Result<Outcome, FanoutError> {
        loop {
            let current = self.ledger.get(&event.event_id, destination).await?;
            let expected = current.as_ref().map(|e| e.version);
            let mut entry = match current {
                Some(e) if e.status == DeliveryStatus::Delivered => return Ok(Outcome::Skipped),
                Some(e)
                    if e.status == DeliveryStatus::Dead
                        && e.last_error.as_deref() == Some(reason) =>
                {
                    return Ok(Outcome::Dead(reason.to_owned()));
                }
                Some(e) => e,
                None => DeliveryEntry::pending(
                    event.event_id.clone(),
                    sale_of(event),
                    destination,
                    self.clock.now(),
                ),
            };
            entry.status = DeliveryStatus::Dead;
            entry.last_error = Some(reason.to_owned());
            entry.updated_at = self.clock.now();
            entry.version = expected.unwrap_or(0) + 1;
            if self.ledger.put(&entry, expected).await? {
                return Ok(Outcome::Dead(reason.to_owned()));
            }
        }
    }
}

impl WebhookFanout {
    /// The queue gave up on `event` for `destinations` (`webhooks:{id}`): their entries say `dead`.
    pub async fn give_up(
        &self,
        event: &EventEnvelope,
        destinations: &[String],
        reason: &str,
    ) -> Result<(), FanoutError> {
        for route in &self.routes {
            if destinations.iter().any(|d| d == route.endpoint.name()) {
                route.deliverer.give_up(event, reason).await?;
            }
        }
        Ok(())
    }

    /// Shares `limiter` among every subscription's calls (one budget per instance).
    #[must_use]
    pub fn with_limiter(mut self, limiter: Arc<super::engine::RateLimiter>) -> Self {
        self.routes = self
            .routes
            .into_iter()
            .map(|r| Route {
                deliverer: r.deliverer.with_limiter(limiter.clone()),
                endpoint: r.endpoint,
            })
            .collect();
        self
    }

    /// Emits the engine's metrics per subscription (`destination` = `webhooks:{id}`).
    #[must_use]
    pub fn with_metrics(mut self) -> Self {
        let metrics = self.metrics.clone();
        self.routes = self
            .routes
            .into_iter()
            .map(|r| Route {
                deliverer: r.deliverer.with_metrics(metrics.clone()),
                endpoint: r.endpoint,
            })
            .collect();
        self
    }
}

impl From<FanoutError> for DeliveryError {
    fn from(e: FanoutError) -> Self {
        match e {
            FanoutError::Engine(e) => DeliveryError::Engine(e),
            other => DeliveryError::Store(other.to_string()),
        }
    }
}

/// The fan-out as a delivery function's [`RecordDelivery`]: one outcome per subscription. A disabled
/// endpoint's `dead` entries are acknowledged (`Skipped` here: the ledger keeps them for a replay), not
/// sent to the DLQ, as [`Fanned::record`] says.
#[async_trait]
impl RecordDelivery for WebhookFanout {
    async fn deliver(
        &self,
        envelope: &EventEnvelope,
        receives: u32,
    ) -> Result<Vec<(String, Outcome)>, DeliveryError> {
        let fanned = WebhookFanout::deliver(self, envelope, receives).await?;
        Ok(fanned
            .subscriptions
            .into_iter()
            .map(|(name, outcome)| match outcome {
                Outcome::Dead(reason) if reason == ENDPOINT_DISABLED => (name, Outcome::Skipped),
                other => (name, other),
            })
            .collect())
    }

    async fn give_up(
        &self,
        envelope: &EventEnvelope,
        destinations: &[String],
        reason: &str,
    ) -> Result<(), DeliveryError> {
        Ok(WebhookFanout::give_up(self, envelope, destinations, reason).await?)
    }
}

fn combine(outcomes: &[(String, Outcome)]) -> Outcome {
    let shortest = outcomes
        .iter()
        .filter_map(|(_, o)| match o {
            Outcome::Requeue(d) => Some(*d),
            _ => None,
        })
        .min();
    if let Some(after) = shortest {
        return Outcome::Requeue(after);
    }
    let poison: Vec<String> = outcomes
        .iter()
        .filter_map(|(name, o)| match o {
            Outcome::Dead(reason) if reason != ENDPOINT_DISABLED => {
                Some(format!("{name}: {reason}"))
            }
            _ => None,
        })
        .collect();
    if !poison.is_empty() {
        return Outcome::Dead(poison.join("; "));
    }
    if outcomes
        .iter()
        .any(|(_, o)| matches!(o, Outcome::Delivered(_)))
    {
        return Outcome::Delivered(Landed::default());
    }
    Outcome::Skipped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ManualClock;
    use serde_json::json;

    const KEY_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const KEY_B: &str = "whsec_ZGV2LXN0YW5kYXJkLXdlYmhvb2tzLWtleS0wMQ==";

    fn one(sub: serde_json::Value) -> Result<Vec<Subscription>, SubscriptionError> {
        subscriptions_from_json(&json!({ "subscriptions": [sub] }))
    }

    #[test]
    fn subscriptions_are_read_with_defaults_and_secret_rings() {
        let text = json!({
            "commercetools": {"project_key": "p"},
            "webhooks": {"subscriptions": [
                {"id": "erp", "url": "https://erp.example.com/hooks", "secret": KEY_A},
                {"id": "oms_2", "url": "http://127.0.0.1:9/x", "secrets": [KEY_B, KEY_A],
                 "event_types": ["SaleCompleted"], "enabled": false},
                {"id": "v6", "url": "http://[::1]:9/x", "secrets": KEY_A},
                {"id": "local", "url": "http://localhost:9/x", "secrets": KEY_A}
            ]}
        })
        .to_string();
        let subs = subscriptions_from_connectors(&text).expect("valid");
        assert_eq!(subs.len(), 4);
        assert!(subs[0].enabled && subs[0].event_types.is_empty());
        assert_eq!(subs[1].secrets.len(), 2);
        assert_eq!(subs[1].secrets[0].expose_secret(), KEY_B, "newest first");
        assert!(!subs[1].enabled);
        assert!(
            subscriptions_from_connectors("{}")
                .expect("no section")
                .is_empty()
        );
    }

    #[test]
    fn bad_subscriptions_are_refused_with_a_reason_and_no_secret() {
        let base = || json!({"id": "erp", "url": "https://erp.example.com/h", "secrets": KEY_A});
        let with = |k: &str, v: serde_json::Value| {
            let mut s = base();
            s[k] = v;
            one(s).expect_err("refused")
        };
        assert!(matches!(
            with("url", json!("not a url")),
            SubscriptionError::Url { .. }
        ));
        assert!(matches!(
            with("url", json!("http://erp.example.com/h")),
            SubscriptionError::Url { reason, .. } if reason.contains("https")
        ));
        assert!(matches!(
            with("url", json!("ftp://127.0.0.1/h")),
            SubscriptionError::Url { .. }
        ));
        assert!(matches!(
            with("url", json!("https://user:pw@erp.example.com/h")),
            SubscriptionError::Url { .. }
        ));
        assert_eq!(
            with("id", json!("ERP!")),
            SubscriptionError::Id("ERP!".into())
        );
        assert_eq!(with("id", json!("")), SubscriptionError::Id(String::new()));
        for bad in [
            json!("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            json!("whsec_not base64!"),
            json!("whsec_c2hvcnQ="),
            json!([KEY_A, "whsec_%%%"]),
        ] {
            let err = with("secrets", bad.clone());
            assert!(
                matches!(err, SubscriptionError::Secret { .. }),
                "{bad}: {err}"
            );
            assert!(!err.to_string().contains("whsec_%") && !err.to_string().contains("c2hv"));
        }
        assert!(matches!(
            with("secrets", json!([])),
            SubscriptionError::Shape(_)
        ));
        assert!(matches!(
            with("event_types", json!(["SaleCompleted", "sale.completed"])),
            SubscriptionError::EventType { event_type, .. } if event_type == "sale.completed"
        ));
        assert!(matches!(
            with("colour", json!("red")),
            SubscriptionError::Shape(_)
        ));
        let twice = subscriptions_from_json(&json!({"subscriptions": [base(), base()]}));
        assert_eq!(
            twice.err(),
            Some(SubscriptionError::Duplicate("erp".into()))
        );
        let subs = one(base()).expect("valid");
        let debug = format!("{subs:?}");
        assert!(
            !debug.contains("MfKQ") && debug.contains("REDACTED"),
            "{debug}"
        );
    }

    #[test]
    fn every_secret_signs_the_same_content() {
        let secrets = [SecretString::from(KEY_B), SecretString::from(KEY_A)];
        let header = signature_header(
            &secrets,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2, "{header}");
        assert!(parts[0].starts_with("v1,") && parts[0] != parts[1]);
        // The spec's reference vector, for the second (older) key.
        assert_eq!(parts[1], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    fn endpoint(types: &[&str], enabled: bool) -> WebhookEndpoint {
        let mut sub = one(
            json!({"id": "erp", "url": "https://erp.example.com/h", "secrets": KEY_A,
            "event_types": types, "enabled": enabled}),
        )
        .expect("valid")
        .remove(0);
        sub.enabled = enabled;
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(crate::samples::sample_time()));
        let client = DestinationClient::unauthenticated(
            reqwest::Client::new(),
            clock.clone(),
            std::time::Duration::from_secs(1),
        );
        WebhookEndpoint::new(sub, client, clock)
    }

    #[test]
    fn an_endpoint_wants_its_event_types_while_enabled() {
        let body = crate::samples::standard_sale("w-1", "store-1", None, 1);
        let sale = crate::samples::envelope_of(&crate::samples::standard(
            "w",
            &body,
            crate::samples::sample_time(),
            None,
        ))
        .expect("a sale");
        assert_eq!(endpoint(&[], true).name(), "webhooks:erp");
        assert!(endpoint(&[], true).wants(&sale));
        assert!(endpoint(&["SaleCompleted"], true).wants(&sale));
        assert!(!endpoint(&["StockAdjusted", "ReturnCompleted"], true).wants(&sale));
        assert!(!endpoint(&[], false).wants(&sale));
    }

    #[tokio::test]
    async fn an_endpoint_failing_longer_than_the_period_is_disabled_once() {
        let health = EndpointHealth::new(
            Arc::new(MemoryHealthStore::default()),
            chrono::Duration::days(5),
        );
        let t0 = crate::samples::sample_time();
        let day = chrono::Duration::days(1);
        assert_eq!(health.record_failure("erp", t0).await, Ok(Verdict::Failing));
        assert_eq!(
            health.record_failure("erp", t0 + day * 4).await,
            Ok(Verdict::Failing)
        );
        // A success resets the period.
        health.record_success("erp").await.expect("success");
        assert_eq!(
            health.record_failure("erp", t0 + day * 6).await,
            Ok(Verdict::Failing)
        );
        assert_eq!(
            health.record_failure("erp", t0 + day * 11).await,
            Ok(Verdict::Failing),
            "exactly the period is not longer than it"
        );
        assert!(!health.is_disabled("erp").await.expect("read"));
        let later = t0 + day * 11 + chrono::Duration::seconds(1);
        assert_eq!(
            health.record_failure("erp", later).await,
            Ok(Verdict::DisabledNow)
        );
        assert_eq!(
            health.record_failure("erp", later).await,
            Ok(Verdict::Disabled)
        );
        assert!(health.is_disabled("erp").await.expect("read"));
        assert!(
            !health.is_disabled("oms").await.expect("read"),
            "per subscription"
        );
        health.record_success("erp").await.expect("no effect");
        assert!(
            health.is_disabled("erp").await.expect("read"),
            "only an operator enables"
        );
        health.enable("erp").await.expect("enable");
        assert!(!health.is_disabled("erp").await.expect("read"));
        assert_eq!(
            health.record_failure("erp", later).await,
            Ok(Verdict::Failing),
            "a new period"
        );
    }

    #[test]
    fn outcomes_combine_into_one_per_record() {
        let d = |s| Outcome::Requeue(std::time::Duration::from_secs(s));
        let named = |v: Vec<Outcome>| -> Vec<(String, Outcome)> {
            v.into_iter()
                .enumerate()
                .map(|(i, o)| (format!("webhooks:{i}"), o))
                .collect()
        };
        assert_eq!(
            combine(&named(vec![
                Outcome::Delivered(Landed::default()),
                d(300),
                d(5)
            ])),
            d(5),
            "the shortest retry"
        );
        assert_eq!(
            combine(&named(vec![
                Outcome::Dead(ENDPOINT_DISABLED.into()),
                Outcome::Skipped
            ])),
            Outcome::Skipped,
            "a disabled endpoint's records are acknowledged"
        );
        assert_eq!(
            combine(&named(vec![
                Outcome::Dead("exhausted".into()),
                Outcome::Skipped
            ])),
            Outcome::Dead("webhooks:0: exhausted".into())
        );
        assert_eq!(
            combine(&named(vec![
                Outcome::Skipped,
                Outcome::Delivered(Landed::default())
            ])),
            Outcome::Delivered(Landed::default())
        );
        assert_eq!(combine(&[]), Outcome::Skipped);
    }
}
