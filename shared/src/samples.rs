//! Realistic vendor deliveries, signed with the dev secrets: the single source of the `events/` files,
//! of `pos-local send`/`load`, and of the unit tests. Payload shapes follow each vendor's documented
//! webhook bodies (trimmed to the fields we map plus a few we do not, as real bodies have).

use crate::capture::WebhookRequest;
use crate::model::Vendor;
use crate::secrets::dev_secrets;
use crate::vendors::signing;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// A delivery as a vendor would send it: route, headers, exact body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDelivery {
    /// Target vendor route.
    pub vendor: Vendor,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
}

/// The fixed instant the samples are signed at (Standard Webhooks timestamps); tests replaying
/// `events/` set their clock to it.
pub fn sample_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_768_471_200, 0).unwrap_or_default() // 2026-01-15T10:00:00Z
}

impl SignedDelivery {
    /// Sets (or replaces) a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Removes a header.
    pub fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self
    }

    /// Replaces the body without re-signing (a tampered delivery).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The header value, if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// As a capture request (what the HTTP edge would build).
    pub fn to_request(&self, correlation_id: &str) -> WebhookRequest {
        let mut headers = http::HeaderMap::new();
        for (n, v) in &self.headers {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(n.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                headers.append(n, v);
            }
        }
        WebhookRequest {
            method: http::Method::POST,
            vendor: self.vendor.as_str().to_owned(),
            headers,
            body: self.body.clone(),
            correlation_id: correlation_id.to_owned(),
        }
    }

    /// As an API Gateway HTTP API (payload format 2.0) proxy event, as the Lambda receives it. Bodies
    /// that are not UTF-8 are base64-encoded with `isBase64Encoded`, as API Gateway does.
    pub fn to_apigw_event(&self, request_id: &str) -> Value {
        use base64::Engine;
        let path = format!("/webhooks/{}", self.vendor.as_str());
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), Value::String(v.clone())))
            .collect();
        let (body, is_b64) = match std::str::from_utf8(&self.body) {
            Ok(text) => (text.to_owned(), false),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(&self.body),
                true,
            ),
        };
        let t = sample_time();
        json!({
            "version": "2.0",
            "routeKey": "POST /webhooks/{vendor}",
            "rawPath": path,
            "rawQueryString": "",
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "local",
                "domainName": "localhost",
                "domainPrefix": "localhost",
                "http": {
                    "method": "POST",
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": "pos-samples"
                },
                "requestId": request_id,
                "routeKey": "POST /webhooks/{vendor}",
                "stage": "$default",
                "time": t.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
                "timeEpoch": t.timestamp_millis()
            },
            "pathParameters": { "vendor": self.vendor.as_str() },
            "body": body,
            "isBase64Encoded": is_b64
        })
    }
}

fn shopify_key() -> String {
    dev_secrets()
        .shopify
        .and_then(|s| s.webhook_secret.current().map(str::to_owned))
        .unwrap_or_default()
}

/// A Shopify delivery of `topic` with `body`, signed with `secret` (the dev secret when `None`).
pub fn shopify(topic: &str, event_id: &str, body: &Value, secret: Option<&str>) -> SignedDelivery {
    let body = body.to_string().into_bytes();
    let key = secret.map_or_else(shopify_key, str::to_owned);
    SignedDelivery {
        vendor: Vendor::Shopify,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-shopify-topic".into(), topic.into()),
            (
                "x-shopify-hmac-sha256".into(),
                signing::shopify_signature(&key, &body),
            ),
            (
                "x-shopify-shop-domain".into(),
                "dev-store.myshopify.com".into(),
            ),
            ("x-shopify-api-version".into(), "2025-10".into()),
            ("x-shopify-webhook-id".into(), format!("wh-{event_id}")),
            ("x-shopify-event-id".into(), event_id.into()),
            (
                "x-shopify-triggered-at".into(),
                "2026-01-15T10:00:00.000Z".into(),
            ),
        ],
        body,
    }
}

