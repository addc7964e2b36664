//! Shopify webhooks.
//!
//! - Signature: `X-Shopify-Hmac-Sha256` (newer deliveries: `Shopify-Hmac-Sha256`; both accepted) is the
//!   base64 HMAC-SHA256 of the raw body keyed with the app's client secret as UTF-8 bytes
//!   (shopify.dev, "Verify webhooks").
//! - Delivery key: `X-Shopify-Event-Id`, shared by every delivery of one merchant action, so retries and
//!   duplicate subscriptions dedupe; else `X-Shopify-Webhook-Id` (per delivery).
//! - Amounts are decimal strings (or numbers) in the order's `currency`, which the REST Order resource
//!   documents as the shop currency; ids are numbers.
//!
//! # Topics (`X-Shopify-Topic`)
//!
//! An order becomes a sale when it is paid (shopify.dev, REST Admin API, Order resource,
//! `financial_status`; Webhooks reference, topics `orders/create`, `orders/paid`):
//!
//! - `orders/paid` -> [`Sale`], whatever `financial_status` it shows by then.
//! - `orders/create` -> [`Sale`] when already paid (`paid`, or `partially_refunded`/`refunded`, which
//!   imply a capture): POS orders are paid at the till. `pending`, `authorized`, `partially_paid`,
//!   `unpaid`, `voided`, `expired` -> ignored (stored, answered 200 `ignored`): the sale comes with
//!   `orders/paid`. Another or a missing `financial_status` is unmappable (quarantined).
//!   Both carry the same sale id (`shopify:{order id}`), so a paid `orders/create` followed by
//!   `orders/paid` is one sale: the second is a duplicate of the stored fact.
//! - `orders/updated` -> ignored: every edit sends it; payment is signalled by `orders/paid`.
//! - `refunds/create` -> [`Return`] (the Refund resource). Its id is the return id, so the same refund
//!   is never counted twice, whichever delivery carries it.
//! - `orders/cancelled` -> ignored (see below); every other topic is acknowledged and ignored.
//! - `"test": true` orders (and refunds whose transactions are all `test`) are ignored unless
//!   [`MappingConfig::shopify_accept_test_orders`] (`SHOPIFY_ACCEPT_TEST_ORDERS=true`).
//!
//! # Discounts
//!
//! A line's discount is the sum of its `discount_allocations[].amount` (shopify.dev, Order resource,
//! `line_items.discount_allocations`; GraphQL Admin `DiscountAllocation`): discount codes, automatic and
//! order-level (`allocation_method: across`) discounts all reach the line there, while the legacy
//! `total_discount` is often `"0.00"` and, when set, repeats the same allocations. So `total_discount` is
//! read only when a line has no allocations, never added to them. Each allocation is read from
//! `amount_set.shop_money` when present (its currency must be the order's `currency`), else `amount`,
//! both in the shop currency; `presentment_money` (the customer's currency) is never used, because
//! `price`, `total_price` and the refunds we map are in the shop currency too. Shipping discounts
//! (`discount_applications[].target_type: shipping_line`) are allocated on `shipping_lines[]`, which we
//! do not map to lines. Hence, per line, `price × quantity − discount` sums to Shopify's
//! `subtotal_price` ("after discounts, before shipping, duties, taxes and tips"; tax-inclusive when
//! `taxes_included`, because `price` is then tax-inclusive too). Shopify's own documented example order
//! (id 450789469) shows `subtotal_price` 597.00 next to 10.00 of allocations and a `total_price` of 598.94
//! = 587.00 + 11.94 tax: its lines reconcile with the total, and its `subtotal_price` is the one figure that
//! contradicts its definition (tested in this module).
//!
//! # Cancellations
//!
//! Cancelling an order with a restock creates a Refund whose `refund_line_items[].restock_type` is
//! `cancel` ("the refund line item was canceled; use this when restocking unfulfilled line items",
//! GraphQL Admin `RefundLineItemRestockType`), delivered as `refunds/create`; the payment goes back as its
//! `refund` transaction (`orderCancel`: "options for refunding, restocking"). `orders/cancelled` then
//! carries the order with the same refund in `refunds[]`. The refund is the single source of truth:
//! `refunds/create` is mapped, `orders/cancelled` is acknowledged without effect, so a cancellation is
//! counted once. A refund that moved no money and only cancels lines (no successful `refund`
//! transaction, every line `cancel`) is the cancellation of an order that was never paid, hence never a
//! sale here: it is ignored, so it neither restocks what was never taken from stock nor reverses
//! points never given. Known gap: a paid order cancelled while the merchant keeps the payment
//! ("refund later") is indistinguishable in the refund and is ignored too: its sale stands (the money was
//! kept) and its items are not restocked by us.

