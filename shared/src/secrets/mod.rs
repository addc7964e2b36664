//! Vendor webhook secrets: their shape, where they come from, and how long we trust a copy.
//!
//! The JSON shape is the same everywhere: the Secrets Manager secret in AWS, the local `--secrets` file,
//! and the built-in dev secrets ([`dev_secrets_json`]). Every key may hold one value or a list
//! `[current, previous, …]`: during a rotation both the new and the old secret verify.
//!
//! ```json
//! {
//!   "shopify":    { "webhook_secret": "…" },
//!   "square":     { "signature_key": "…", "notification_url": "https://…/webhooks/square" },
//!   "lightspeed": { "client_secret": ["new", "old"] },
//!   "standard":   { "senders": { "till-hq": { "secrets": ["whsec_…"] } } }
//! }
//! ```

pub mod aws;
pub mod file;

use crate::ports::{Clock, SecretSource};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::Mutex;

/// One or more secret values, the current one first.
#[derive(Clone)]
pub struct KeyRing(Vec<SecretString>);

impl KeyRing {
    /// A ring from plain values (current first).
    pub fn new(values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self(
            values
                .into_iter()
                .map(|v| SecretString::from(v.into()))
                .collect(),
        )
    }

    /// The values, current first.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|s| s.expose_secret())
    }

    /// The current value.
    pub fn current(&self) -> Option<&str> {
        self.0.first().map(|s| s.expose_secret())
    }
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyRing([REDACTED; {}])", self.0.len())
    }
}

impl<'de> Deserialize<'de> for KeyRing {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let values = match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        if values.is_empty() || values.iter().any(String::is_empty) {
            return Err(serde::de::Error::custom(
                "a secret must be a non-empty string or list of non-empty strings",
            ));
        }
        Ok(KeyRing::new(values))
    }
}

/// Shopify: the app's client secret (HMAC key, used as UTF-8 bytes).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifySecrets {
    /// Current (and previous) client secret.
    pub webhook_secret: KeyRing,
}

/// Square: the subscription's signature key and the public notification URL Square signs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SquareSecrets {
    /// Current (and previous) signature key, used as UTF-8 bytes (not base64-decoded).
    pub signature_key: KeyRing,
    /// The exact URL configured in the Square subscription (behind API Gateway the path we see differs).
    pub notification_url: String,
}

/// Lightspeed X-Series: the app's client secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LightspeedSecrets {
    /// Current (and previous) client secret.
    pub client_secret: KeyRing,
}

/// Standard Webhooks: one identity per in-house sender, each with its own `whsec_`-prefixed base64 keys.
///
/// The sender whose key verifies a delivery names it: its name namespaces every fact id the delivery
/// carries (`{sender}:{sale_id}`) and its delivery ids, so two senders that both number sales from 1001
/// never collide, and no sender can claim another's (or another vendor's) sales.
///
/// ```json
/// "standard": { "senders": { "till-hq": { "secrets": ["whsec_…"] }, "erp": { "secrets": "whsec_…" } } }
/// ```
///
/// The earlier shape `"standard": { "secrets": [...] }` is still read, as one sender named `default`.
#[derive(Debug, Clone)]
pub struct StandardSecrets {
    /// Every sender, by name (sorted).
    pub senders: Vec<StandardSender>,
}

/// One Standard Webhooks sender.
#[derive(Debug, Clone)]
pub struct StandardSender {
    /// The sender's name (validated: see [`SenderName`]).
    pub name: SenderName,
    /// Every key accepted from this sender (current first).
    pub secrets: KeyRing,
}

/// A Standard Webhooks sender's name: 1 to 32 of `a-z`, `0-9`, `-`, not a vendor's name.
///
/// It becomes the namespace of the sender's ids (`till-hq:1001`), so it may not contain `:` and may not
/// be `shopify`, `square`, `lightspeed` or `standard` (those namespaces belong to the vendors).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SenderName(String);

impl TryFrom<String> for SenderName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<SenderName> for String {
    fn from(name: SenderName) -> String {
        name.0
    }
}

