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
//! - `sale.update` payloads are API 0.9/1.0 register sales (X-Series docs, "Webhooks - Example
//!   Payloads", <https://x-series-api.lightspeedhq.com/docs/webhooks_example_payloads>; statuses from
//!   "Statuses", <https://x-series-api.lightspeedhq.com/docs/sales_statuses>: a CLOSED sale only ever
//!   becomes VOIDED; returns from "Returns", <https://x-series-api.lightspeedhq.com/docs/sales_returns>,
//!   and the 2021-08 changelog: `return_for` holds the id of the sale being returned).
//!   Other statuses (SAVED, LAYBY, ONACCOUNT…) and other types are acknowledged and ignored.
//! - Store: the documented example carries `register_id` and no `outlet_id`. The store is
//!   `lightspeed:{outlet_id}` when the payload names the outlet, else `lightspeed:{outlet}` from the
//!   configured register map (`LIGHTSPEED_REGISTERS`, `{"register_id": "outlet_id"}`), else the
//!   register itself, `lightspeed-register:{register_id}`: a sale is never quarantined for an unmapped
//!   register (its stock and sales are kept under the register until an operator maps it).
//! - Precision: `price` (the unit price after the line's discount, tax excluded) and `tax` (unit tax)
//!   are computed by Lightspeed with 5 decimals (`"56.52174"` + `"8.47826"` = 65.00000); they are kept
//!   exactly as [`VendorAmount`], never refused for their decimals and never floats. The line total
//!   with tax is `round((price + tax) x quantity)` to the currency's minor unit, half away from zero,
//!   once per line. X-Series does not document its rounding; its client-API example
//!   (<https://x-series-api.lightspeedhq.com/docs/client_api_sale_hooks>: `2.60870` + `0.39131` to pay
//!   `3.00`) is consistent with it, and the reconciliation below catches any disagreement. The
//!   canonical line has the unit price with tax rounded, and the difference between that times the
//!   quantity and the exact line total as its `discount` (a rounding adjustment, usually zero).
//! - Reconciliation: the sum of the line totals must equal `round(totals.total_price +
//!   totals.total_tax)`, `totals.total_payment` and the sum of `register_sale_payments[].amount`, to the
//!   minor unit; payments and paid totals are money that moved and must be exact in the currency (more
//!   decimals is unmappable). A mismatch is unmappable (quarantined), never guessed.
//! - Returns: a CLOSED sale with `return_for` and negative quantities -> [`Return`] `lightspeed:{id}`
//!   of the sale `lightspeed:{return_for}`, quantities positive, restocked (X-Series returns put the
//!   units back into inventory). An exchange (positive and negative lines) is one [`Sale`]
//!   (`sale#lightspeed:{id}`) of the positive lines and one [`Return`] (`return#lightspeed:{id}`) of the
//!   negative lines, captured together from the one delivery. Negative lines without `return_for` are
//!   unmappable.
//! - Voids: a VOIDED version of a sale we captured CLOSED is a [`Return`] of every line,
//!   `lightspeed:{id}:void`, restocked; a VOIDED sale never captured (a parked sale voided) is ignored
//!   with the reason. A VOIDED return or exchange is unmappable (an operator decides).
//! - Exactly once: fact keys derive from the sale id (`sale#lightspeed:{id}`, `return#lightspeed:{id}`,
//!   `return#lightspeed:{id}:void`), so redeliveries and later versions of the same sale are duplicates.
//! - Amounts are JSON numbers or strings, converted exactly; the payload carries no currency, so the
//!   retailer's currency comes from configuration (`LIGHTSPEED_CURRENCY`) unless the payload has one.
//! - SKU: the line's `sku` when present; otherwise `lightspeed-product:{product_id}` (resolvable later
//!   from the catalogue); a line with neither is unmappable.

use super::{
    AuthError, Interpretation, Interpreted, Malformed, MapResult, MappingConfig, decimal_text,
    header, id_text,
};
use crate::ids::{MemberId, ReturnId, SaleId, Sku, StoreId};
use crate::model::{CanonicalEvent, Quantity, Return, ReturnLine, Sale, SaleLine, Source, Vendor};
use crate::money::{Currency, Money, VendorAmount};
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

