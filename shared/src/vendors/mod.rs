//! Vendor adapters: for each POS, a signature verifier over the exact raw bytes, a delivery-key
//! extractor and a mapper to the canonical model. Facts about each scheme are in the module docs, with
//! the vendor documentation they come from.
//!
//! The flow is always: [`verify`] (401 on failure) -> [`interpret`] (400 when malformed; otherwise an
//! [`Interpreted`] that is an event, an ignorable delivery, or an unmappable one to quarantine with 422).

pub mod lightspeed;
pub mod shopify;
pub mod signing;
pub mod square;
pub mod standard;

use crate::model::{CanonicalEvent, Vendor};
use crate::money::{Currency, Money, MoneyError};
use crate::secrets::{SenderName, VendorSecrets};
use chrono::{DateTime, Utc};
use http::HeaderMap;

/// Signature verification failures: all answered 401, distinguished in logs and metrics only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header is present but not in the vendor's format.
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    /// No configured secret produces the signature.
    #[error("signature does not match")]
    BadSignature,
    /// Standard Webhooks timestamp older than the tolerance (a replay).
    #[error("timestamp too old")]
    StaleTimestamp,
    /// Standard Webhooks timestamp too far in the future.
    #[error("timestamp in the future")]
    FutureTimestamp,
}

/// A request that is not what the vendor sends at all: answered 400, not quarantined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

/// What a verified, well-formed delivery means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interpretation {
    /// A business fact to capture.
    Event(CanonicalEvent),
    /// Several facts carried by one delivery (a Lightspeed exchange: a sale and a return), captured
    /// together in one atomic write, each exactly once.
    Events(Vec<CanonicalEvent>),
    /// A fact that reverses an earlier one (a Lightspeed void of a closed sale): captured only when the
    /// record `requires` is stored, otherwise the delivery is ignored with `otherwise`.
    Reversal {
        /// The reversing fact.
        event: CanonicalEvent,
        /// Record key of the fact it reverses.
        requires: String,
        /// Why the delivery is ignored when that fact was never captured.
        otherwise: String,
    },
    /// A delivery we acknowledge without effect (test notifications, topics we do not act on, open sales).
    Ignored(String),
    /// Signed and well-formed but not mappable (bad amounts, missing fields): quarantined, answered 422.
    Unmappable(String),
}

/// A delivery's idempotency key and meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreted {
    /// The vendor's delivery id (our idempotency key within the vendor).
    pub delivery_key: String,
    /// What it means.
    pub interpretation: Interpretation,
}

/// Settings that shape mapping (not secrets).
#[derive(Debug, Clone, Default)]
pub struct MappingConfig {
    /// Lightspeed payloads carry no currency: the retailer's currency, when configured.
    pub lightspeed_currency: Option<Currency>,
    /// Lightspeed sales name a register, not always an outlet: `register_id -> outlet_id` as configured
    /// (`LIGHTSPEED_REGISTERS`, a JSON object). An unmapped register is its own store
    /// (`lightspeed-register:{register_id}`), see `lightspeed`'s module docs.
    pub lightspeed_registers: std::collections::HashMap<String, String>,
    /// Whether Shopify test orders (`"test": true`, and refunds made only of test transactions) count.
    /// Off by default: a development store's test checkouts must not move stock or points.
    pub shopify_accept_test_orders: bool,
}

/// Whether an unmappable delivery from `vendor` is refused (422) rather than acknowledged (200
/// `quarantined`). Both are quarantined. A POS vendor cannot fix what we fail to map, and refusing makes it
/// retry and then give up on the subscription (Shopify deletes it after 8 failed attempts over 4 hours;
/// Square retries for 72 hours), so its deliveries are acknowledged and the quarantine alarm calls an
/// operator instead. Standard Webhooks senders are our retailer's own systems, sending our own schema:
/// the 422 with the reason is how they learn to fix their payload.
pub fn refuses_unmappable(vendor: Vendor) -> bool {
    matches!(vendor, Vendor::Standard)
}

/// The request headers a vendor's mapping reads (topics, delivery ids), kept with a quarantined delivery
/// so a reprocess interprets exactly what arrived. Signature headers are not among them.
pub fn mapping_headers(vendor: Vendor, headers: &HeaderMap) -> Vec<(String, String)> {
    let names: &[&str] = match vendor {
        Vendor::Shopify => &[
            shopify::TOPIC_HEADER,
            shopify::EVENT_ID_HEADER,
            shopify::WEBHOOK_ID_HEADER,
            shopify::SHOP_DOMAIN_HEADER,
        ],
        Vendor::Standard => &[standard::ID_HEADER],
        Vendor::Square | Vendor::Lightspeed => &[],
    };
    names
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect()
}

/// Maximum delivery-key length we accept (DynamoDB keys and logs stay bounded).
pub const MAX_DELIVERY_KEY_LEN: usize = 256;

/// The media type each vendor sends (`Content-Type`, parameters ignored).
pub fn expected_media_type(vendor: Vendor) -> &'static str {
    match vendor {
        Vendor::Lightspeed => "application/x-www-form-urlencoded",
        Vendor::Shopify | Vendor::Square | Vendor::Standard => "application/json",
    }
}

