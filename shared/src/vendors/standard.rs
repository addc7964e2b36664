//! Standard Webhooks (<https://www.standardwebhooks.com>): the path for in-house tills and middleware,
//! carrying our canonical sale / return / stock JSON (schemas under `events/schemas/`).
//!
//! - Headers `webhook-id`, `webhook-timestamp` (Unix seconds), `webhook-signature` (space-separated
//!   `v1,<base64>` entries; any match passes, so senders can sign with old and new keys while rotating).
//! - Signed content `{id}.{timestamp}.{body}`, HMAC-SHA256; keys are `whsec_` + base64, decoded.
//! - Timestamps more than 5 minutes old or ahead are refused (replay protection).
//! - Senders: each in-house sender has its own keys (`standard.senders.{name}.secrets`); the sender whose
//!   key verifies a delivery is its identity. Ids are namespaced by that name: a sale `1001` from `till-hq`
//!   is `till-hq:1001`, its delivery key `till-hq:{webhook-id}`, so two senders that number alike never
//!   collide. The fact ids a sender sends (sale, return, adjustment, the returned sale) are its own and
//!   get its namespace; store and member ids are the retailer's master data, shared by every sender (a
//!   till and a warehouse system move the same store's stock), and are taken as sent. No id may be in a
//!   vendor's namespace (`shopify:`, `square:`, `lightspeed:`, `standard:`): such a delivery is
//!   unmappable (422), so a holder of a Standard key cannot claim a Shopify sale or move its stock.
//! - Delivery key: `{sender}:{webhook-id}`.
//! - Body `{"type": "sale.completed" | "return.completed" | "stock.adjusted", "timestamp": …, "data": {…}}`.
//!   This is our own schema, so it is strict: unknown fields and unknown types are quarantined (422)
//!   rather than ignored, so a typo in a till's integration is seen instead of silently losing data.

use super::{AuthError, Interpretation, Interpreted, Malformed, MapResult, header, parse_json};
use crate::ids::{AdjustmentId, MemberId, ReturnId, SaleId, Sku, StoreId};
use crate::model::{
    CanonicalEvent, Quantity, Return, ReturnLine, Sale, SaleLine, Source, StockAdjustment,
    StockChange, Vendor,
};
use crate::money::{Currency, Money};
use crate::secrets::{SenderName, StandardSender};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde::{Deserialize, Serialize};

/// Message id header.
pub const ID_HEADER: &str = "webhook-id";
/// Timestamp header.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Signature header.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// Allowed clock difference, both ways, in seconds.
pub const TOLERANCE_SECS: i64 = 300;

/// Verifies timestamp tolerance and the signature list against every sender's keys; the sender whose
/// key matches is the delivery's identity.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    senders: &[StandardSender],
    now: DateTime<Utc>,
) -> Result<SenderName, AuthError> {
    let id = header(headers, ID_HEADER)?.ok_or(AuthError::MissingHeader(ID_HEADER))?;
    let ts_text =
        header(headers, TIMESTAMP_HEADER)?.ok_or(AuthError::MissingHeader(TIMESTAMP_HEADER))?;
    let signatures =
        header(headers, SIGNATURE_HEADER)?.ok_or(AuthError::MissingHeader(SIGNATURE_HEADER))?;
    let ts: i64 = ts_text
        .trim()
        .parse()
        .map_err(|_| AuthError::MalformedHeader(TIMESTAMP_HEADER))?;
    let age = now.timestamp().saturating_sub(ts);
    if age > TOLERANCE_SECS {
        return Err(AuthError::StaleTimestamp);
    }
    if age < -TOLERANCE_SECS {
        return Err(AuthError::FutureTimestamp);
    }
    let candidates: Vec<Vec<u8>> = signatures
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| B64.decode(b64).ok())
        .collect();
    if candidates.is_empty() {
        return Err(AuthError::MalformedHeader(SIGNATURE_HEADER));
    }
    let ts_bytes = ts_text.trim().as_bytes();
    for sender in senders {
        for key in sender
            .secrets
            .values()
            .filter_map(super::signing::standard_key)
        {
            for sig in &candidates {
                if super::signing::verify_hmac(
                    &key,
                    &[id.as_bytes(), b".", ts_bytes, b".", body],
                    sig,
                ) {
                    return Ok(sender.name.clone());
                }
            }
        }
    }
    Err(AuthError::BadSignature)
}

/// The envelope of a Standard Webhooks body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardEnvelope {
    /// `sale.completed`, `return.completed` or `stock.adjusted`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the sender emitted the message (informational).
    pub timestamp: Option<String>,
    /// The payload, per type.
    pub data: serde_json::Value,
}

