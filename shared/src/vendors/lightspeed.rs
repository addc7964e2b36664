//! Lightspeed Retail (X-Series) webhooks.
//!
//! - Body: `application/x-www-form-urlencoded`, UTF-8; the JSON object is in the `payload` field, the
//!   event in `type` (`sale.update`…); other fields (`domain_prefix`, `environment`) may appear
//!   (X-Series developer docs, "Webhooks").
//! - Signature: `X-Signature: signature=<hmac>,algorithm=HMAC-SHA256`, the HMAC-SHA256 of the raw request
//!   body keyed with the app's client secret (X-Series developer docs, "Webhooks", signature
//!   verification; the guide we follow is `../shared/guide/webhooks.md`). The docs show the signature in
//!   hex; we also accept base64, which is as strong (a full 256-bit MAC either way). Any other algorithm
//!   is refused.
//! - Delivery key: Lightspeed sends no delivery id, so we use the sale `id` + `version` (a new version
//!   is a new delivery; redeliveries of one version dedupe).
//! - `sale.update` with `status` `CLOSED` -> [`Sale`]; other statuses (SAVED, LAYBY, ONACCOUNT…) and other
//!   types are acknowledged and ignored. Later versions of an already captured sale are duplicates of it.
//! - Amounts are JSON numbers or strings, converted exactly; the payload carries no currency, so the
//!   retailer's currency comes from configuration (`LIGHTSPEED_CURRENCY`) unless the payload has one.
//!   Lines name a `product_id`; when the line has no `sku`, the SKU is `lightspeed:<product_id>`.

use super::{
    AuthError, Interpretation, Interpreted, Malformed, MapResult, MappingConfig, decimal_text,
    header, id_text, money_field,
};
use crate::ids::{MemberId, SaleId, Sku, StoreId};
use crate::model::{CanonicalEvent, Quantity, Sale, SaleLine, Source, Vendor};
use crate::money::{Currency, Money};
use crate::secrets::KeyRing;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, NaiveDateTime, Utc};
use http::HeaderMap;
use serde_json::Value;

/// Signature header.
pub const SIGNATURE_HEADER: &str = "x-signature";

/// Parses `signature=…,algorithm=HMAC-SHA256` (order and spacing free) and verifies with every key.
pub fn verify(headers: &HeaderMap, body: &[u8], keys: &KeyRing) -> Result<(), AuthError> {
    let value =
        header(headers, SIGNATURE_HEADER)?.ok_or(AuthError::MissingHeader(SIGNATURE_HEADER))?;
    let mut signature = None;
    let mut algorithm = None;
    for part in value.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(AuthError::MalformedHeader(SIGNATURE_HEADER))?;
        match k.trim() {
            "signature" => signature = Some(v.trim()),
            "algorithm" => algorithm = Some(v.trim()),
            _ => {}
        }
    }
    let signature = signature.ok_or(AuthError::MalformedHeader(SIGNATURE_HEADER))?;
    if !algorithm.is_some_and(|a| a.eq_ignore_ascii_case("HMAC-SHA256")) {
        return Err(AuthError::MalformedHeader(SIGNATURE_HEADER));
    }
    let expected = hex::decode(signature)
        .or_else(|_| B64.decode(signature))
        .map_err(|_| AuthError::MalformedHeader(SIGNATURE_HEADER))?;
    if keys
        .values()
        .any(|k| super::signing::verify_hmac(k.as_bytes(), &[body], &expected))
    {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

/// Decodes the form, extracts id + version and maps `sale.update`.
pub fn interpret(body: &[u8], config: &MappingConfig) -> Result<Interpreted, Malformed> {
    if std::str::from_utf8(body).is_err() {
        return Err(Malformed("body is not valid UTF-8".into()));
    }
    let mut payload = None;
    let mut kind = None;
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "payload" => payload = Some(v.into_owned()),
            "type" => kind = Some(v.into_owned()),
            _ => {}
        }
    }
    let payload = payload.ok_or_else(|| Malformed("form has no payload field".into()))?;
    let json: Value = serde_json::from_str(&payload)
        .map_err(|e| Malformed(format!("payload is not valid JSON ({})", e)))?;
    let id = id_text(json.get("id")).ok_or_else(|| Malformed("payload has no id".into()))?;
    let version =
        id_text(json.get("version")).ok_or_else(|| Malformed("payload has no version".into()))?;
    let delivery_key = format!("{id}:{version}");
    let interpretation = match kind.as_deref() {
        Some("sale.update") => {
            map_sale(&json, &id, config).unwrap_or_else(Interpretation::Unmappable)
        }
        Some(other) => Interpretation::Ignored(format!(
            "type {:?} is not acted on",
            other.chars().take(64).collect::<String>()
        )),
        None => Interpretation::Unmappable("form has no type field".into()),
    };
    Ok(Interpreted {
        delivery_key,
        interpretation,
    })
}