/// Whether vendor secrets are configured for `vendor`.
pub fn is_configured(vendor: Vendor, secrets: &VendorSecrets) -> bool {
    match vendor {
        Vendor::Shopify => secrets.shopify.is_some(),
        Vendor::Square => secrets.square.is_some(),
        Vendor::Lightspeed => secrets.lightspeed.is_some(),
        Vendor::Standard => secrets.standard.is_some(),
    }
}

/// Who a verified delivery comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// The vendor itself (Shopify, Square, Lightspeed: one identity per vendor).
    Vendor,
    /// The Standard Webhooks sender whose key verified the delivery.
    Sender(SenderName),
}

/// Verifies the vendor's signature over the raw body. `now` is used by schemes with a timestamp.
pub fn verify(
    vendor: Vendor,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &VendorSecrets,
    now: DateTime<Utc>,
) -> Result<Signer, AuthError> {
    // An unconfigured vendor is refused by the caller before this point; treat it as "no key matches".
    match vendor {
        Vendor::Shopify => secrets
            .shopify
            .as_ref()
            .map_or(Err(AuthError::BadSignature), |s| {
                shopify::verify(headers, body, &s.webhook_secret)
            })
            .map(|()| Signer::Vendor),
        Vendor::Square => secrets
            .square
            .as_ref()
            .map_or(Err(AuthError::BadSignature), |s| {
                square::verify(headers, body, s)
            })
            .map(|()| Signer::Vendor),
        Vendor::Lightspeed => secrets
            .lightspeed
            .as_ref()
            .map_or(Err(AuthError::BadSignature), |s| {
                lightspeed::verify(headers, body, &s.client_secret)
            })
            .map(|()| Signer::Vendor),
        Vendor::Standard => secrets
            .standard
            .as_ref()
            .map_or(Err(AuthError::BadSignature), |s| {
                standard::verify(headers, body, &s.senders, now)
            })
            .map(Signer::Sender),
    }
}

/// Interprets a verified delivery.
///
/// A Standard Webhooks delivery needs its [`Signer::Sender`]: the sender's name namespaces its ids. One
/// signed by anything else is malformed.
pub fn interpret(
    vendor: Vendor,
    signer: &Signer,
    headers: &HeaderMap,
    body: &[u8],
    config: &MappingConfig,
) -> Result<Interpreted, Malformed> {
    let interpreted = match (vendor, signer) {
        (Vendor::Shopify, _) => shopify::interpret(headers, body, config),
        (Vendor::Square, _) => square::interpret(body),
        (Vendor::Lightspeed, _) => lightspeed::interpret(body, config),
        (Vendor::Standard, Signer::Sender(sender)) => standard::interpret(sender, headers, body),
        (Vendor::Standard, Signer::Vendor) => {
            return Err(Malformed(
                "a Standard Webhooks delivery needs a sender".into(),
            ));
        }
    }?;
    if interpreted.delivery_key.is_empty() || interpreted.delivery_key.len() > MAX_DELIVERY_KEY_LEN
    {
        return Err(Malformed(format!(
            "delivery id must be 1 to {MAX_DELIVERY_KEY_LEN} bytes"
        )));
    }
    if interpreted.delivery_key.chars().any(char::is_control) {
        return Err(Malformed("delivery id contains control characters".into()));
    }
    Ok(interpreted)
}

/// A header's value as UTF-8 text.
pub(crate) fn header<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
) -> Result<Option<&'a str>, AuthError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| AuthError::MalformedHeader(name)),
    }
}

/// The body as UTF-8 JSON (400 when it is not).
pub(crate) fn parse_json(body: &[u8]) -> Result<serde_json::Value, Malformed> {
    let text =
        std::str::from_utf8(body).map_err(|_| Malformed("body is not valid UTF-8".into()))?;
    serde_json::from_str(text).map_err(|e| Malformed(format!("body is not valid JSON ({})", e)))
}

/// A mapping error message, becoming [`Interpretation::Unmappable`].
pub(crate) type MapResult<T> = Result<T, String>;

/// The decimal text of an amount sent as a JSON string (`"12.50"`) or number (`12.5`).
///
/// Numbers are rendered by serde_json's shortest round-trip formatting, which reproduces the literal the
/// vendor wrote for any amount with up to 15 significant digits; the text is then parsed exactly.
pub(crate) fn decimal_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An amount field: absent or null is zero when `default_zero`, otherwise an error.
pub(crate) fn money_field(
    obj: &serde_json::Value,
    field: &str,
    currency: Currency,
    default_zero: bool,
) -> MapResult<Money> {
    match obj.get(field) {
        None | Some(serde_json::Value::Null) if default_zero => Ok(Money::zero(currency)),
        None | Some(serde_json::Value::Null) => Err(format!("missing amount {field}")),
        Some(v) => {
            let text = decimal_text(v).ok_or_else(|| format!("{field} is not an amount"))?;
            Money::parse_decimal(&text, currency).map_err(|e: MoneyError| format!("{field}: {e}"))
        }
    }
}

/// A JSON id that vendors send as a number or a string.
pub(crate) fn id_text(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An RFC 3339 timestamp, converted to UTC.
pub(crate) fn timestamp(v: Option<&serde_json::Value>, field: &str) -> MapResult<DateTime<Utc>> {
    let text = v
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("missing timestamp {field}"))?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{field} is not an RFC 3339 timestamp"))
}