impl SenderName {
    /// Namespaces reserved for the vendor adapters.
    pub const RESERVED: [&'static str; 4] = ["shopify", "square", "lightspeed", "standard"];

    /// Parses a sender name.
    pub fn parse(name: &str) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err("a sender name is 1 to 32 characters of a-z, 0-9 and -".into());
        }
        if Self::RESERVED.contains(&name) {
            return Err(format!("sender name {name:?} is reserved for a vendor"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SenderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StandardSecrets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Sender {
            secrets: KeyRing,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape {
            Senders {
                senders: std::collections::BTreeMap<String, Sender>,
            },
            Legacy {
                secrets: KeyRing,
            },
        }
        let senders = match Shape::deserialize(d)? {
            Shape::Senders { senders } => senders
                .into_iter()
                .map(|(name, s)| {
                    Ok(StandardSender {
                        name: SenderName::parse(&name).map_err(serde::de::Error::custom)?,
                        secrets: s.secrets,
                    })
                })
                .collect::<Result<Vec<_>, D::Error>>()?,
            Shape::Legacy { secrets } => vec![StandardSender {
                name: SenderName("default".into()),
                secrets,
            }],
        };
        if senders.is_empty() {
            return Err(serde::de::Error::custom(
                "standard.senders must name at least one sender",
            ));
        }
        Ok(Self { senders })
    }
}

/// All vendor secrets, as stored in the secret document.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorSecrets {
    /// Shopify, when configured.
    pub shopify: Option<ShopifySecrets>,
    /// Square, when configured.
    pub square: Option<SquareSecrets>,
    /// Lightspeed, when configured.
    pub lightspeed: Option<LightspeedSecrets>,
    /// Standard Webhooks, when configured.
    pub standard: Option<StandardSecrets>,
}

/// Why secrets could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The backing store failed (network, permissions, throttling): retryable, an infrastructure error.
    #[error("secret store unavailable: {0}")]
    Unavailable(String),
    /// The document exists but is not valid JSON of the expected shape (operator error; message never
    /// contains secret material).
    #[error("secret document is invalid: {0}")]
    Invalid(String),
}

impl VendorSecrets {
    /// Parses the secret document. The error names the offending field but never echoes values.
    pub fn from_json(text: &str) -> Result<Self, SecretError> {
        serde_json::from_str(text).map_err(|e| {
            // serde_json error messages quote at most type names and field names for these types, but we
            // keep only the category and position to be sure nothing of a value leaks.
            SecretError::Invalid(format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })
    }
}

/// The secrets `pos-local` and the `events/` samples use when nothing else is configured.
///
/// These values are public (they are in this repository); never use them in a deployed environment.
pub fn dev_secrets_json() -> &'static str {
    r#"{
  "shopify": { "webhook_secret": "dev-shopify-client-secret" },
  "square": { "signature_key": "dev-square-signature-key", "notification_url": "http://localhost:3000/webhooks/square" },
  "lightspeed": { "client_secret": "dev-lightspeed-client-secret" },
  "standard": { "senders": { "dev-till": { "secrets": ["whsec_ZGV2LXN0YW5kYXJkLXdlYmhvb2tzLWtleS0wMQ=="] } } }
}"#
}

/// Parsed [`dev_secrets_json`].
pub fn dev_secrets() -> VendorSecrets {
    // The literal above is covered by a unit test; an empty set is the safe fallback (every request 503s).
    VendorSecrets::from_json(dev_secrets_json()).unwrap_or_default()
}

struct CacheEntry {
    value: Arc<VendorSecrets>,
    fetched_at: DateTime<Utc>,
}

/// Caches another [`SecretSource`] for a TTL, and allows a rate-limited early refresh (used when a
/// signature fails, in case the secret was rotated since the copy was taken).
pub struct CachedSecrets<S> {
    inner: S,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    min_refresh: Duration,
    entry: Mutex<Option<CacheEntry>>,
}

impl<S: SecretSource> CachedSecrets<S> {
    /// Wraps `inner`, keeping a copy for `ttl`; early refreshes happen at most once per `min_refresh`.
    pub fn new(inner: S, clock: Arc<dyn Clock>, ttl: Duration, min_refresh: Duration) -> Self {
        Self {
            inner,
            clock,
            ttl,
            min_refresh,
            entry: Mutex::new(None),
        }
    }

    /// Refetches now unless the copy is younger than `min_refresh`. Returns whether it refetched.
    pub async fn refresh_if_stale(&self) -> Result<bool, SecretError> {
        let mut entry = self.entry.lock().await;
        let now = self.clock.now();
        if let Some(e) = entry.as_ref()
            && now - e.fetched_at < self.min_refresh
        {
            return Ok(false);
        }
        let value = self.inner.load().await?;
        *entry = Some(CacheEntry {
            value,
            fetched_at: now,
        });
        Ok(true)
    }
}

#[async_trait]
impl<S: SecretSource> SecretSource for CachedSecrets<S> {
    async fn load(&self) -> Result<Arc<VendorSecrets>, SecretError> {
        let mut entry = self.entry.lock().await;
        let now = self.clock.now();
        if let Some(e) = entry.as_ref()
            && now - e.fetched_at < self.ttl
        {
            return Ok(e.value.clone());
        }
        match self.inner.load().await {
            Ok(value) => {
                *entry = Some(CacheEntry {
                    value: value.clone(),
                    fetched_at: now,
                });
                Ok(value)
            }
            // A transient store failure after expiry: keep serving the last good copy rather than fail
            // every webhook; the next call tries again.
            Err(SecretError::Unavailable(msg)) if entry.is_some() => {
                tracing::warn!(error = %msg, "secret refresh failed; serving the cached copy");
                Ok(entry.as_ref().map(|e| e.value.clone()).unwrap_or_default())
            }
            Err(e) => Err(e),
        }
    }