/// A Shopify REST Order sold at the POS and paid at the till, with `lines` lines. The first line carries a
/// 2.00 discount code, as Shopify sends it: one `discount_allocations` entry plus the legacy
/// `total_discount` that repeats the same amount.
pub fn shopify_order(order_id: u64, lines: usize) -> Value {
    let items: Vec<Value> = (0..lines)
        .map(|i| {
            let allocations = if i == 0 {
                json!([{
                    "amount": "2.00",
                    "discount_application_index": 0,
                    "amount_set": {
                        "shop_money": {"amount": "2.00", "currency_code": "EUR"},
                        "presentment_money": {"amount": "2.00", "currency_code": "EUR"}
                    }
                }])
            } else {
                json!([])
            };
            json!({
                "id": 1_000_000 + i as u64,
                "variant_id": 2_000_000 + i as u64,
                "product_id": 3_000_000 + i as u64,
                "sku": format!("SKU-{:03}", i + 1),
                "title": format!("Item {}", i + 1),
                "quantity": 1 + (i % 3),
                "price": "19.99",
                "total_discount": if i == 0 { "2.00" } else { "0.00" },
                "discount_allocations": allocations,
                "taxable": true,
                "tax_lines": [{"title": "VAT", "price": "3.33", "rate": 0.2}]
            })
        })
        .collect();
    let units: u64 = (0..lines).map(|i| 1 + (i % 3) as u64).sum();
    let net = units * 1999 - 200;
    let net = format!("{}.{:02}", net / 100, net % 100);
    json!({
        "id": order_id,
        "name": format!("#{order_id}"),
        "created_at": "2026-01-15T11:00:00+01:00",
        "currency": "EUR",
        "presentment_currency": "EUR",
        "location_id": 655_441_491,
        "source_name": "pos",
        "test": false,
        "customer": {"id": 207_119_551, "email": "jane@example.com", "first_name": "Jane"},
        "discount_applications": [{
            "type": "discount_code", "code": "TWOOFF", "value": "2.00", "value_type": "fixed_amount",
            "allocation_method": "one", "target_selection": "explicit", "target_type": "line_item"
        }],
        "line_items": items,
        "shipping_lines": [],
        "subtotal_price": net,
        "total_discounts": "2.00",
        "total_price": net,
        "total_tax": "3.33",
        "taxes_included": true,
        "financial_status": "paid"
    })
}

/// One discount allocation in the shop currency (EUR) and a presentment currency (USD) at another
/// amount, so a mapper that reads the wrong one is caught.
fn shopify_allocation(index: u64, eur: &str, usd: &str) -> Value {
    json!({
        "amount": eur,
        "discount_application_index": index,
        "amount_set": {
            "shop_money": {"amount": eur, "currency_code": "EUR"},
            "presentment_money": {"amount": usd, "currency_code": "USD"}
        }
    })
}

/// An online order paid in USD by the customer, in a EUR shop, with every kind of discount: a 10 %
/// code on the first line (`SAVE10`), an automatic 15.00 order-level discount spread across every line
/// and a free-shipping code whose allocation sits on the shipping line. `total_discount` is `"0.00"` on
/// every line, as Shopify leaves it when the discounts come from discount applications. Tax-exclusive
/// prices: `subtotal_price` (111.97) is the lines after their discounts, before shipping and tax.
pub fn shopify_discounted_order(order_id: u64) -> Value {
    let line = |i: u64, sku: &str, qty: u64, price: &str, allocations: Value| {
        json!({
            "id": 1_000_000 + i,
            "variant_id": 2_000_000 + i,
            "sku": sku,
            "title": sku,
            "quantity": qty,
            "price": price,
            "total_discount": "0.00",
            "discount_allocations": allocations
        })
    };
    json!({
        "id": order_id,
        "name": format!("#{order_id}"),
        "created_at": "2026-01-15T11:00:00+01:00",
        "currency": "EUR",
        "presentment_currency": "USD",
        "source_name": "web",
        "test": false,
        "location_id": null,
        "customer": {"id": 207_119_551},
        "financial_status": "paid",
        "taxes_included": false,
        "discount_applications": [
            {"type": "discount_code", "code": "SAVE10", "value": "10.0", "value_type": "percentage",
             "allocation_method": "each", "target_selection": "entitled", "target_type": "line_item"},
            {"type": "automatic", "title": "Winter sale", "value": "15.0", "value_type": "fixed_amount",
             "allocation_method": "across", "target_selection": "all", "target_type": "line_item"},
            {"type": "discount_code", "code": "FREESHIP", "value": "100.0", "value_type": "percentage",
             "allocation_method": "each", "target_selection": "all", "target_type": "shipping_line"}
        ],
        "line_items": [
            line(0, "SKU-001", 2, "40.00", json!([
                shopify_allocation(0, "8.00", "8.80"),
                shopify_allocation(1, "8.51", "9.36")
            ])),
            line(1, "SKU-002", 1, "25.00", json!([shopify_allocation(1, "2.95", "3.25")])),
            line(2, "SKU-003", 3, "9.99", json!([shopify_allocation(1, "3.54", "3.89")]))
        ],
        "shipping_lines": [{
            "id": 271_878_346,
            "title": "Standard",
            "price": "4.90",
            "discounted_price": "0.00",
            "discount_allocations": [shopify_allocation(2, "4.90", "5.39")]
        }],
        "total_line_items_price": "134.97",
        "subtotal_price": "111.97",
        "total_discounts": "27.90",
        "total_tax": "22.39",
        "total_price": "134.36"
    })
}