fn sale_date(v: Option<&Value>, field: &str) -> MapResult<DateTime<Utc>> {
    let text = v
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing {field}"))?;
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    // API 0.9/1.0 payloads write UTC as "YYYY-MM-DD HH:MM:SS".
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .map(|n| n.and_utc())
        .map_err(|_| format!("{field} is not a timestamp"))
}

/// A vendor-computed amount (unit price, unit tax): up to 5 decimals, kept exactly.
fn vendor_amount(obj: &Value, field: &str, default_zero: bool) -> MapResult<VendorAmount> {
    match obj.get(field) {
        None | Some(Value::Null) if default_zero => Ok(VendorAmount::ZERO),
        None | Some(Value::Null) => Err(format!("missing amount {field}")),
        Some(v) => {
            let text = decimal_text(v).ok_or_else(|| format!("{field} is not an amount"))?;
            VendorAmount::parse(&text).map_err(|e| format!("{field}: {e}"))
        }
    }
}

/// An amount money actually moved (a payment, a paid total): exact in the currency's minor unit.
fn paid_amount(obj: &Value, field: &str, currency: Currency) -> MapResult<Money> {
    vendor_amount(obj, field, false)?
        .exact_in(currency)
        .map_err(|e| format!("{field}: {e}"))
}

/// A signed whole quantity: negative on returns (`-1`, `"-1"`, `"-1.00000"`), never zero.
fn signed_quantity(v: Option<&Value>) -> MapResult<i64> {
    let text = v
        .and_then(decimal_text)
        .ok_or("missing or non-numeric quantity")?;
    let q = VendorAmount::parse(&text)
        .ok()
        .and_then(VendorAmount::whole)
        .ok_or_else(|| {
            format!(
                "quantity {:?} is not a whole number",
                text.chars().take(24).collect::<String>()
            )
        })?;
    if q == 0 || q.unsigned_abs() > u64::from(Quantity::MAX) {
        return Err(format!(
            "quantity must be a whole number between 1 and {} either way, got {q}",
            Quantity::MAX
        ));
    }
    Ok(q)
}

/// One `register_sale_products` entry, with the vendor's precision kept and its total made exact.
struct Line {
    line_id: String,
    sku: Sku,
    /// Signed: negative lines are returned.
    quantity: i64,
    /// `price + tax`, 5 decimals: the unit price with tax, after the line's discount.
    unit_with_tax: VendorAmount,
    /// `tax x quantity`, 5 decimals.
    tax: VendorAmount,
    /// `round((price + tax) x quantity)` in minor units, signed.
    total: Money,
}

impl Line {
    fn parse(i: usize, item: &Value, currency: Currency) -> MapResult<Line> {
        let at = |e: String| format!("line {i}: {e}");
        let quantity = signed_quantity(item.get("quantity")).map_err(at)?;
        let sku = match item
            .get("sku")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(sku) => Sku::parse(sku).map_err(|e| at(e.to_string()))?,
            None => {
                let product = id_text(item.get("product_id"))
                    .ok_or_else(|| at("no sku and no product_id".into()))?;
                Sku::parse(format!("lightspeed-product:{product}"))
                    .map_err(|e| at(e.to_string()))?
            }
        };
        let price = vendor_amount(item, "price", false).map_err(at)?;
        let unit_tax = vendor_amount(item, "tax", true).map_err(at)?;
        let unit_with_tax = price.checked_add(unit_tax).map_err(|e| at(e.to_string()))?;
        let exact = unit_with_tax
            .checked_mul(quantity)
            .map_err(|e| at(e.to_string()))?;
        Ok(Line {
            line_id: id_text(item.get("id")).unwrap_or_else(|| i.to_string()),
            sku,
            quantity,
            unit_with_tax,
            tax: unit_tax
                .checked_mul(quantity)
                .map_err(|e| at(e.to_string()))?,
            total: exact.round_to(currency).map_err(|e| at(e.to_string()))?,
        })
    }

    fn units(&self) -> MapResult<Quantity> {
        Quantity::new(self.quantity.abs()).map_err(|e| e.to_string())
    }

    fn sale_line(&self, currency: Currency) -> MapResult<SaleLine> {
        let quantity = self.units()?;
        let unit_price = self
            .unit_with_tax
            .round_to(currency)
            .map_err(|e| e.to_string())?;
        // The exact line total is the reference: what rounding the unit price adds or takes is the
        // line's adjustment, so unit_price x quantity - discount == total, to the minor unit.
        let gross = unit_price
            .checked_mul(i64::from(quantity.get()))
            .map_err(|e| e.to_string())?;
        Ok(SaleLine {
            line_id: self.line_id.clone(),
            sku: Some(self.sku.clone()),
            quantity,
            unit_price,
            discount: Money::from_minor(gross.minor - self.total.minor, currency),
        })
    }

    fn return_line(&self, currency: Currency) -> MapResult<ReturnLine> {
        Ok(ReturnLine {
            line_id: self.line_id.clone(),
            sku: Some(self.sku.clone()),
            quantity: self.units()?,
            // X-Series returns put the units back into the outlet's inventory.
            restock: true,
            refund: Money::from_minor(self.total.minor.abs(), currency),
        })
    }
}

