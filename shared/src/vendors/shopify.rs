//! Shopify webhooks.
//!
//! - Signature: `X-Shopify-Hmac-Sha256` (newer deliveries: `Shopify-Hmac-Sha256`; both accepted) is the
//!   base64 HMAC-SHA256 of the raw body keyed with the app's client secret as UTF-8 bytes
//!   (shopify.dev, "Verify webhooks").
//! - Delivery key: `X-Shopify-Event-Id`, shared by every delivery of one merchant action, so retries and
//!   duplicate subscriptions dedupe; else `X-Shopify-Webhook-Id` (per delivery).
//! - Topics (`X-Shopify-Topic`): `orders/create` -> [`Sale`] (the REST Order: `source_name` is recorded as
//!   the channel, `pos` for POS), `refunds/create` -> [`Return`]; every other topic is acknowledged and
//!   ignored.
//! - Amounts are decimal strings in the order's currency; ids are numbers.

use super::{
    AuthError, Interpretation, Interpreted, Malformed, MapResult, header, id_text, money_field,
    parse_json, timestamp,
};
use crate::ids::{MemberId, ReturnId, SaleId, Sku, StoreId};
use crate::model::{CanonicalEvent, Quantity, Return, ReturnLine, Sale, SaleLine, Source, Vendor};
use crate::money::{Currency, Money};
use crate::secrets::KeyRing;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::HeaderMap;
use serde_json::Value;

/// Signature header (legacy name).
pub const HMAC_HEADER: &str = "x-shopify-hmac-sha256";
/// Signature header (new name).
pub const HMAC_HEADER_NEW: &str = "shopify-hmac-sha256";
/// Topic header.
pub const TOPIC_HEADER: &str = "x-shopify-topic";
/// Event id header (dedupe key).
pub const EVENT_ID_HEADER: &str = "x-shopify-event-id";
/// Delivery id header (fallback dedupe key).
pub const WEBHOOK_ID_HEADER: &str = "x-shopify-webhook-id";
/// Shop domain header.
pub const SHOP_DOMAIN_HEADER: &str = "x-shopify-shop-domain";

/// Verifies the HMAC with every key of the ring (rotation).
pub fn verify(headers: &HeaderMap, body: &[u8], keys: &KeyRing) -> Result<(), AuthError> {
    let sig = match header(headers, HMAC_HEADER)? {
        Some(s) => s,
        None => header(headers, HMAC_HEADER_NEW)?.ok_or(AuthError::MissingHeader(HMAC_HEADER))?,
    };
    let expected = B64
        .decode(sig.trim())
        .map_err(|_| AuthError::MalformedHeader(HMAC_HEADER))?;
    if keys
        .values()
        .any(|k| super::signing::verify_hmac(k.as_bytes(), &[body], &expected))
    {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

/// Extracts the delivery key and maps the topic.
pub fn interpret(headers: &HeaderMap, body: &[u8]) -> Result<Interpreted, Malformed> {
    let text = |name: &'static str| {
        header(headers, name).map_err(|_| Malformed(format!("header {name} is not text")))
    };
    let delivery_key = match text(EVENT_ID_HEADER)? {
        Some(k) => k.to_owned(),
        None => text(WEBHOOK_ID_HEADER)?
            .ok_or_else(|| Malformed(format!("missing {EVENT_ID_HEADER} and {WEBHOOK_ID_HEADER}")))?
            .to_owned(),
    };
    let topic = text(TOPIC_HEADER)?.ok_or_else(|| Malformed(format!("missing {TOPIC_HEADER}")))?;
    let json = parse_json(body)?;
    if !json.is_object() {
        return Err(Malformed("body is not a JSON object".into()));
    }
    let interpretation = match topic {
        "orders/create" => {
            map_order(&json).map(|s| Interpretation::Event(CanonicalEvent::SaleCompleted(s)))
        }
        "refunds/create" => {
            map_refund(&json).map(|r| Interpretation::Event(CanonicalEvent::ReturnCompleted(r)))
        }
        other => Ok(Interpretation::Ignored(format!(
            "topic {} is not acted on",
            other.chars().take(64).collect::<String>()
        ))),
    }
    .unwrap_or_else(Interpretation::Unmappable);
    Ok(Interpreted {
        delivery_key,
        interpretation,
    })
}

fn store_of(location: Option<&Value>) -> MapResult<StoreId> {
    match id_text(location) {
        Some(id) => StoreId::parse(format!("shopify:{id}")).map_err(|e| e.to_string()),
        // Online orders have no location: they belong to the shop's online store.
        None => StoreId::parse("shopify:online").map_err(|e| e.to_string()),
    }
}

fn sku_of(item: &Value) -> MapResult<Option<Sku>> {
    match item.get("sku").and_then(Value::as_str).map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => Sku::parse(s).map(Some).map_err(|e| e.to_string()),
    }
}

