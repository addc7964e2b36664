//! Where webhook subscriptions come from ([`SubscriptionSource`]), re-read while the function runs.
//!
//! - **Locally**: the `webhooks` section of the connectors file ([`StaticSubscriptions`]).
//! - **On AWS**: the deliveries table and one Secrets Manager secret ([`DynamoSubscriptions`]). Every
//!   subscription is an item `pk` = `SUBSCRIPTIONS`, `sk` = `{id}` with `url` (S), `event_types` (L of
//!   S, optional: all) and `enabled` (BOOL, optional: true). The items share one partition so a single
//!   `Query` reads them all: with `pk` = `SUBSCRIPTION#{id}` listing them would be a `Scan` of the whole
//!   ledger every minute. Secrets never sit in the table (an item carrying `secret` or `secrets` is
//!   refused): the secret named by `WEBHOOKS_SECRET_ID` holds every subscription's ring, keyed by id,
//!   `{"erp": ["whsec_new", "whsec_old"], "oms": "whsec_…"}` (newest first). One secret keeps the IAM
//!   grant to one ARN and a refresh to one `GetSecretValue`.
//! - **Re-read** ([`CachedSubscriptions`], the pattern of [`crate::secrets::CachedSecrets`]): a copy is
//!   served for a TTL (60 s in the function), so an operator's change applies within a minute without a
//!   redeploy. A failed re-read (table or secret unavailable, an item or ring refused) keeps the last good
//!   copy and logs the error; without one (cold start) the record is retried.
//! - [`ReloadingFanout`]: the function's [`RecordDelivery`], rebuilding the [`WebhookFanout`] when the
//!   copy changes (breakers, ledger and endpoint health are in the stores, so nothing is lost).

use super::engine::{Outcome, RateLimiter};
use super::sync::{DeliveryError, RecordDelivery};
use super::webhooks::{FanoutParts, Subscription, SubscriptionError, WebhookFanout};
use crate::model::EventEnvelope;
use crate::ports::Clock;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The partition key of every subscription item in the deliveries table.
pub const SUBSCRIPTIONS_PK: &str = "SUBSCRIPTIONS";

/// Why the subscriptions could not be read. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionSourceError {
    /// The table or the secret store failed (network, permissions, throttling).
    #[error("subscriptions unavailable: {0}")]
    Unavailable(String),
    /// An item or the secret is not what it must be (an operator's error).
    #[error("subscriptions invalid: {0}")]
    Invalid(String),
    /// A subscription was refused.
    #[error(transparent)]
    Subscription(#[from] SubscriptionError),
}

/// A source of the current subscriptions.
#[async_trait]
pub trait SubscriptionSource: Send + Sync {
    /// The subscriptions now.
    async fn load(&self) -> Result<Arc<Vec<Subscription>>, SubscriptionSourceError>;
}

/// Subscriptions fixed at start (the connectors file).
pub struct StaticSubscriptions(pub Arc<Vec<Subscription>>);

#[async_trait]
impl SubscriptionSource for StaticSubscriptions {
    async fn load(&self) -> Result<Arc<Vec<Subscription>>, SubscriptionSourceError> {
        Ok(self.0.clone())
    }
}