/// A sale line as tills send it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardSaleLine {
    /// Line id (defaults to the position).
    pub line_id: Option<String>,
    /// SKU; absent for custom items.
    pub sku: Option<Sku>,
    /// Units, a whole number >= 1.
    pub quantity: i64,
    /// Unit price, decimal string in the sale currency.
    pub unit_price: String,
    /// Discount on the line, decimal string (default 0).
    pub discount: Option<String>,
}

/// `sale.completed` data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardSale {
    /// Sale id, unique for the sender.
    pub sale_id: SaleId,
    /// Store id.
    pub store_id: StoreId,
    /// Completion time, RFC 3339.
    pub occurred_at: DateTime<Utc>,
    /// Loyalty member, if identified.
    pub member_id: Option<MemberId>,
    /// ISO 4217 code.
    pub currency: String,
    /// Till or channel name.
    pub channel: Option<String>,
    /// Lines.
    pub lines: Vec<StandardSaleLine>,
    /// Amount paid, tax included, decimal string.
    pub total: String,
    /// Tax included in total, decimal string (default 0).
    pub tax: Option<String>,
}

/// A returned line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardReturnLine {
    /// Line id (defaults to the position).
    pub line_id: Option<String>,
    /// SKU; absent for custom items.
    pub sku: Option<Sku>,
    /// Units returned.
    pub quantity: i64,
    /// Whether the units go back to stock.
    pub restock: bool,
    /// Refund for the line, decimal string.
    pub refund: String,
}

/// `return.completed` data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardReturn {
    /// Return id.
    pub return_id: ReturnId,
    /// Original sale, if known.
    pub sale_id: Option<SaleId>,
    /// Store id.
    pub store_id: StoreId,
    /// Time, RFC 3339.
    pub occurred_at: DateTime<Utc>,
    /// Loyalty member.
    pub member_id: Option<MemberId>,
    /// ISO 4217 code.
    pub currency: String,
    /// Till or channel name.
    pub channel: Option<String>,
    /// Lines.
    pub lines: Vec<StandardReturnLine>,
    /// Total refunded, decimal string.
    pub total_refund: String,
}

/// `stock.adjusted` data: exactly one of `on_hand` and `delta`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardStockAdjustment {
    /// Adjustment id.
    pub adjustment_id: AdjustmentId,
    /// Store id.
    pub store_id: StoreId,
    /// SKU.
    pub sku: Sku,
    /// Time, RFC 3339.
    pub occurred_at: DateTime<Utc>,
    /// Counted on-hand units.
    pub on_hand: Option<i64>,
    /// Relative change.
    pub delta: Option<i64>,
}