fn sale_date(v: Option<&Value>) -> MapResult<DateTime<Utc>> {
    let text = v.and_then(Value::as_str).ok_or("missing sale_date")?;
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    // API 0.9/1.0 payloads write UTC as "YYYY-MM-DD HH:MM:SS".
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .map(|n| n.and_utc())
        .map_err(|_| "sale_date is not a timestamp".into())
}

fn map_sale(s: &Value, id: &str, config: &MappingConfig) -> MapResult<Interpretation> {
    let status = s
        .get("status")
        .and_then(Value::as_str)
        .ok_or("sale has no status")?;
    if status != "CLOSED" {
        return Ok(Interpretation::Ignored(format!(
            "sale status {}",
            status.chars().take(32).collect::<String>()
        )));
    }
    let currency = match s.get("currency").and_then(Value::as_str) {
        Some(code) => Currency::parse(code).map_err(|e| e.to_string())?,
        None => config
            .lightspeed_currency
            .ok_or("payload has no currency and LIGHTSPEED_CURRENCY is not configured")?,
    };
    let outlet = id_text(s.get("outlet_id")).ok_or("sale has no outlet_id")?;
    let member_id = match id_text(s.get("customer_id")) {
        Some(c) => Some(MemberId::parse(format!("lightspeed:{c}")).map_err(|e| e.to_string())?),
        None => None,
    };
    let items = s
        .get("register_sale_products")
        .and_then(Value::as_array)
        .ok_or("sale has no register_sale_products")?;
    if items.is_empty() {
        return Err("sale has no products".into());
    }
    let mut lines = Vec::with_capacity(items.len());
    let mut net = Money::zero(currency);
    let mut tax = Money::zero(currency);
    for (i, item) in items.iter().enumerate() {
        let at = |e: String| format!("line {i}: {e}");
        let quantity = Quantity::from_json(item.get("quantity").unwrap_or(&Value::Null))
            .map_err(|e| at(e.to_string()))?;
        let sku = match item
            .get("sku")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(sku) => Sku::parse(sku).map_err(|e| at(e.to_string()))?,
            None => {
                let product =
                    id_text(item.get("product_id")).ok_or_else(|| at("no product_id".into()))?;
                Sku::parse(format!("lightspeed:{product}")).map_err(|e| at(e.to_string()))?
            }
        };
        let unit_price = money_field(item, "price", currency, false).map_err(at)?;
        let discount_per_unit = money_field(item, "discount", currency, true).map_err(at)?;
        let tax_per_unit = money_field(item, "tax", currency, true).map_err(at)?;
        let n = i64::from(quantity.get());
        let discount = discount_per_unit
            .checked_mul(n)
            .map_err(|e| at(e.to_string()))?;
        net = net
            .checked_add(unit_price.checked_mul(n).map_err(|e| at(e.to_string()))?)
            .and_then(|m| m.checked_add(Money::from_minor(-discount.minor, currency)))
            .map_err(|e| at(e.to_string()))?;
        tax = tax
            .checked_add(tax_per_unit.checked_mul(n).map_err(|e| at(e.to_string()))?)
            .map_err(|e| at(e.to_string()))?;
        lines.push(SaleLine {
            line_id: id_text(item.get("id")).unwrap_or_else(|| i.to_string()),
            sku: Some(sku),
            quantity,
            unit_price,
            discount,
        });
    }
    // Prefer the sale's own totals; compute them from the lines when absent.
    let totals = s.get("totals");
    let total = match totals
        .and_then(|t| t.get("total_price"))
        .and_then(decimal_text)
    {
        Some(_) => {
            let t = totals.unwrap_or(&Value::Null);
            money_field(t, "total_price", currency, false)?.checked_add(money_field(
                t,
                "total_tax",
                currency,
                true,
            )?)
        }
        None => net.checked_add(tax),
    }
    .map_err(|e| e.to_string())?;
    if let Some(t) = totals.filter(|t| t.get("total_tax").is_some()) {
        tax = money_field(t, "total_tax", currency, true)?;
    }
    Ok(Interpretation::Event(CanonicalEvent::SaleCompleted(Sale {
        sale_id: SaleId::parse(format!("lightspeed:{id}")).map_err(|e| e.to_string())?,
        store_id: StoreId::parse(format!("lightspeed:{outlet}")).map_err(|e| e.to_string())?,
        occurred_at: sale_date(s.get("sale_date"))?,
        source: Source {
            vendor: Vendor::Lightspeed,
            external_id: id.to_owned(),
            channel: s
                .get("source")
                .and_then(Value::as_str)
                .map(|c| c.chars().take(32).collect()),
        },
        member_id,
        currency,
        lines,
        total,
        tax,
    })))
}