use super::{
    AuthError, Interpretation, Interpreted, Malformed, MapResult, MappingConfig, header, id_text,
    money_field, parse_json, timestamp,
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
pub fn interpret(
    headers: &HeaderMap,
    body: &[u8],
    config: &MappingConfig,
) -> Result<Interpreted, Malformed> {
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
    let interpretation =
        interpret_topic(topic, &json, config).unwrap_or_else(Interpretation::Unmappable);
    Ok(Interpreted {
        delivery_key,
        interpretation,
    })
}

fn interpret_topic(topic: &str, json: &Value, config: &MappingConfig) -> MapResult<Interpretation> {
    let sale =
        |o: &Value| map_order(o).map(|s| Interpretation::Event(CanonicalEvent::SaleCompleted(s)));
    match topic {
        "orders/create" | "orders/paid" => {
            if is_test_order(json)? && !config.shopify_accept_test_orders {
                return Ok(Interpretation::Ignored(
                    "test order (SHOPIFY_ACCEPT_TEST_ORDERS is off)".into(),
                ));
            }
            if topic == "orders/create"
                && let Some(reason) = not_paid_yet(json)?
            {
                return Ok(Interpretation::Ignored(reason));
            }
            sale(json)
        }
        "refunds/create" => {
            if is_test_refund(json) && !config.shopify_accept_test_orders {
                return Ok(Interpretation::Ignored(
                    "refund of test transactions (SHOPIFY_ACCEPT_TEST_ORDERS is off)".into(),
                ));
            }
            if cancels_without_payment(json) {
                return Ok(Interpretation::Ignored(
                    "cancellation of an order that was never paid: no sale to reverse".into(),
                ));
            }
            map_refund(json).map(|r| Interpretation::Event(CanonicalEvent::ReturnCompleted(r)))
        }
        "orders/updated" => Ok(Interpretation::Ignored(
            "orders/updated is not acted on: an order becomes a sale with orders/paid".into(),
        )),
        "orders/cancelled" => Ok(Interpretation::Ignored(
            "orders/cancelled is not acted on: a cancellation takes effect through its refunds/create"
                .into(),
        )),
        other => Ok(Interpretation::Ignored(format!(
            "topic {} is not acted on",
            other.chars().take(64).collect::<String>()
        ))),
    }
}

/// `test` is a boolean; absent or null is a real order.
fn is_test_order(o: &Value) -> MapResult<bool> {
    match o.get("test") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err("test is not a boolean".into()),
    }
}

/// A refund carries no `test` flag of its own: it is a test refund when every transaction is one.
fn is_test_refund(r: &Value) -> bool {
    r.get("transactions")
        .and_then(Value::as_array)
        .is_some_and(|t| {
            !t.is_empty()
                && t.iter()
                    .all(|t| t.get("test").and_then(Value::as_bool) == Some(true))
        })
}

/// Why an `orders/create` is not a sale yet, or `None` when it is paid.
fn not_paid_yet(o: &Value) -> MapResult<Option<String>> {
    match o.get("financial_status").and_then(Value::as_str) {
        // Refunded states imply a capture; their refunds arrive as refunds/create.
        Some("paid" | "partially_refunded" | "refunded") => Ok(None),
        Some(
            s @ ("pending" | "authorized" | "partially_paid" | "unpaid" | "voided" | "expired"),
        ) => Ok(Some(format!(
            "order not paid (financial_status {s}): it becomes a sale with orders/paid"
        ))),
        Some(other) => Err(format!(
            "unknown financial_status {}",
            other.chars().take(32).collect::<String>()
        )),
        None => Err("order has no financial_status".into()),
    }
}