/// A Shopify refund (`refunds/create`) of one unit of the first line of `order_id`, restocked.
pub fn shopify_refund(refund_id: u64, order_id: u64) -> Value {
    json!({
        "id": refund_id,
        "order_id": order_id,
        "created_at": "2026-01-16T09:30:00+01:00",
        "note": "Wrong size",
        "refund_line_items": [{
            "id": 104_689_539,
            "line_item_id": 1_000_000,
            "quantity": 1,
            "location_id": 655_441_491,
            "restock_type": "return",
            "subtotal": 17.99,
            "total_tax": 3.0,
            "subtotal_set": {"shop_money": {"amount": "17.99", "currency_code": "EUR"}},
            "line_item": {"id": 1_000_000, "sku": "SKU-001", "quantity": 1, "price": "19.99"}
        }],
        "transactions": [{"id": 179_259_969, "kind": "refund", "amount": "17.99", "currency": "EUR", "status": "success"}]
    })
}

/// The refund Shopify creates when an order of [`shopify_order`] with one line is cancelled with its
/// items restocked (`restock_type` `cancel`). With `paid`, the payment is refunded (a successful `refund`
/// transaction); without, nothing was ever captured and no money moves (no transaction).
pub fn shopify_cancel_refund(refund_id: u64, order_id: u64, paid: bool) -> Value {
    let transactions = if paid {
        json!([{"id": 179_259_970, "kind": "refund", "amount": "17.99", "currency": "EUR", "status": "success"}])
    } else {
        json!([])
    };
    json!({
        "id": refund_id,
        "order_id": order_id,
        "created_at": "2026-01-15T12:00:00+01:00",
        "note": "Order cancelled",
        "restock": true,
        "refund_line_items": [{
            "id": 104_689_540,
            "line_item_id": 1_000_000,
            "quantity": 1,
            "location_id": 655_441_491,
            "restock_type": "cancel",
            "subtotal": "17.99",
            "total_tax": "3.33",
            "subtotal_set": {"shop_money": {"amount": "17.99", "currency_code": "EUR"}},
            "line_item": {"id": 1_000_000, "sku": "SKU-001", "quantity": 1, "price": "19.99"}
        }],
        "transactions": transactions
    })
}

/// The `orders/cancelled` body for an order of [`shopify_order`] with one line: the order with
/// `cancelled_at` and the refund of its cancellation in `refunds[]`.
pub fn shopify_cancelled_order(order_id: u64, refund_id: u64, paid: bool) -> Value {
    let mut order = shopify_order(order_id, 1);
    order["cancelled_at"] = json!("2026-01-15T12:00:00+01:00");
    order["cancel_reason"] = json!("customer");
    order["financial_status"] = json!(if paid { "refunded" } else { "voided" });
    order["refunds"] = json!([shopify_cancel_refund(refund_id, order_id, paid)]);
    order
}

fn square_secrets() -> (String, String) {
    dev_secrets()
        .square
        .map(|s| {
            (
                s.signature_key.current().unwrap_or_default().to_owned(),
                s.notification_url,
            )
        })
        .unwrap_or_default()
}