fn map_order(o: &Value) -> MapResult<Sale> {
    let id = id_text(o.get("id")).ok_or("order has no id")?;
    let currency = Currency::parse(
        o.get("currency")
            .and_then(Value::as_str)
            .ok_or("order has no currency")?,
    )
    .map_err(|e| e.to_string())?;
    let member_id = match id_text(o.get("customer").and_then(|c| c.get("id"))) {
        Some(c) => Some(MemberId::parse(format!("shopify:{c}")).map_err(|e| e.to_string())?),
        None => None,
    };
    let items = o
        .get("line_items")
        .and_then(Value::as_array)
        .ok_or("order has no line_items")?;
    if items.is_empty() {
        return Err("order has no line items".into());
    }
    let mut lines = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let quantity = Quantity::from_json(item.get("quantity").unwrap_or(&Value::Null))
            .map_err(|e| format!("line {i}: {e}"))?;
        lines.push(SaleLine {
            line_id: id_text(item.get("id")).unwrap_or_else(|| i.to_string()),
            sku: sku_of(item).map_err(|e| format!("line {i}: {e}"))?,
            quantity,
            unit_price: money_field(item, "price", currency, false)
                .map_err(|e| format!("line {i}: {e}"))?,
            discount: money_field(item, "total_discount", currency, true)
                .map_err(|e| format!("line {i}: {e}"))?,
        });
    }
    Ok(Sale {
        sale_id: SaleId::parse(format!("shopify:{id}")).map_err(|e| e.to_string())?,
        store_id: store_of(o.get("location_id"))?,
        occurred_at: timestamp(o.get("created_at"), "created_at")?,
        source: Source {
            vendor: Vendor::Shopify,
            external_id: id,
            channel: o
                .get("source_name")
                .and_then(Value::as_str)
                .map(|s| s.chars().take(64).collect()),
        },
        member_id,
        currency,
        lines,
        total: money_field(o, "total_price", currency, false)?,
        tax: money_field(o, "total_tax", currency, true)?,
    })
}

fn refund_currency(r: &Value) -> MapResult<Currency> {
    let from_lines = r
        .get("refund_line_items")
        .and_then(Value::as_array)
        .and_then(|items| items.first())
        .and_then(|i| i.pointer("/subtotal_set/shop_money/currency_code"))
        .and_then(Value::as_str);
    let from_tx = r
        .get("transactions")
        .and_then(Value::as_array)
        .and_then(|t| t.first())
        .and_then(|t| t.get("currency"))
        .and_then(Value::as_str);
    let code = from_lines
        .or(from_tx)
        .ok_or("refund has no currency (subtotal_set or transactions)")?;
    Currency::parse(code).map_err(|e| e.to_string())
}

fn map_refund(r: &Value) -> MapResult<Return> {
    let id = id_text(r.get("id")).ok_or("refund has no id")?;
    let order_id = id_text(r.get("order_id")).ok_or("refund has no order_id")?;
    let currency = refund_currency(r)?;
    let items = r
        .get("refund_line_items")
        .and_then(Value::as_array)
        .ok_or("refund has no refund_line_items")?;
    let mut lines = Vec::with_capacity(items.len());
    let mut total = Money::zero(currency);
    for (i, item) in items.iter().enumerate() {
        let quantity = Quantity::from_json(item.get("quantity").unwrap_or(&Value::Null))
            .map_err(|e| format!("refund line {i}: {e}"))?;
        let refund = money_field(item, "subtotal", currency, false)
            .map_err(|e| format!("refund line {i}: {e}"))?;
        total = total.checked_add(refund).map_err(|e| e.to_string())?;
        let restock = matches!(
            item.get("restock_type").and_then(Value::as_str),
            Some("return" | "cancel" | "legacy_restock")
        );
        lines.push(ReturnLine {
            line_id: id_text(item.get("line_item_id")).unwrap_or_else(|| i.to_string()),
            sku: item.get("line_item").map(sku_of).transpose()?.flatten(),
            quantity,
            restock,
            refund,
        });
    }
    let location = items
        .iter()
        .find_map(|i| i.get("location_id").filter(|v| !v.is_null()));
    Ok(Return {
        return_id: ReturnId::parse(format!("shopify:{id}")).map_err(|e| e.to_string())?,
        sale_id: Some(SaleId::parse(format!("shopify:{order_id}")).map_err(|e| e.to_string())?),
        store_id: store_of(location)?,
        occurred_at: timestamp(r.get("created_at"), "created_at")?,
        source: Source {
            vendor: Vendor::Shopify,
            external_id: id,
            channel: None,
        },
        // Refund payloads carry no customer; the loyalty consumer resolves it through the original sale.
        member_id: None,
        currency,
        lines,
        total_refund: total,
    })
}