/// A refund that only cancels lines and returns no money: the cancellation of an unpaid order.
fn cancels_without_payment(r: &Value) -> bool {
    let lines = r
        .get("refund_line_items")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let all_cancel = !lines.is_empty()
        && lines
            .iter()
            .all(|l| l.get("restock_type").and_then(Value::as_str) == Some("cancel"));
    let money_back = r
        .get("transactions")
        .and_then(Value::as_array)
        .is_some_and(|t| {
            t.iter().any(|t| {
                t.get("kind").and_then(Value::as_str) == Some("refund")
                    && t.get("status").and_then(Value::as_str) == Some("success")
            })
        });
    all_cancel && !money_back
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

/// One allocation, in the shop currency: `amount_set.shop_money` when present, else `amount`.
fn allocation_amount(a: &Value, currency: Currency) -> MapResult<Money> {
    let amount = match a.pointer("/amount_set/shop_money") {
        Some(shop) => {
            let code = shop.get("currency_code").and_then(Value::as_str);
            if code != Some(currency.code()) {
                return Err(format!(
                    "discount allocation in {}, order in {currency}",
                    code.unwrap_or("no currency")
                ));
            }
            money_field(shop, "amount", currency, false)?
        }
        None => money_field(a, "amount", currency, false)?,
    };
    if amount.minor < 0 {
        return Err("negative discount allocation".into());
    }
    Ok(amount)
}

/// The line's discount: its allocations, or the legacy `total_discount` when it has none (never both:
/// `total_discount` is the sum of the same allocations).
fn line_discount(item: &Value, currency: Currency) -> MapResult<Money> {
    match item.get("discount_allocations") {
        Some(Value::Array(allocations)) if !allocations.is_empty() => {
            let mut sum = Money::zero(currency);
            for a in allocations {
                sum = sum
                    .checked_add(allocation_amount(a, currency)?)
                    .map_err(|e| e.to_string())?;
            }
            Ok(sum)
        }
        None | Some(Value::Null | Value::Array(_)) => {
            money_field(item, "total_discount", currency, true)
        }
        Some(_) => Err("discount_allocations is not a list".into()),
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
        let unit_price =
            money_field(item, "price", currency, false).map_err(|e| format!("line {i}: {e}"))?;
        let discount = line_discount(item, currency).map_err(|e| format!("line {i}: {e}"))?;
        let gross = unit_price
            .checked_mul(i64::from(quantity.get()))
            .map_err(|e| format!("line {i}: {e}"))?;
        if discount.minor > gross.minor {
            return Err(format!(
                "line {i}: discount {discount} exceeds the line's {gross}"
            ));
        }
        lines.push(SaleLine {
            line_id: id_text(item.get("id")).unwrap_or_else(|| i.to_string()),
            sku: sku_of(item).map_err(|e| format!("line {i}: {e}"))?,
            quantity,
            unit_price,
            discount,
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn sale_of(o: &Value) -> Sale {
        match map_order(o) {
            Ok(s) => s,
            Err(e) => panic!("unmappable: {e}"),
        }
    }

    /// Sum over lines of unit price × quantity − discount, in minor units.
    fn net_of_lines(s: &Sale) -> i64 {
        s.lines
            .iter()
            .map(|l| l.unit_price.minor * i64::from(l.quantity.get()) - l.discount.minor)
            .sum()
    }

    fn minor(o: &Value, field: &str) -> i64 {
        let currency = Currency::parse(o["currency"].as_str().unwrap_or_default());
        match currency.map(|c| money_field(o, field, c, false)) {
            Ok(Ok(m)) => m.minor,
            other => panic!("{field}: {other:?}"),
        }
    }

    fn doc_allocation(amount: &str) -> Value {
        json!({
            "amount": amount,
            "discount_application_index": 0,
            "amount_set": {
                "shop_money": {"amount": amount, "currency_code": "USD"},
                "presentment_money": {"amount": amount, "currency_code": "USD"}
            }
        })
    }

    /// Shopify's documented example order (REST Admin API, Order resource, order 450789469), written
    /// by hand with the fields we map: three 199.00 iPods, the `TENOFF` code (10.00 fixed, `across`)
    /// allocated 3.34 / 3.33 / 3.33 while each `total_discount` stays "0.00".
    fn documented_example_order() -> Value {
        let line = |id: u64, sku: &str, allocation: &str| {
            json!({
                "id": id, "variant_id": 49_148_385, "sku": sku, "title": "IPod Nano - 8gb",
                "quantity": 1, "price": "199.00", "total_discount": "0.00",
                "discount_allocations": [doc_allocation(allocation)],
                "tax_lines": [{"title": "State Tax", "price": "3.98", "rate": 0.06}]
            })
        };
        json!({
            "id": 450_789_469,
            "name": "#1001",
            "created_at": "2008-01-10T11:00:00-05:00",
            "currency": "USD",
            "presentment_currency": "USD",
            "financial_status": "partially_refunded",
            "test": false,
            "taxes_included": false,
            "location_id": null,
            "source_name": "web",
            "customer": {"id": 207_119_551},
            "discount_applications": [{
                "type": "discount_code", "code": "TENOFF", "value": "10.0",
                "value_type": "fixed_amount", "allocation_method": "across",
                "target_selection": "all", "target_type": "line_item"
            }],
            "discount_codes": [{"code": "TENOFF", "amount": "10.00", "type": "fixed_amount"}],
            "line_items": [
                line(466_157_049, "IPOD2008GREEN", "3.34"),
                line(518_995_019, "IPOD2008RED", "3.33"),
                line(703_073_504, "IPOD2008BLACK", "3.33")
            ],
            "shipping_lines": [],
            "subtotal_price": "597.00",
            "total_line_items_price": "597.00",
            "total_discounts": "10.00",
            "total_tax": "11.94",
            "total_price": "598.94"
        })
    }

    #[test]
    fn the_documented_example_order_gets_its_code_discount_on_the_lines() {
        let o = documented_example_order();
        let sale = sale_of(&o);
        let discounts: Vec<i64> = sale.lines.iter().map(|l| l.discount.minor).collect();
        assert_eq!(
            discounts,
            vec![334, 333, 333],
            "from the allocations, not total_discount"
        );
        assert_eq!(
            net_of_lines(&sale),
            minor(&o, "total_line_items_price") - minor(&o, "total_discounts")
        );
        // Tax-exclusive, no shipping: the lines reconcile with total_price − total_tax (587.00). The
        // example's subtotal_price (597.00) is the undiscounted figure, against its own definition.
        assert_eq!(
            net_of_lines(&sale),
            minor(&o, "total_price") - minor(&o, "total_tax")
        );
        assert_eq!(net_of_lines(&sale), 58_700);
    }

    #[test]
    fn allocations_are_read_in_the_shop_currency_and_checked() {
        let order = crate::samples::shopify_discounted_order(1);
        let sale = sale_of(&order);
        assert_eq!(
            sale.lines[0].discount.minor, 1651,
            "EUR shop money, not the USD presentment"
        );
        assert_eq!(net_of_lines(&sale), minor(&order, "subtotal_price"));

        // Without amount_set, `amount` (also shop money) is used.
        let mut plain = order.clone();
        for a in plain["line_items"][0]["discount_allocations"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if let Some(obj) = a.as_object_mut() {
                obj.remove("amount_set");
            }
        }
        assert_eq!(sale_of(&plain).lines[0].discount.minor, 1651);

        let mut foreign = order.clone();
        foreign["line_items"][1]["discount_allocations"][0]["amount_set"]["shop_money"]["currency_code"] =
            json!("USD");
        assert!(map_order(&foreign).is_err_and(|e| e.contains("USD")));
    }

    #[test]
    fn bad_allocations_are_unmappable_not_guessed() {
        let order = crate::samples::shopify_discounted_order(1);
        for (path, value) in [
            ("/line_items/1/discount_allocations", json!("2.95")),
            (
                "/line_items/1/discount_allocations/0/amount_set/shop_money/amount",
                json!("-2.95"),
            ),
            (
                "/line_items/1/discount_allocations/0/amount_set/shop_money/amount",
                json!("2.955"),
            ),
            (
                "/line_items/1/discount_allocations/0/amount_set/shop_money/amount",
                json!("25.01"),
            ),
        ] {
            let mut bad = order.clone();
            if let Some(slot) = bad.pointer_mut(path) {
                *slot = value.clone();
            }
            assert!(map_order(&bad).is_err(), "{path} = {value}");
        }
    }

    #[test]
    fn total_discount_is_the_fallback_when_a_line_has_no_allocations() {
        let mut order = crate::samples::shopify_order(1, 2);
        order["line_items"][0]["discount_allocations"] = json!([]);
        assert_eq!(sale_of(&order).lines[0].discount.minor, 200);
        if let Some(obj) = order["line_items"][0].as_object_mut() {
            obj.remove("discount_allocations");
        }
        assert_eq!(sale_of(&order).lines[0].discount.minor, 200);
    }

    #[test]
    fn shipping_discounts_stay_off_the_lines() {
        let order = crate::samples::shopify_discounted_order(1);
        let sale = sale_of(&order);
        let on_lines: i64 = sale.lines.iter().map(|l| l.discount.minor).sum();
        // total_discounts (27.90) includes the 4.90 free shipping allocated on the shipping line.
        assert_eq!(on_lines, minor(&order, "total_discounts") - 490);
    }

    fn cents(m: i64) -> String {
        format!("{}.{:02}", m / 100, m % 100)
    }

    proptest! {
        /// Any allocations, with or without amount_set, with total_discount repeating them or left at
        /// "0.00": the lines sum to the subtotal Shopify computes from the same figures.
        #[test]
        fn lines_after_discounts_sum_to_the_subtotal(
            lines in prop::collection::vec(
                (1_i64..50_000, 1_i64..6, prop::collection::vec(0_u32..=100, 0..4), any::<bool>(), any::<bool>()),
                1..6,
            )
        ) {
            let mut items = Vec::new();
            let mut subtotal = 0_i64;
            for (i, (price, qty, shares, legacy, with_set)) in lines.iter().enumerate() {
                let gross = price * qty;
                // Allocations never exceed the line (each share is a percentage of what remains).
                let mut left = gross;
                let mut allocations = Vec::new();
                for share in shares {
                    let amount = left * i64::from(*share) / 100;
                    left -= amount;
                    let mut a = json!({"amount": cents(amount), "discount_application_index": allocations.len()});
                    if *with_set {
                        a["amount_set"] = json!({
                            "shop_money": {"amount": cents(amount), "currency_code": "EUR"},
                            "presentment_money": {"amount": cents(amount * 2), "currency_code": "USD"}
                        });
                    }
                    allocations.push(a);
                }
                let discount = gross - left;
                subtotal += left;
                items.push(json!({
                    "id": i, "sku": format!("SKU-{i}"), "quantity": qty, "price": cents(*price),
                    "total_discount": if *legacy { cents(discount) } else { "0.00".into() },
                    "discount_allocations": allocations
                }));
            }
            let order = json!({
                "id": 1, "currency": "EUR", "created_at": "2026-01-15T10:00:00Z",
                "financial_status": "paid", "line_items": items,
                "subtotal_price": cents(subtotal), "total_price": cents(subtotal)
            });
            let sale = map_order(&order);
            prop_assert!(sale.is_ok(), "{:?}", sale);
            if let Ok(sale) = sale {
                prop_assert_eq!(net_of_lines(&sale), subtotal);
            }
        }
    }

    #[test]
    fn orders_create_is_a_sale_only_when_paid() {
        let config = MappingConfig::default();
        let mut order = crate::samples::shopify_order(1, 1);
        for (status, sale) in [
            ("paid", true),
            ("partially_refunded", true),
            ("pending", false),
            ("authorized", false),
            ("partially_paid", false),
            ("voided", false),
        ] {
            order["financial_status"] = json!(status);
            let got = interpret_topic("orders/create", &order, &config);
            assert_eq!(
                matches!(
                    got,
                    Ok(Interpretation::Event(CanonicalEvent::SaleCompleted(_)))
                ),
                sale,
                "{status}: {got:?}"
            );
            assert!(
                matches!(
                    interpret_topic("orders/paid", &order, &config),
                    Ok(Interpretation::Event(CanonicalEvent::SaleCompleted(_)))
                ),
                "orders/paid is a sale ({status})"
            );
        }
        order["financial_status"] = json!("settled");
        assert!(interpret_topic("orders/create", &order, &config).is_err());
        if let Some(obj) = order.as_object_mut() {
            obj.remove("financial_status");
        }
        assert!(interpret_topic("orders/create", &order, &config).is_err());
    }

    #[test]
    fn a_cancel_refund_counts_only_when_money_went_back() {
        let config = MappingConfig::default();
        let is_return = |r: &Value| {
            matches!(
                interpret_topic("refunds/create", r, &config),
                Ok(Interpretation::Event(CanonicalEvent::ReturnCompleted(_)))
            )
        };
        assert!(is_return(&crate::samples::shopify_cancel_refund(
            1, 2, true
        )));
        assert!(!is_return(&crate::samples::shopify_cancel_refund(
            1, 2, false
        )));
        let mut failed = crate::samples::shopify_cancel_refund(1, 2, true);
        failed["transactions"][0]["status"] = json!("failure");
        assert!(
            !is_return(&failed),
            "a failed refund transaction moved no money"
        );
        // A return that moves no money (e.g. store credit) is still a return: only cancellations are
        // read as unpaid.
        let mut returned = crate::samples::shopify_cancel_refund(1, 2, false);
        returned["refund_line_items"][0]["restock_type"] = json!("return");
        assert!(is_return(&returned));
    }
}