/// A Square delivery of `body`, signed over the dev notification URL with `key` (dev key when `None`).
pub fn square(body: &Value, key: Option<&str>) -> SignedDelivery {
    let body = body.to_string().into_bytes();
    let (dev_key, url) = square_secrets();
    let key = key.map_or(dev_key, str::to_owned);
    SignedDelivery {
        vendor: Vendor::Square,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (
                "x-square-hmacsha256-signature".into(),
                signing::square_signature(&key, &url, &body),
            ),
            ("square-version".into(), "2025-10-16".into()),
            ("square-retry-number".into(), "0".into()),
        ],
        body,
    }
}

/// A Square `payment.updated` event with the given status.
pub fn square_payment(event_id: &str, payment_id: &str, status: &str) -> Value {
    json!({
        "merchant_id": "ML8M1AQ1GQG2K",
        "type": "payment.updated",
        "event_id": event_id,
        "created_at": "2026-01-15T10:00:05.000Z",
        "data": {
            "type": "payment",
            "id": payment_id,
            "object": {"payment": {
                "id": payment_id,
                "created_at": "2026-01-15T10:00:01.000Z",
                "updated_at": "2026-01-15T10:00:04.000Z",
                "amount_money": {"amount": 2599, "currency": "USD"},
                "total_money": {"amount": 2599, "currency": "USD"},
                "status": status,
                "source_type": "CARD",
                "location_id": "L1JC53TYHS40Z",
                "order_id": "CAISENgvlJ6jLWAzERDzjyHVybY",
                "customer_id": "W92WH6P11H4Z77CTET0RNTGFW8",
                "version": 3
            }}
        }
    })
}

/// Square's test notification.
pub fn square_test_notification(event_id: &str) -> Value {
    json!({
        "merchant_id": "ML8M1AQ1GQG2K",
        "type": "webhooks.test_notification",
        "event_id": event_id,
        "created_at": "2026-01-15T10:00:00.000Z",
        "data": {"type": "webhooks", "id": "test"}
    })
}

fn lightspeed_key() -> String {
    dev_secrets()
        .lightspeed
        .and_then(|s| s.client_secret.current().map(str::to_owned))
        .unwrap_or_default()
}

/// A Lightspeed X-Series form-encoded delivery of `payload` with `kind` (e.g. `sale.update`).
pub fn lightspeed(kind: &str, payload: &Value, secret: Option<&str>) -> SignedDelivery {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("domain_prefix", "devstore")
        .append_pair("environment", "prod")
        .append_pair("payload", &payload.to_string())
        .append_pair("retailer_id", "b1e3a4c2-0000-4000-8000-000000000001")
        .append_pair("type", kind)
        .finish();
    let body = body.into_bytes();
    let key = secret.map_or_else(lightspeed_key, str::to_owned);
    SignedDelivery {
        vendor: Vendor::Lightspeed,
        headers: vec![
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            (
                "x-signature".into(),
                signing::lightspeed_signature_header(&key, &body),
            ),
        ],
        body,
    }
}

/// Lightspeed's documented `sale.update` example, as its webhook sends it (X-Series docs, "Webhooks -
/// Example Payloads"): `register_id` and no `outlet_id`, tax-exclusive 5-decimal prices
/// (`56.52174` + tax `8.47826` = 65.00), `totals` and one payment. Written by hand with the fields and
/// values the page and issue 9 quote; ids and the other values are illustrative.
pub fn lightspeed_documented_sale_update() -> Value {
    json!({
        "id": "0adfd74a-ed4a-11e5-f0fc-8b1d6e7c81c8",
        "register_id": "06e94082-ed4a-11e5-f0fc-8b1d6e838b2c",
        "user_id": "0adfd74a-ed4a-11e5-f0fc-8b1d6ea1c5a0",
        "customer_id": "0adaafb3-6583-11e5-fb60-f2f1e9f8b6b3",
        "sale_date": "2016-03-21 22:50:37",
        "status": "CLOSED",
        "invoice_number": "10",
        "note": "",
        "short_code": "iqo3ba",
        "version": 8002,
        "return_for": null,
        "register_sale_products": [{
            "id": "0adfd74a-ed4a-11e5-f0fc-8b1d6f8a8d53",
            "product_id": "0adaafb3-6583-11e5-fb60-0242f1c6e36b",
            "register_id": "06e94082-ed4a-11e5-f0fc-8b1d6e838b2c",
            "sequence": "0",
            "quantity": 1,
            "price": "56.52174",
            "price_total": "56.52174",
            "discount": "0.00000",
            "discount_total": "0.00000",
            "loyalty_value": "0.00000",
            "tax": "8.47826",
            "tax_total": "8.47826",
            "tax_id": "0adaafb3-6583-11e5-fb60-0242f1b4e6ba",
            "status": "CONFIRMED"
        }],
        "register_sale_payments": [{
            "id": "0adfd74a-ed4a-11e5-f0fc-8b1d6f8b81dc",
            "payment_type_id": 1,
            "register_id": "06e94082-ed4a-11e5-f0fc-8b1d6e838b2c",
            "retailer_payment_type_id": "0adaafb3-6583-11e5-fb60-0242f1b49a5e",
            "name": "Cash",
            "label": "Cash",
            "payment_date": "2016-03-21 22:50:36",
            "amount": 65
        }],
        "totals": {
            "total_price": "56.52174",
            "total_tax": "8.47826",
            "total_payment": "65.00000",
            "total_to_pay": "0.00000"
        }
    })
}