/// Subscriptions in the deliveries table, their secret rings in one Secrets Manager secret.
pub struct DynamoSubscriptions {
    ddb: aws_sdk_dynamodb::Client,
    table: String,
    secrets: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl DynamoSubscriptions {
    /// The items of `table`, the rings of the secret `secret_id` (name or ARN).
    pub fn new(
        ddb: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        secrets: aws_sdk_secretsmanager::Client,
        secret_id: impl Into<String>,
    ) -> Self {
        Self {
            ddb,
            table: table.into(),
            secrets,
            secret_id: secret_id.into(),
        }
    }

    async fn items(&self) -> Result<Vec<HashMap<String, AttributeValue>>, SubscriptionSourceError> {
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .ddb
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(SUBSCRIPTIONS_PK.into()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| {
                    SubscriptionSourceError::Unavailable(format!(
                        "Query: {}",
                        aws_sdk_dynamodb::error::DisplayErrorContext(e)
                    ))
                })?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    async fn rings(
        &self,
    ) -> Result<serde_json::Map<String, serde_json::Value>, SubscriptionSourceError> {
        let out = self
            .secrets
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| {
                SubscriptionSourceError::Unavailable(format!(
                    "GetSecretValue: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                ))
            })?;
        let text = out.secret_string().unwrap_or_default();
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(rings)) => Ok(rings),
            // Never the parser's message: it may quote the secret.
            _ => Err(SubscriptionSourceError::Invalid(
                "the webhooks secret must be a JSON object of secret rings keyed by subscription id (set it out of band)".into(),
            )),
        }
    }
}

/// The subscriptions of `items` (the table's) with their rings from `rings` (the secret's), checked as
/// the connectors file's are.
pub fn subscriptions_from_items(
    items: &[HashMap<String, AttributeValue>],
    rings: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<Subscription>, SubscriptionSourceError> {
    let invalid = |m: String| SubscriptionSourceError::Invalid(m);
    let mut section = Vec::with_capacity(items.len());
    for item in items {
        let id = match item.get("sk") {
            Some(AttributeValue::S(id)) => id.clone(),
            _ => return Err(invalid("a subscription item without a string sk".into())),
        };
        if item.contains_key("secret") || item.contains_key("secrets") {
            return Err(invalid(format!(
                "subscription {id}: secrets must not sit in the table (put its ring in the webhooks secret)"
            )));
        }
        let url = match item.get("url") {
            Some(AttributeValue::S(url)) => url.clone(),
            _ => return Err(invalid(format!("subscription {id}: url must be a string"))),
        };
        let event_types: Vec<String> = match item.get("event_types") {
            None => Vec::new(),
            Some(AttributeValue::L(types)) => types
                .iter()
                .map(|t| match t {
                    AttributeValue::S(t) => Ok(t.clone()),
                    _ => Err(invalid(format!(
                        "subscription {id}: event_types must be a list of strings"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some(AttributeValue::Ss(types)) => types.clone(),
            Some(_) => {
                return Err(invalid(format!(
                    "subscription {id}: event_types must be a list of strings"
                )));
            }
        };
        let enabled = match item.get("enabled") {
            None => true,
            Some(AttributeValue::Bool(b)) => *b,
            Some(_) => {
                return Err(invalid(format!(
                    "subscription {id}: enabled must be a boolean"
                )));
            }
        };
        let Some(ring) = rings.get(&id) else {
            return Err(invalid(format!(
                "subscription {id} has no secret ring in the webhooks secret"
            )));
        };
        section.push(serde_json::json!({
            "id": id, "url": url, "event_types": event_types, "enabled": enabled, "secrets": ring,
        }));
    }
    Ok(super::webhooks::subscriptions_from_json(
        &serde_json::json!({ "subscriptions": section }),
    )?)
}

#[async_trait]
impl SubscriptionSource for DynamoSubscriptions {
    async fn load(&self) -> Result<Arc<Vec<Subscription>>, SubscriptionSourceError> {
        let items = self.items().await?;
        let rings = self.rings().await?;
        subscriptions_from_items(&items, &rings).map(Arc::new)
    }
}

/// One copy of the subscriptions, shared by everything built from it (compared by pointer).
pub type Subscriptions = Arc<Vec<Subscription>>;

/// Another source's copy, kept for a TTL.
pub struct CachedSubscriptions<S> {
    inner: S,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    entry: Mutex<Option<(Subscriptions, DateTime<Utc>)>>,
}

impl<S: SubscriptionSource> CachedSubscriptions<S> {
    /// Wraps `inner`, re-reading it once a copy is `ttl` old.
    pub fn new(inner: S, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        Self {
            inner,
            clock,
            ttl,
            entry: Mutex::new(None),
        }
    }
}

#[async_trait]
impl<S: SubscriptionSource> SubscriptionSource for CachedSubscriptions<S> {
    async fn load(&self) -> Result<Arc<Vec<Subscription>>, SubscriptionSourceError> {
        let mut entry = self.entry.lock().await;
        let now = self.clock.now();
        if let Some((subs, at)) = entry.as_ref()
            && now - *at < self.ttl
        {
            return Ok(subs.clone());
        }
        match self.inner.load().await {
            Ok(subs) => {
                *entry = Some((subs.clone(), now));
                Ok(subs)
            }
            Err(e) => match entry.as_mut() {
                // Keep delivering to the subscriptions we know rather than stop every one of them;
                // the next TTL tries again.
                Some((subs, at)) => {
                    tracing::error!(error = %e, "webhook subscriptions not re-read; serving the last good copy");
                    *at = now;
                    Ok(subs.clone())
                }
                None => Err(e),
            },
        }
    }
}

/// The webhooks fan-out over the current subscriptions of a source.
pub struct ReloadingFanout {
    source: Arc<dyn SubscriptionSource>,
    parts: FanoutParts,
    limiter: Option<Arc<RateLimiter>>,
    current: Mutex<Option<(Subscriptions, Arc<WebhookFanout>)>>,
}

impl ReloadingFanout {
    /// A fan-out to `source`'s subscriptions, its calls under `limiter` when given.
    pub fn new(
        source: Arc<dyn SubscriptionSource>,
        parts: FanoutParts,
        limiter: Option<Arc<RateLimiter>>,
    ) -> Self {
        Self {
            source,
            parts,
            limiter,
            current: Mutex::new(None),
        }
    }

    /// The fan-out over the source's current copy (rebuilt when the copy changed).
    pub async fn fanout(&self) -> Result<Arc<WebhookFanout>, DeliveryError> {
        let subs = self
            .source
            .load()
            .await
            .map_err(|e| DeliveryError::Store(e.to_string()))?;
        let mut current = self.current.lock().await;
        if let Some((known, fanout)) = current.as_ref()
            && Arc::ptr_eq(known, &subs)
        {
            return Ok(fanout.clone());
        }
        let mut fanout =
            WebhookFanout::new(subs.as_ref().clone(), self.parts.clone()).with_metrics();
        if let Some(limiter) = &self.limiter {
            fanout = fanout.with_limiter(limiter.clone());
        }
        let fanout = Arc::new(fanout);
        *current = Some((subs, fanout.clone()));
        Ok(fanout)
    }
}

#[async_trait]
impl RecordDelivery for ReloadingFanout {
    async fn deliver(
        &self,
        envelope: &EventEnvelope,
        receives: u32,
    ) -> Result<Vec<(String, Outcome)>, DeliveryError> {
        RecordDelivery::deliver(self.fanout().await?.as_ref(), envelope, receives).await
    }

    async fn give_up(
        &self,
        envelope: &EventEnvelope,
        destinations: &[String],
        reason: &str,
    ) -> Result<(), DeliveryError> {
        RecordDelivery::give_up(
            self.fanout().await?.as_ref(),
            envelope,
            destinations,
            reason,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ManualClock;
    use secrecy::ExposeSecret;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const KEY_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const KEY_B: &str = "whsec_ZGV2LXN0YW5kYXJkLXdlYmhvb2tzLWtleS0wMQ==";

    fn item(pairs: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_owned())
    }

    fn rings(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn items_and_rings_make_checked_subscriptions() {
        let items = [
            item(&[("sk", s("erp")), ("url", s("https://erp.example.com/h"))]),
            item(&[
                ("sk", s("oms")),
                ("url", s("https://oms.example.com/h")),
                ("event_types", AttributeValue::L(vec![s("SaleCompleted")])),
                ("enabled", AttributeValue::Bool(false)),
            ]),
        ];
        let subs = subscriptions_from_items(
            &items,
            &rings(json!({"erp": [KEY_B, KEY_A], "oms": KEY_A, "gone": KEY_A})),
        )
        .expect("valid");
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].secrets.len(), 2);
        assert_eq!(subs[0].secrets[0].expose_secret(), KEY_B);
        assert!(subs[0].enabled && subs[0].event_types.is_empty());
        assert_eq!(subs[1].event_types, ["SaleCompleted"]);
        assert!(!subs[1].enabled);
    }

    #[test]
    fn bad_items_and_rings_are_refused_without_a_secret_in_the_error() {
        let good = || item(&[("sk", s("erp")), ("url", s("https://erp.example.com/h"))]);
        let ring = rings(json!({"erp": KEY_A}));
        let refused = |i: HashMap<String, AttributeValue>, r: &serde_json::Map<_, _>| {
            subscriptions_from_items(&[i], r).expect_err("refused")
        };
        let mut with_secret = good();
        with_secret.insert("secret".into(), s(KEY_A));
        let err = refused(with_secret, &ring);
        assert!(
            err.to_string().contains("must not sit in the table"),
            "{err}"
        );
        assert!(!err.to_string().contains("MfKQ"));
        let err = refused(good(), &rings(json!({"oms": KEY_A})));
        assert!(err.to_string().contains("no secret ring"), "{err}");
        let err = refused(good(), &rings(json!({"erp": "whsec_c2hvcnQ="})));
        assert!(
            matches!(
                err,
                SubscriptionSourceError::Subscription(SubscriptionError::Secret { .. })
            ),
            "{err}"
        );
        assert!(!err.to_string().contains("c2hv"));
        let mut no_url = good();
        no_url.remove("url");
        assert!(matches!(
            refused(no_url, &ring),
            SubscriptionSourceError::Invalid(_)
        ));
        let mut bad_type = good();
        bad_type.insert(
            "event_types".into(),
            AttributeValue::L(vec![s("sale.completed")]),
        );
        assert!(matches!(
            refused(bad_type, &ring),
            SubscriptionSourceError::Subscription(SubscriptionError::EventType { .. })
        ));
        let mut plain_http = good();
        plain_http.insert("url".into(), s("http://erp.example.com/h"));
        assert!(matches!(
            refused(plain_http, &ring),
            SubscriptionSourceError::Subscription(SubscriptionError::Url { .. })
        ));
        let mut enabled_text = good();
        enabled_text.insert("enabled".into(), s("yes"));
        assert!(matches!(
            refused(enabled_text, &ring),
            SubscriptionSourceError::Invalid(_)
        ));
    }

    /// Answers from a script of results, counting reads.
    struct Scripted {
        reads: AtomicUsize,
        answers: std::sync::Mutex<Vec<Result<Arc<Vec<Subscription>>, SubscriptionSourceError>>>,
    }

    #[async_trait]
    impl SubscriptionSource for Scripted {
        async fn load(&self) -> Result<Arc<Vec<Subscription>>, SubscriptionSourceError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let mut answers = self
                .answers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if answers.is_empty() {
                Err(SubscriptionSourceError::Unavailable("script over".into()))
            } else {
                answers.remove(0)
            }
        }
    }

    fn subs(url: &str) -> Arc<Vec<Subscription>> {
        let section = json!({"subscriptions": [{"id": "erp", "url": url, "secrets": KEY_A}]});
        Arc::new(super::super::webhooks::subscriptions_from_json(&section).expect("valid"))
    }

    #[tokio::test]
    async fn the_cache_rereads_after_its_ttl_and_keeps_the_last_good_copy_on_failure() {
        let clock = Arc::new(ManualClock::new(crate::samples::sample_time()));
        let cached = CachedSubscriptions::new(
            Scripted {
                reads: AtomicUsize::new(0),
                answers: std::sync::Mutex::new(vec![
                    Err(SubscriptionSourceError::Unavailable("cold".into())),
                    Ok(subs("https://a.example.com/h")),
                    Ok(subs("https://b.example.com/h")),
                    Err(SubscriptionSourceError::Invalid(
                        "an operator's typo".into(),
                    )),
                ]),
            },
            clock.clone(),
            Duration::seconds(60),
        );
        let url = |s: &Arc<Vec<Subscription>>| s[0].url.as_str().to_owned();
        assert!(
            cached.load().await.is_err(),
            "no copy yet: the record is retried"
        );
        assert_eq!(
            url(&cached.load().await.expect("read")),
            "https://a.example.com/h"
        );
        clock.advance(Duration::seconds(59));
        assert_eq!(
            url(&cached.load().await.expect("cached")),
            "https://a.example.com/h"
        );
        assert_eq!(cached.inner.reads.load(Ordering::SeqCst), 2);
        clock.advance(Duration::seconds(1));
        assert_eq!(
            url(&cached.load().await.expect("re-read")),
            "https://b.example.com/h"
        );
        clock.advance(Duration::seconds(60));
        assert_eq!(
            url(&cached.load().await.expect("last good copy")),
            "https://b.example.com/h"
        );
        assert_eq!(cached.inner.reads.load(Ordering::SeqCst), 4);
    }
}