fn sum(mut amounts: impl Iterator<Item = Money>, currency: Currency) -> MapResult<Money> {
    amounts.try_fold(Money::zero(currency), |acc, m| {
        acc.checked_add(m).map_err(|e| e.to_string())
    })
}

/// The store of a sale: its `outlet_id`, else the outlet configured for its register, else the register
/// itself as a store of its own (`lightspeed-register:{register_id}`).
fn store_of(s: &Value, config: &MappingConfig) -> MapResult<StoreId> {
    let text = match (id_text(s.get("outlet_id")), id_text(s.get("register_id"))) {
        (Some(outlet), _) => format!("lightspeed:{outlet}"),
        (None, Some(register)) => match config.lightspeed_registers.get(&register) {
            Some(outlet) => format!("lightspeed:{outlet}"),
            None => format!("lightspeed-register:{register}"),
        },
        (None, None) => return Err("sale has neither outlet_id nor register_id".into()),
    };
    StoreId::parse(text).map_err(|e| e.to_string())
}

/// What every fact of one sale payload shares.
struct Header {
    store_id: StoreId,
    occurred_at: DateTime<Utc>,
    source: Source,
    member_id: Option<MemberId>,
    currency: Currency,
}

fn map_sale(s: &Value, id: &str, config: &MappingConfig) -> MapResult<Interpretation> {
    let status = s
        .get("status")
        .and_then(Value::as_str)
        .ok_or("sale has no status")?;
    if status != "CLOSED" && status != "VOIDED" {
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
    let lines = items
        .iter()
        .enumerate()
        .map(|(i, item)| Line::parse(i, item, currency))
        .collect::<MapResult<Vec<Line>>>()?;
    let sale_id = SaleId::parse(format!("lightspeed:{id}")).map_err(|e| e.to_string())?;
    let occurred_at = sale_date(s.get("sale_date"), "sale_date")?;
    let header = Header {
        store_id: store_of(s, config)?,
        occurred_at,
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
    };
    if status == "VOIDED" {
        return map_void(s, &sale_id, header, &lines);
    }
    reconcile(s, &lines, currency)?;
    let (returned, sold): (Vec<&Line>, Vec<&Line>) = lines.iter().partition(|l| l.quantity < 0);
    let original = match id_text(s.get("return_for")) {
        Some(r) => Some(SaleId::parse(format!("lightspeed:{r}")).map_err(|e| e.to_string())?),
        None if !returned.is_empty() => {
            return Err("negative quantity without return_for: a return must name its sale".into());
        }
        None => None,
    };
    let mut events = Vec::with_capacity(2);
    if !sold.is_empty() {
        events.push(CanonicalEvent::SaleCompleted(Sale {
            sale_id: sale_id.clone(),
            store_id: header.store_id.clone(),
            occurred_at: header.occurred_at,
            source: header.source.clone(),
            member_id: header.member_id.clone(),
            currency,
            lines: sold
                .iter()
                .map(|l| l.sale_line(currency))
                .collect::<MapResult<_>>()?,
            total: sum(sold.iter().map(|l| l.total), currency)?,
            tax: sold
                .iter()
                .try_fold(VendorAmount::ZERO, |acc, l| acc.checked_add(l.tax))
                .and_then(|t| t.round_to(currency))
                .map_err(|e| e.to_string())?,
        }));
    }
    if !returned.is_empty() {
        events.push(CanonicalEvent::ReturnCompleted(Return {
            // One return per Lightspeed sale: the return sale's own id.
            return_id: ReturnId::parse(format!("lightspeed:{id}")).map_err(|e| e.to_string())?,
            sale_id: original,
            store_id: header.store_id,
            occurred_at: header.occurred_at,
            source: header.source,
            member_id: header.member_id,
            currency,
            lines: returned
                .iter()
                .map(|l| l.return_line(currency))
                .collect::<MapResult<_>>()?,
            total_refund: Money::from_minor(
                sum(returned.iter().map(|l| l.total), currency)?.minor.abs(),
                currency,
            ),
        }));
    }
    Ok(match events.len() {
        1 => Interpretation::Event(events.remove(0)),
        _ => Interpretation::Events(events),
    })
}

/// Checks that the lines, the sale's totals and its payments agree exactly, in minor units. The sum of
/// the rounded line totals is the reference; `totals.total_price + totals.total_tax` (5 decimals) must
/// round to it, and the payments (money that moved: exact in minor units) must add up to it.
fn reconcile(s: &Value, lines: &[Line], currency: Currency) -> MapResult<()> {
    let net = sum(lines.iter().map(|l| l.total), currency)?;
    if let Some(totals) = s.get("totals").filter(|t| t.get("total_price").is_some()) {
        let total = vendor_amount(totals, "total_price", false)?
            .checked_add(vendor_amount(totals, "total_tax", true)?)
            .and_then(|t| t.round_to(currency))
            .map_err(|e| e.to_string())?;
        if total != net {
            return Err(format!(
                "sale total {total} does not reconcile with its lines ({net})"
            ));
        }
        if totals.get("total_payment").is_some_and(|v| !v.is_null()) {
            let paid = paid_amount(totals, "total_payment", currency)?;
            if paid != net {
                return Err(format!(
                    "total_payment {paid} does not match the sale total {net}"
                ));
            }
        }
    }
    if let Some(payments) = s
        .get("register_sale_payments")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
    {
        let paid = payments
            .iter()
            .enumerate()
            .map(|(i, p)| {
                paid_amount(p, "amount", currency).map_err(|e| format!("payment {i}: {e}"))
            })
            .collect::<MapResult<Vec<Money>>>()?;
        let paid = sum(paid.into_iter(), currency)?;
        if paid != net {
            return Err(format!("payments {paid} do not match the sale total {net}"));
        }
    }
    Ok(())
}

/// A `VOIDED` version of a closed sale: a return of every line, keyed `lightspeed:{id}:void` so every
/// version and redelivery of the void reverses once, and captured only if the sale was captured.
fn map_void(
    s: &Value,
    sale_id: &SaleId,
    header: Header,
    lines: &[Line],
) -> MapResult<Interpretation> {
    if lines.iter().any(|l| l.quantity < 0) {
        return Err(
            "a VOIDED return or exchange is not reversed automatically: an operator decides".into(),
        );
    }
    let currency = header.currency;
    let occurred_at = match s.get("updated_at") {
        Some(v) if !v.is_null() => sale_date(Some(v), "updated_at")?,
        _ => header.occurred_at,
    };
    let event = CanonicalEvent::ReturnCompleted(Return {
        return_id: ReturnId::parse(format!("{sale_id}:void")).map_err(|e| e.to_string())?,
        sale_id: Some(sale_id.clone()),
        store_id: header.store_id,
        occurred_at,
        source: header.source,
        member_id: header.member_id,
        currency,
        lines: lines
            .iter()
            .map(|l| l.return_line(currency))
            .collect::<MapResult<_>>()?,
        total_refund: sum(lines.iter().map(|l| l.total), currency)?,
    });
    Ok(Interpretation::Reversal {
        event,
        requires: format!("sale#{sale_id}"),
        otherwise: format!(
            "VOIDED sale {sale_id} was never captured as CLOSED: nothing to reverse"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> MappingConfig {
        MappingConfig {
            lightspeed_currency: Currency::parse("NZD").ok(),
            ..MappingConfig::default()
        }
    }

    fn sale(lines: Value, totals: Value) -> Value {
        json!({"id": "s1", "register_id": "r1", "sale_date": "2026-01-15 10:00:00", "status": "CLOSED",
               "version": 1, "register_sale_products": lines, "totals": totals})
    }

    #[test]
    fn five_decimal_lines_round_once_per_line_and_reconcile() {
        // The client-API example: 2.60870 + 0.39131 = 3.00001 -> 3.00; three units 9.00003 -> 9.00.
        let s = sale(
            json!([{"product_id": "p", "quantity": "3", "price": "2.60870", "tax": "0.39131"}]),
            json!({"total_price": "7.82610", "total_tax": "1.17393", "total_payment": "9.00"}),
        );
        let Ok(Interpretation::Event(CanonicalEvent::SaleCompleted(sale))) =
            map_sale(&s, "s1", &config())
        else {
            panic!("sale")
        };
        assert_eq!((sale.total.minor, sale.tax.minor), (900, 117));
        let l = &sale.lines[0];
        assert_eq!(
            (l.unit_price.minor, l.quantity.get(), l.discount.minor),
            (300, 3, 0)
        );
        assert_eq!(sale.store_id.as_str(), "lightspeed-register:r1");
    }

    #[test]
    fn a_rounding_residue_lands_in_the_line_discount_so_the_line_stays_exact() {
        // 0.33333 + 0.05 = 0.38333 a unit -> 0.38; seven units 2.68331 -> 2.68; 7 x 0.38 = 2.66.
        let s = sale(
            json!([{"product_id": "p", "quantity": 7, "price": "0.33333", "tax": "0.05"}]),
            json!({"total_price": "2.33331", "total_tax": "0.35"}),
        );
        let Ok(Interpretation::Event(CanonicalEvent::SaleCompleted(sale))) =
            map_sale(&s, "s1", &config())
        else {
            panic!("sale")
        };
        let l = &sale.lines[0];
        assert_eq!(
            (l.unit_price.minor, l.discount.minor, sale.total.minor),
            (38, -2, 268)
        );
        assert_eq!(
            l.unit_price.minor * i64::from(l.quantity.get()) - l.discount.minor,
            sale.total.minor
        );
    }

    #[test]
    fn an_exchange_is_two_facts_and_a_void_requires_the_sale() {
        let mut s = sale(
            json!([{"product_id": "a", "quantity": 1, "price": "10", "tax": "1.5"},
                   {"product_id": "b", "quantity": -2, "price": "5", "tax": "0.75"}]),
            json!({"total_price": "0", "total_tax": "0"}),
        );
        s["return_for"] = json!("s0");
        let Ok(Interpretation::Events(events)) = map_sale(&s, "s1", &config()) else {
            panic!("exchange")
        };
        let keys: Vec<String> = events.iter().map(CanonicalEvent::record_key).collect();
        assert_eq!(keys, ["sale#lightspeed:s1", "return#lightspeed:s1"]);
        s["status"] = json!("VOIDED");
        assert!(map_sale(&s, "s1", &config()).is_err(), "a voided exchange");
        s["register_sale_products"] =
            json!([{"product_id": "a", "quantity": 1, "price": "10", "tax": "1.5"}]);
        let Ok(Interpretation::Reversal {
            event, requires, ..
        }) = map_sale(&s, "s1", &config())
        else {
            panic!("void")
        };
        assert_eq!(requires, "sale#lightspeed:s1");
        assert_eq!(event.record_key(), "return#lightspeed:s1:void");
    }
}