/// A Lightspeed X-Series return (`return_for` + negative quantities) of one unit of the first line of
/// [`lightspeed_sale`]; with `exchange` it also sells one `MUG-BLUE` (an exchange).
pub fn lightspeed_return(sale_id: &str, return_for: &str, exchange: bool) -> Value {
    let mut lines = vec![
        json!({"id": "rsp-r1", "product_id": "0adaafb3-6583-11e5-fb60-0242f1c6e36b", "quantity": -1, "price": "10.50000", "discount": "0", "tax": "1.58000"}),
    ];
    let (price, tax) = if exchange {
        lines.push(json!({"id": "rsp-r2", "product_id": "0adaafb3-6583-11e5-fb60-0242f1c6e36c", "sku": "MUG-BLUE", "quantity": 1, "price": "6.50000", "discount": "0.50000", "tax": "0.98000"}));
        ("-4.00000", "-0.60000")
    } else {
        ("-10.50000", "-1.58000")
    };
    json!({
        "id": sale_id,
        "outlet_id": "06e94082-ed4a-11e5-f0fc-8b1d6e7b2ae8",
        "register_id": "06e94082-ed4a-11e5-f0fc-8b1d6e838b2c",
        "customer_id": "0adaafb3-6583-11e5-fb60-f2f1e9f8b6b3",
        "sale_date": "2026-01-16 09:00:00",
        "status": "CLOSED",
        "version": 1,
        "return_for": return_for,
        "register_sale_products": lines,
        "totals": {"total_price": price, "total_tax": tax}
    })
}

/// A Lightspeed X-Series sale payload.
pub fn lightspeed_sale(sale_id: &str, version: u64, status: &str) -> Value {
    json!({
        "id": sale_id,
        "outlet_id": "06e94082-ed4a-11e5-f0fc-8b1d6e7b2ae8",
        "register_id": "06e94082-ed4a-11e5-f0fc-8b1d6e838b2c",
        "user_id": "0adfd74a-ed4a-11e5-f0fc-8b1d6ea1c5a0",
        "customer_id": "0adaafb3-6583-11e5-fb60-f2f1e9f8b6b3",
        "invoice_number": "1042",
        "sale_date": "2026-01-15 10:00:00",
        "status": status,
        "version": version,
        "register_sale_products": [
            {"id": "rsp-1", "product_id": "0adaafb3-6583-11e5-fb60-0242f1c6e36b", "quantity": 2, "price": 10.5, "discount": 0, "tax": 1.58},
            {"id": "rsp-2", "product_id": "0adaafb3-6583-11e5-fb60-0242f1c6e36c", "sku": "MUG-BLUE", "quantity": 1, "price": "6.50", "discount": "0.50", "tax": "0.98"}
        ],
        "totals": {"total_price": 27.5, "total_tax": 4.14, "total_payment": 31.64}
    })
}

fn standard_secret() -> String {
    dev_secrets()
        .standard
        .and_then(|s| {
            s.senders
                .first()
                .and_then(|sender| sender.secrets.current().map(str::to_owned))
        })
        .unwrap_or_default()
}