    async fn refresh(&self) -> Result<bool, SecretError> {
        self.refresh_if_stale().await
    }
}

/// Secrets held in memory (unit tests, and the parsed local file).
pub struct StaticSecrets(pub Arc<VendorSecrets>);

#[async_trait]
impl SecretSource for StaticSecrets {
    async fn load(&self) -> Result<Arc<VendorSecrets>, SecretError> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ManualClock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn dev_secrets_parse_and_cover_every_vendor() {
        let s = VendorSecrets::from_json(dev_secrets_json()).expect("dev secrets parse");
        assert!(
            s.shopify.is_some()
                && s.square.is_some()
                && s.lightspeed.is_some()
                && s.standard.is_some()
        );
    }

    #[test]
    fn keyring_accepts_one_or_many_and_redacts() {
        let s = VendorSecrets::from_json(r#"{"lightspeed":{"client_secret":["new","old"]}}"#)
            .expect("parse");
        let ring = s.lightspeed.expect("lightspeed").client_secret;
        assert_eq!(ring.values().collect::<Vec<_>>(), vec!["new", "old"]);
        assert!(!format!("{ring:?}").contains("new"));
        assert!(VendorSecrets::from_json(r#"{"lightspeed":{"client_secret":[]}}"#).is_err());
        assert!(VendorSecrets::from_json(r#"{"lightspeed":{"client_secret":""}}"#).is_err());
    }

    #[test]
    fn standard_senders_are_named_validated_and_the_old_shape_is_one_sender() {
        let s = VendorSecrets::from_json(
            r#"{"standard":{"senders":{"till-hq":{"secrets":"whsec_a"},"erp":{"secrets":["whsec_b","whsec_c"]}}}}"#,
        )
        .expect("parse");
        let names: Vec<String> = s
            .standard
            .expect("standard")
            .senders
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        assert_eq!(names, ["erp", "till-hq"]);
        let legacy =
            VendorSecrets::from_json(r#"{"standard":{"secrets":["whsec_a"]}}"#).expect("parse");
        assert_eq!(
            legacy.standard.expect("standard").senders[0].name.as_str(),
            "default"
        );
        for bad in [
            r#"{"standard":{"senders":{}}}"#,
            r#"{"standard":{"senders":{"shopify":{"secrets":"whsec_a"}}}}"#,
            r#"{"standard":{"senders":{"Till HQ":{"secrets":"whsec_a"}}}}"#,
            r#"{"standard":{"senders":{"a:b":{"secrets":"whsec_a"}}}}"#,
            r#"{"standard":{"senders":{"t":{"secrets":"whsec_a","extra":1}}}}"#,
        ] {
            assert!(VendorSecrets::from_json(bad).is_err(), "{bad}");
        }
        assert!(SenderName::parse(&"a".repeat(33)).is_err());
    }

    #[test]
    fn invalid_document_error_never_echoes_values() {
        let err =
            VendorSecrets::from_json(r#"{"shopify":{"webhook_secret":"s3cr3t-value", "oops": 1}}"#)
                .expect_err("unknown field");
        assert!(!err.to_string().contains("s3cr3t"));
    }

    struct Counting(AtomicUsize);
    #[async_trait]
    impl SecretSource for Counting {
        async fn load(&self) -> Result<Arc<VendorSecrets>, SecretError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Arc::new(dev_secrets()))
        }
    }

    #[tokio::test]
    async fn cache_honours_ttl_and_rate_limits_refresh() {
        let clock = Arc::new(ManualClock::new(DateTime::<Utc>::UNIX_EPOCH));
        let cached = CachedSecrets::new(
            Counting(AtomicUsize::new(0)),
            clock.clone(),
            Duration::seconds(300),
            Duration::seconds(30),
        );
        cached.load().await.expect("load");
        cached.load().await.expect("load");
        assert_eq!(cached.inner.0.load(Ordering::SeqCst), 1);
        assert!(
            !cached.refresh().await.expect("refresh"),
            "too early to refresh"
        );
        clock.advance(Duration::seconds(31));
        assert!(cached.refresh().await.expect("refresh"));
        assert_eq!(cached.inner.0.load(Ordering::SeqCst), 2);
        clock.advance(Duration::seconds(301));
        cached.load().await.expect("load");
        assert_eq!(cached.inner.0.load(Ordering::SeqCst), 3);
    }
}