/// Extracts `webhook-id` and maps the canonical body of a delivery `sender` signed.
pub fn interpret(
    sender: &SenderName,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Interpreted, Malformed> {
    let delivery_key = header(headers, ID_HEADER)
        .map_err(|_| Malformed("webhook-id is not text".into()))?
        .ok_or_else(|| Malformed("missing webhook-id".into()))?;
    let delivery_key = format!("{sender}:{delivery_key}");
    let json = parse_json(body)?;
    let interpretation = match serde_json::from_value::<StandardEnvelope>(json) {
        Err(e) => Interpretation::Unmappable(short(&e.to_string())),
        Ok(env) => match map(sender, &env) {
            Ok(ev) => Interpretation::Event(ev),
            Err(reason) => Interpretation::Unmappable(reason),
        },
    };
    Ok(Interpreted {
        delivery_key,
        interpretation,
    })
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

fn money(text: &str, currency: Currency, field: &str) -> MapResult<Money> {
    Money::parse_decimal(text, currency).map_err(|e| format!("{field}: {e}"))
}

/// Refuses an id in a vendor's namespace (`shopify:…`): only that vendor's adapter makes those.
fn not_a_vendors(field: &str, id: &str) -> MapResult<()> {
    match id.split_once(':') {
        Some((ns, _)) if SenderName::RESERVED.contains(&ns) => Err(format!(
            "{field} {:?} is in the {ns} namespace, which only the {ns} adapter may use",
            id.chars().take(64).collect::<String>()
        )),
        _ => Ok(()),
    }
}

/// A sender's own id, namespaced by the sender: `till-hq` + `1001` = `till-hq:1001`.
fn own<T>(
    sender: &SenderName,
    field: &str,
    id: &str,
    parse: impl FnOnce(String) -> Result<T, crate::ids::IdError>,
) -> MapResult<T> {
    not_a_vendors(field, id)?;
    parse(format!("{sender}:{id}")).map_err(|e| format!("{field}: {e}"))
}

/// Master data (stores, members) shared by every sender: taken as sent, but never a vendor's.
fn shared_id<T: std::fmt::Display>(field: &str, id: T) -> MapResult<T> {
    not_a_vendors(field, &id.to_string())?;
    Ok(id)
}

fn source(id: &str, channel: Option<String>) -> Source {
    Source {
        vendor: Vendor::Standard,
        external_id: id.to_owned(),
        channel: channel.map(|c| c.chars().take(64).collect()),
    }
}

fn map(sender: &SenderName, env: &StandardEnvelope) -> MapResult<CanonicalEvent> {
    match env.kind.as_str() {
        "sale.completed" => {
            let s: StandardSale =
                serde_json::from_value(env.data.clone()).map_err(|e| short(&e.to_string()))?;
            let currency = Currency::parse(&s.currency).map_err(|e| e.to_string())?;
            if s.lines.is_empty() {
                return Err("sale has no lines".into());
            }
            let mut lines = Vec::with_capacity(s.lines.len());
            for (i, l) in s.lines.iter().enumerate() {
                lines.push(SaleLine {
                    line_id: l.line_id.clone().unwrap_or_else(|| i.to_string()),
                    sku: l.sku.clone(),
                    quantity: Quantity::new(l.quantity).map_err(|e| format!("lines[{i}]: {e}"))?,
                    unit_price: money(&l.unit_price, currency, &format!("lines[{i}].unit_price"))?,
                    discount: money(
                        l.discount.as_deref().unwrap_or("0"),
                        currency,
                        &format!("lines[{i}].discount"),
                    )?,
                });
            }
            Ok(CanonicalEvent::SaleCompleted(Sale {
                source: source(s.sale_id.as_str(), s.channel),
                sale_id: own(sender, "sale_id", s.sale_id.as_str(), SaleId::parse)?,
                store_id: shared_id("store_id", s.store_id)?,
                occurred_at: s.occurred_at,
                member_id: s.member_id.map(|m| shared_id("member_id", m)).transpose()?,
                currency,
                lines,
                total: money(&s.total, currency, "total")?,
                tax: money(s.tax.as_deref().unwrap_or("0"), currency, "tax")?,
            }))
        }
        "return.completed" => {
            let r: StandardReturn =
                serde_json::from_value(env.data.clone()).map_err(|e| short(&e.to_string()))?;
            let currency = Currency::parse(&r.currency).map_err(|e| e.to_string())?;
            if r.lines.is_empty() {
                return Err("return has no lines".into());
            }
            let mut lines = Vec::with_capacity(r.lines.len());
            for (i, l) in r.lines.iter().enumerate() {
                lines.push(ReturnLine {
                    line_id: l.line_id.clone().unwrap_or_else(|| i.to_string()),
                    sku: l.sku.clone(),
                    quantity: Quantity::new(l.quantity).map_err(|e| format!("lines[{i}]: {e}"))?,
                    restock: l.restock,
                    refund: money(&l.refund, currency, &format!("lines[{i}].refund"))?,
                });
            }
            Ok(CanonicalEvent::ReturnCompleted(Return {
                source: source(r.return_id.as_str(), r.channel),
                return_id: own(sender, "return_id", r.return_id.as_str(), ReturnId::parse)?,
                sale_id: r
                    .sale_id
                    .map(|id| own(sender, "sale_id", id.as_str(), SaleId::parse))
                    .transpose()?,
                store_id: shared_id("store_id", r.store_id)?,
                occurred_at: r.occurred_at,
                member_id: r.member_id.map(|m| shared_id("member_id", m)).transpose()?,
                currency,
                lines,
                total_refund: money(&r.total_refund, currency, "total_refund")?,
            }))
        }
        "stock.adjusted" => {
            let a: StandardStockAdjustment =
                serde_json::from_value(env.data.clone()).map_err(|e| short(&e.to_string()))?;
            let change = match (a.on_hand, a.delta) {
                (Some(on_hand), None) => StockChange::Set { on_hand },
                (None, Some(delta)) => StockChange::Delta { delta },
                _ => return Err("exactly one of on_hand and delta is required".into()),
            };
            Ok(CanonicalEvent::StockAdjusted(StockAdjustment {
                source: source(a.adjustment_id.as_str(), None),
                adjustment_id: own(
                    sender,
                    "adjustment_id",
                    a.adjustment_id.as_str(),
                    AdjustmentId::parse,
                )?,
                store_id: shared_id("store_id", a.store_id)?,
                sku: a.sku,
                occurred_at: a.occurred_at,
                change,
            }))
        }
        other => Err(format!(
            "unknown type {:?}",
            other.chars().take(64).collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(name: &str) -> SenderName {
        SenderName::parse(name).expect("valid sender")
    }

    fn deliver(from: &str, msg_id: &str, body: &serde_json::Value) -> Interpreted {
        let mut headers = HeaderMap::new();
        headers.insert(
            ID_HEADER,
            http::HeaderValue::from_str(msg_id).expect("header"),
        );
        interpret(&sender(from), &headers, body.to_string().as_bytes()).expect("well formed")
    }

    #[test]
    fn two_senders_with_the_same_ids_make_two_facts() {
        let body = crate::samples::standard_sale("1001", "store-1", Some("m-1"), 1);
        let a = deliver("till-a", "msg_1", &body);
        let b = deliver("till-b", "msg_1", &body);
        assert_eq!(a.delivery_key, "till-a:msg_1");
        assert_eq!(b.delivery_key, "till-b:msg_1");
        let (Interpretation::Event(ea), Interpretation::Event(eb)) =
            (&a.interpretation, &b.interpretation)
        else {
            panic!("not events: {a:?} {b:?}");
        };
        assert_ne!(ea.record_key(), eb.record_key());
        assert_ne!(ea.event_id(), eb.event_id());
        let CanonicalEvent::SaleCompleted(sale) = ea else {
            panic!("not a sale")
        };
        assert_eq!(sale.sale_id.as_str(), "till-a:1001");
        // Master data is shared: both senders' sales are in the same store, for the same member.
        assert_eq!(sale.store_id.as_str(), "store-1");
        assert_eq!(sale.member_id.as_ref().map(MemberId::as_str), Some("m-1"));
        assert_eq!(sale.source.external_id, "1001");
    }

    #[test]
    fn ids_in_a_vendors_namespace_are_refused() {
        let cases = [
            crate::samples::standard_sale("shopify:450789469", "store-1", None, 1),
            crate::samples::standard_sale("s-1", "shopify:online", None, 1),
            crate::samples::standard_sale("s-1", "store-1", Some("square:C1"), 1),
            crate::samples::standard_return("r-1", "lightspeed:abc", "store-1"),
            crate::samples::standard_return("standard:r-1", "s-1", "store-1"),
        ];
        for body in cases {
            match deliver("till", "msg_1", &body).interpretation {
                Interpretation::Unmappable(reason) => {
                    assert!(reason.contains("namespace"), "{reason}");
                }
                other => panic!("accepted {body}: {other:?}"),
            }
        }
        // A colon elsewhere is an ordinary id character.
        let ok = crate::samples::standard_sale("2026:0001", "store-1", None, 1);
        assert!(matches!(
            deliver("till", "msg_1", &ok).interpretation,
            Interpretation::Event(_)
        ));
    }

    #[test]
    fn a_return_refers_to_a_sale_of_the_same_sender() {
        let body = crate::samples::standard_return("r-1", "1001", "store-1");
        let Interpretation::Event(CanonicalEvent::ReturnCompleted(r)) =
            deliver("till-a", "msg_9", &body).interpretation
        else {
            panic!("not a return");
        };
        assert_eq!(r.return_id.as_str(), "till-a:r-1");
        assert_eq!(r.sale_id.as_ref().map(SaleId::as_str), Some("till-a:1001"));
    }

    fn interpret_lines(skus: &[&str]) -> Interpretation {
        let mut body = crate::samples::standard_sale("s-1", "store-1", None, skus.len());
        for (line, sku) in body["data"]["lines"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .zip(skus)
        {
            line["sku"] = serde_json::json!(sku);
        }
        let mut headers = HeaderMap::new();
        headers.insert(ID_HEADER, http::HeaderValue::from_static("msg_1"));
        interpret(&sender("till"), &headers, body.to_string().as_bytes())
            .expect("well formed")
            .interpretation
    }

    #[test]
    fn a_sale_is_never_refused_for_its_skus_characters() {
        let skus = ["TEE RED M", "Größe 42", "CAP#NAVY+1"];
        match interpret_lines(&skus) {
            Interpretation::Event(CanonicalEvent::SaleCompleted(sale)) => {
                let got: Vec<&str> = sale
                    .lines
                    .iter()
                    .filter_map(|l| l.sku.as_ref().map(Sku::as_str))
                    .collect();
                assert_eq!(got, skus);
            }
            other => panic!("not a sale: {other:?}"),
        }
        // Corrupt data (a control character) is still quarantined, with the reason.
        match interpret_lines(&["A\tB"]) {
            Interpretation::Unmappable(reason) => assert!(reason.contains("control"), "{reason}"),
            other => panic!("accepted: {other:?}"),
        }
    }
}