/// A Standard Webhooks delivery of `body` with message id `msg_id`, signed at `timestamp` with `secret`
/// (the dev secret when `None`).
pub fn standard(
    msg_id: &str,
    body: &Value,
    timestamp: DateTime<Utc>,
    secret: Option<&str>,
) -> SignedDelivery {
    let body = body.to_string().into_bytes();
    let secret = secret.map_or_else(standard_secret, str::to_owned);
    let sig = signing::standard_signature(&secret, msg_id, timestamp.timestamp(), &body)
        .unwrap_or_default();
    SignedDelivery {
        vendor: Vendor::Standard,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("webhook-id".into(), msg_id.into()),
            (
                "webhook-timestamp".into(),
                timestamp.timestamp().to_string(),
            ),
            ("webhook-signature".into(), sig),
        ],
        body,
    }
}

/// Re-signs a Standard Webhooks delivery at `timestamp` (keeps id and body): what `pos-local send` does so
/// a sample file older than the 5-minute tolerance can still be sent.
pub fn resign_standard(d: &SignedDelivery, timestamp: DateTime<Utc>) -> SignedDelivery {
    let msg_id = d.header("webhook-id").unwrap_or_default().to_owned();
    let secret = standard_secret();
    let sig = signing::standard_signature(&secret, &msg_id, timestamp.timestamp(), &d.body)
        .unwrap_or_default();
    d.clone()
        .with_header("webhook-timestamp", &timestamp.timestamp().to_string())
        .with_header("webhook-signature", &sig)
}

/// A canonical `sale.completed` body for the Standard Webhooks route, with `lines` lines.
pub fn standard_sale(
    sale_id: &str,
    store_id: &str,
    member_id: Option<&str>,
    lines: usize,
) -> Value {
    let items: Vec<Value> = (0..lines)
        .map(|i| json!({"line_id": (i + 1).to_string(), "sku": format!("SKU-{:03}", i + 1), "quantity": 1, "unit_price": "12.50"}))
        .collect();
    let total = 1250 * lines;
    let mut data = json!({
        "sale_id": sale_id,
        "store_id": store_id,
        "occurred_at": "2026-01-15T09:59:30Z",
        "currency": "EUR",
        "channel": "till-7",
        "lines": items,
        "total": format!("{}.{:02}", total / 100, total % 100),
        "tax": "0.00"
    });
    if let (Some(m), Some(obj)) = (member_id, data.as_object_mut()) {
        obj.insert("member_id".into(), Value::String(m.into()));
    }
    json!({"type": "sale.completed", "timestamp": "2026-01-15T10:00:00Z", "data": data})
}

/// A canonical `return.completed` body returning one unit of `SKU-001`.
pub fn standard_return(return_id: &str, sale_id: &str, store_id: &str) -> Value {
    json!({"type": "return.completed", "timestamp": "2026-01-15T10:00:00Z", "data": {
        "return_id": return_id,
        "sale_id": sale_id,
        "store_id": store_id,
        "occurred_at": "2026-01-15T09:59:45Z",
        "currency": "EUR",
        "lines": [{"line_id": "1", "sku": "SKU-001", "quantity": 1, "restock": true, "refund": "12.50"}],
        "total_refund": "12.50"
    }})
}

/// The envelope capture would publish for a delivery signed with the dev secrets at [`sample_time`]
/// (default mapping); an error names why it is not one event.
pub fn envelope_of(d: &SignedDelivery) -> Result<crate::model::EventEnvelope, String> {
    use crate::vendors::{Interpretation, MappingConfig, interpret, verify};
    let headers = d.to_request("sample").headers;
    let signer = verify(d.vendor, &headers, &d.body, &dev_secrets(), sample_time())
        .map_err(|e| format!("signature: {e}"))?;
    match interpret(
        d.vendor,
        &signer,
        &headers,
        &d.body,
        &MappingConfig::default(),
    )
    .map_err(|e| e.to_string())?
    .interpretation
    {
        Interpretation::Event(e) => Ok(crate::model::EventEnvelope::new(
            e,
            format!("corr-{}", d.vendor.as_str()),
            sample_time(),
        )),
        other => Err(format!("not one event: {other:?}")),
    }
}
