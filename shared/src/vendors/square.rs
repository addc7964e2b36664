//! Square webhooks.
//!
//! - Signature: `x-square-hmacsha256-signature` is the base64 HMAC-SHA256 of the notification URL
//!   followed by the raw body, keyed with the subscription's signature key as UTF-8 bytes (Square
//!   developer docs, "Validate notifications"). The URL is the public one configured in the subscription
//!   (held with the secret), not the path API Gateway hands us.
//! - Delivery key: the body's `event_id` (retries carry the same one).
//! - `payment.created` / `payment.updated` with status `COMPLETED` -> [`PendingSale`]: Square's webhook
//!   has no order lines, which the enrichment step fetches later with RetrieveOrder; the payment is
//!   recorded durably now so nothing is dropped. Other statuses, `webhooks.test_notification` and
//!   unknown types are acknowledged and ignored.
//! - Amounts are integer minor units (`amount_money.amount`).

use super::{
    AuthError, Interpretation, Interpreted, Malformed, MapResult, header, parse_json, timestamp,
};
use crate::ids::{MemberId, SaleId, StoreId};
use crate::model::{CanonicalEvent, PendingSale, Source, Vendor};
use crate::money::{Currency, Money};
use crate::secrets::SquareSecrets;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::HeaderMap;
use serde_json::Value;

/// Signature header.
pub const SIGNATURE_HEADER: &str = "x-square-hmacsha256-signature";

/// Verifies the HMAC over notification URL + body with every key of the ring.
pub fn verify(headers: &HeaderMap, body: &[u8], secrets: &SquareSecrets) -> Result<(), AuthError> {
    let sig =
        header(headers, SIGNATURE_HEADER)?.ok_or(AuthError::MissingHeader(SIGNATURE_HEADER))?;
    let expected = B64
        .decode(sig.trim())
        .map_err(|_| AuthError::MalformedHeader(SIGNATURE_HEADER))?;
    let url = secrets.notification_url.as_bytes();
    if secrets
        .signature_key
        .values()
        .any(|k| super::signing::verify_hmac(k.as_bytes(), &[url, body], &expected))
    {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

/// Extracts `event_id` and maps the event type.
pub fn interpret(body: &[u8]) -> Result<Interpreted, Malformed> {
    let json = parse_json(body)?;
    let delivery_key = json
        .get("event_id")
        .and_then(Value::as_str)
        .ok_or_else(|| Malformed("missing event_id".into()))?
        .to_owned();
    let kind = json.get("type").and_then(Value::as_str).unwrap_or_default();
    let interpretation = match kind {
        "payment.created" | "payment.updated" => {
            map_payment(&json).unwrap_or_else(Interpretation::Unmappable)
        }
        "webhooks.test_notification" => Interpretation::Ignored("test notification".into()),
        other => Interpretation::Ignored(format!(
            "event type {:?} is not acted on",
            other.chars().take(64).collect::<String>()
        )),
    };
    Ok(Interpreted {
        delivery_key,
        interpretation,
    })
}

fn map_payment(event: &Value) -> MapResult<Interpretation> {
    let p = event
        .pointer("/data/object/payment")
        .ok_or("no data.object.payment")?;
    let status = p
        .get("status")
        .and_then(Value::as_str)
        .ok_or("payment has no status")?;
    if status != "COMPLETED" {
        return Ok(Interpretation::Ignored(format!(
            "payment status {}",
            status.chars().take(32).collect::<String>()
        )));
    }
    let id = p
        .get("id")
        .and_then(Value::as_str)
        .ok_or("payment has no id")?;
    let location = p
        .get("location_id")
        .and_then(Value::as_str)
        .ok_or("payment has no location_id")?;
    let money = p
        .get("total_money")
        .or_else(|| p.get("amount_money"))
        .ok_or("payment has no amount_money")?;
    let currency = Currency::parse(
        money
            .get("currency")
            .and_then(Value::as_str)
            .ok_or("amount has no currency")?,
    )
    .map_err(|e| e.to_string())?;
    let minor = money
        .get("amount")
        .and_then(Value::as_i64)
        .ok_or("amount is not an integer of minor units")?;
    let member_id = match p.get("customer_id").and_then(Value::as_str) {
        Some(c) => Some(MemberId::parse(format!("square:{c}")).map_err(|e| e.to_string())?),
        None => None,
    };
    let occurred_at = timestamp(
        p.get("created_at").or_else(|| p.get("updated_at")),
        "payment.created_at",
    )?;
    Ok(Interpretation::Event(
        CanonicalEvent::SaleAwaitingEnrichment(PendingSale {
            sale_id: SaleId::parse(format!("square:{id}")).map_err(|e| e.to_string())?,
            payment_id: id.to_owned(),
            order_id: p.get("order_id").and_then(Value::as_str).map(str::to_owned),
            store_id: StoreId::parse(format!("square:{location}")).map_err(|e| e.to_string())?,
            member_id,
            amount: Money::from_minor(minor, currency),
            occurred_at,
            source: Source {
                vendor: Vendor::Square,
                external_id: id.to_owned(),
                channel: p
                    .get("source_type")
                    .and_then(Value::as_str)
                    .map(|s| s.chars().take(32).collect()),
            },
        }),
    ))
}
