//! The `events/` generator: every sample delivery, as the API Gateway event the Lambda receives, signed
//! with the dev secrets, and `events/manifest.json` giving the status each must get when the files are
//! replayed in manifest order against a fresh store at [`samples::sample_time`].
//!
//! It also writes the SQS events the consumers receive (EventBridge envelopes inside) and
//! `events/consumers-manifest.json` with the `batchItemFailures` each must produce.
//!
//! Run `pos-local gen-events` after changing a sample; a test fails when `events/` is out of date.

use chrono::Duration;
use pos_shared::samples::{self, SignedDelivery};
use pos_shared::vendors::signing;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::Path;

/// One sample file and what replaying it must answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path under `events/`.
    pub file: String,
    /// Expected HTTP status when replayed in order.
    pub status: u16,
    /// What the case shows.
    pub case: String,
    /// Whether the delivery ends in quarantine (answered 200 `quarantined` for a vendor, 422 for a
    /// Standard Webhooks sender).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quarantined: bool,
}

/// A generated sample.
pub struct Sample {
    /// Manifest entry.
    pub entry: ManifestEntry,
    /// The API Gateway event.
    pub event: Value,
}

fn sample(file: &str, status: u16, case: &str, d: &SignedDelivery) -> Sample {
    let request_id = file.trim_end_matches(".json").replace('/', "-");
    Sample {
        entry: ManifestEntry {
            file: file.to_owned(),
            status,
            case: case.to_owned(),
            quarantined: false,
        },
        event: d.to_apigw_event(&request_id),
    }
}

/// A sample whose delivery ends in quarantine.
fn quarantined(mut s: Sample) -> Sample {
    s.entry.quarantined = true;
    s
}

fn tamper(d: &SignedDelivery) -> SignedDelivery {
    let text = String::from_utf8_lossy(&d.body).into_owned();
    // Change an amount after signing, as an attacker would.
    d.clone().with_body(
        text.replacen("19.99", "0.01", 1)
            .replacen("2599", "1", 1)
            .replacen("10.5", "0.5", 1),
    )
}

/// Every sample, in replay order.
pub fn samples() -> Vec<Sample> {
    let t0 = samples::sample_time();
    let shopify_order = samples::shopify(
        "orders/create",
        "shopify-evt-1001",
        &samples::shopify_order(450_789_469, 3),
        None,
    );
    let shopify_again = shopify_order
        .clone()
        .with_header("x-shopify-webhook-id", "wh-shopify-evt-1001-retry");
    let shopify_refund = samples::shopify(
        "refunds/create",
        "shopify-evt-1002",
        &samples::shopify_refund(509_562_969, 450_789_469),
        None,
    );
    let mut pending = samples::shopify_order(450_789_480, 1);
    pending["financial_status"] = json!("pending");
    let mut paid = pending.clone();
    paid["financial_status"] = json!("paid");
    let mut test_order = samples::shopify_order(450_789_482, 1);
    test_order["test"] = json!(true);
    let mut precise = samples::shopify_order(450_789_470, 1);
    precise["line_items"][0]["price"] = json!("19.999");
    let shopify_precise = samples::shopify("orders/create", "shopify-evt-1003", &precise, None);
    let shopify_malformed = {
        let body = b"{\"id\": 450789471, \"line_items\": [".to_vec();
        samples::shopify("orders/create", "shopify-evt-1004", &json!({}), None)
            .with_body(body.clone())
            .with_header(
                "x-shopify-hmac-sha256",
                &signing::shopify_signature("dev-shopify-client-secret", &body),
            )
    };
    let shopify_non_utf8 = {
        let body = vec![0xff, 0xfe, 0x7b, 0x7d];
        samples::shopify("orders/create", "shopify-evt-1005", &json!({}), None)
            .with_body(body.clone())
            .with_header(
                "x-shopify-hmac-sha256",
                &signing::shopify_signature("dev-shopify-client-secret", &body),
            )
    };
    let square_payment = samples::square(
        &samples::square_payment("sq-evt-2001", "pay-2001", "COMPLETED"),
        None,
    );
    let square_retry = square_payment
        .clone()
        .with_header("square-retry-number", "1");
    let lightspeed_sale = samples::lightspeed(
        "sale.update",
        &samples::lightspeed_sale("ls-sale-3001", 1, "CLOSED"),
        None,
    );
    let lightspeed_v2 = samples::lightspeed(
        "sale.update",
        &samples::lightspeed_sale("ls-sale-3001", 2, "CLOSED"),
        None,
    );
    let lightspeed_wrong_alg = {
        let sig = lightspeed_sale
            .header("x-signature")
            .unwrap_or_default()
            .replace("HMAC-SHA256", "HMAC-SHA1");
        samples::lightspeed(
            "sale.update",
            &samples::lightspeed_sale("ls-sale-3003", 1, "CLOSED"),
            None,
        )
        .with_header("x-signature", &sig)
    };
    let standard_sale = samples::standard(
        "msg_4001",
        &samples::standard_sale("till-7:4001", "store-001", Some("member-42"), 3),
        t0,
        None,
    );
    let standard_return = samples::standard(
        "msg_4002",
        &samples::standard_return("till-7:r4002", "till-7:4001", "store-001"),
        t0,
        None,
    );
    let other_sale = samples::standard_sale("till-7:4099", "store-001", None, 1);
    vec![
        sample(
            "shopify/orders-create.json",
            202,
            "POS order: new sale, published",
            &shopify_order,
        ),
        sample(
            "shopify/orders-create-redelivery.json",
            200,
            "same X-Shopify-Event-Id, new webhook id: duplicate",
            &shopify_again,
        ),
        sample(
            "shopify/refunds-create.json",
            202,
            "refund with restock: new return",
            &shopify_refund,
        ),
        sample(
            "shopify/orders-paid-after-create.json",
            200,
            "orders/paid of the order already created paid: duplicate of the same sale",
            &samples::shopify(
                "orders/paid",
                "shopify-evt-1010",
                &samples::shopify_order(450_789_469, 3),
                None,
            ),
        ),
        sample(
            "shopify/orders-create-pending.json",
            200,
            "order created unpaid (financial_status pending): stored, ignored, no sale",
            &samples::shopify("orders/create", "shopify-evt-1011", &pending, None),
        ),
        sample(
            "shopify/orders-paid.json",
            202,
            "orders/paid of the pending order: new sale",
            &samples::shopify("orders/paid", "shopify-evt-1012", &paid, None),
        ),
        sample(
            "shopify/orders-create-discounted.json",
            202,
            "code, automatic and shipping discounts: line discounts from discount_allocations",
            &samples::shopify(
                "orders/create",
                "shopify-evt-1013",
                &samples::shopify_discounted_order(450_789_481),
                None,
            ),
        ),
        sample(
            "shopify/refunds-create-cancel.json",
            202,
            "paid order cancelled (restock_type cancel, refunded): new return",
            &samples::shopify(
                "refunds/create",
                "shopify-evt-1014",
                &samples::shopify_cancel_refund(509_562_990, 450_789_480, true),
                None,
            ),
        ),
        sample(
            "shopify/orders-cancelled.json",
            200,
            "orders/cancelled: ignored, the cancellation counts through its refund",
            &samples::shopify(
                "orders/cancelled",
                "shopify-evt-1015",
                &samples::shopify_cancelled_order(450_789_480, 509_562_990, true),
                None,
            ),
        ),
        sample(
            "shopify/orders-create-test.json",
            200,
            "test order: ignored (SHOPIFY_ACCEPT_TEST_ORDERS off)",
            &samples::shopify("orders/create", "shopify-evt-1016", &test_order, None),
        ),
        sample(
            "shopify/unknown-topic.json",
            200,
            "topic not acted on: ignored",
            &samples::shopify(
                "products/update",
                "shopify-evt-1006",
                &json!({"id": 632_910_392, "title": "Boots"}),
                None,
            ),
        ),
        sample(
            "shopify/tampered.json",
            401,
            "body changed after signing",
            &tamper(&samples::shopify(
                "orders/create",
                "shopify-evt-1007",
                &samples::shopify_order(450_789_472, 1),
                None,
            )),
        ),
        sample(
            "shopify/wrong-key.json",
            401,
            "signed with another secret",
            &samples::shopify(
                "orders/create",
                "shopify-evt-1008",
                &samples::shopify_order(450_789_473, 1),
                Some("not-our-secret"),
            ),
        ),
        sample(
            "shopify/missing-signature.json",
            401,
            "no HMAC header",
            &samples::shopify(
                "orders/create",
                "shopify-evt-1009",
                &samples::shopify_order(450_789_474, 1),
                None,
            )
            .without_header("x-shopify-hmac-sha256"),
        ),
        sample(
            "shopify/wrong-media-type.json",
            415,
            "text/plain body",
            &shopify_order
                .clone()
                .with_header("content-type", "text/plain"),
        ),
        sample(
            "shopify/malformed-json.json",
            400,
            "signed, truncated JSON",
            &shopify_malformed,
        ),
        sample(
            "shopify/non-utf8.json",
            400,
            "signed, not UTF-8 (base64-encoded by API Gateway)",
            &shopify_non_utf8,
        ),
        quarantined(sample(
            "shopify/too-precise-amount.json",
            200,
            "19.999 EUR: quarantined (not rounded), acknowledged so Shopify does not retry",
            &shopify_precise,
        )),
        sample(
            "square/payment-completed.json",
            202,
            "COMPLETED payment: recorded awaiting order enrichment",
            &square_payment,
        ),
        sample(
            "square/payment-completed-retry.json",
            200,
            "Square retry of the same event_id: duplicate",
            &square_retry,
        ),
        sample(
            "square/payment-approved.json",
            200,
            "APPROVED payment: ignored",
            &samples::square(
                &samples::square_payment("sq-evt-2002", "pay-2002", "APPROVED"),
                None,
            ),
        ),
        sample(
            "square/test-notification.json",
            200,
            "webhooks.test_notification: ignored",
            &samples::square(&samples::square_test_notification("sq-evt-2003"), None),
        ),
        sample(
            "square/unknown-type.json",
            200,
            "event type not acted on: ignored",
            &samples::square(
                &json!({"merchant_id": "ML8M1AQ1GQG2K", "type": "customer.created", "event_id": "sq-evt-2004", "data": {}}),
                None,
            ),
        ),
        sample(
            "square/tampered.json",
            401,
            "amount changed after signing",
            &tamper(&samples::square(
                &samples::square_payment("sq-evt-2005", "pay-2005", "COMPLETED"),
                None,
            )),
        ),
        sample(
            "lightspeed/sale-closed.json",
            202,
            "CLOSED sale: new sale",
            &lightspeed_sale,
        ),
        sample(
            "lightspeed/sale-update-documented.json",
            202,
            "Lightspeed's documented sale.update: register_id only, 5-decimal prices",
            &samples::lightspeed(
                "sale.update",
                &samples::lightspeed_documented_sale_update(),
                None,
            ),
        ),
        sample(
            "lightspeed/sale-exchange.json",
            202,
            "exchange: a sale of the positive lines and a return of the negative ones",
            &samples::lightspeed(
                "sale.update",
                &samples::lightspeed_return("ls-sale-3010", "ls-sale-3001", true),
                None,
            ),
        ),
        sample(
            "lightspeed/sale-closed-v2.json",
            200,
            "version 2 of a captured sale: duplicate of it",
            &lightspeed_v2,
        ),
        sample(
            "lightspeed/sale-saved.json",
            200,
            "SAVED (parked) sale: ignored",
            &samples::lightspeed(
                "sale.update",
                &samples::lightspeed_sale("ls-sale-3002", 1, "SAVED"),
                None,
            ),
        ),
        sample(
            "lightspeed/tampered.json",
            401,
            "form changed after signing",
            &tamper(&samples::lightspeed(
                "sale.update",
                &samples::lightspeed_sale("ls-sale-3004", 1, "CLOSED"),
                None,
            )),
        ),
        sample(
            "lightspeed/wrong-algorithm.json",
            401,
            "algorithm=HMAC-SHA1 refused",
            &lightspeed_wrong_alg,
        ),
        sample(
            "standard/sale.json",
            202,
            "canonical sale from an in-house till",
            &standard_sale,
        ),
        sample(
            "standard/sale-duplicate.json",
            200,
            "same webhook-id: duplicate",
            &standard_sale,
        ),
        sample(
            "standard/return.json",
            202,
            "canonical return with restock",
            &standard_return,
        ),
        sample(
            "standard/stock-count.json",
            202,
            "stock.adjusted with on_hand: a count of SKU-010 taken at 09:00",
            &stock_count(),
        ),
        sample(
            "standard/stock-delta.json",
            202,
            "stock.adjusted with delta: a goods receipt of 5 SKU-010 at 09:30",
            &stock_receipt(),
        ),
        sample(
            "standard/conflict.json",
            409,
            "same webhook-id, another payload",
            &samples::standard("msg_4001", &other_sale, t0, None),
        ),
        sample(
            "standard/stale.json",
            401,
            "timestamp 6 minutes old: replay refused",
            &samples::standard("msg_4003", &other_sale, t0 - Duration::minutes(6), None),
        ),
        sample(
            "standard/future.json",
            401,
            "timestamp 6 minutes ahead",
            &samples::standard("msg_4004", &other_sale, t0 + Duration::minutes(6), None),
        ),
        quarantined(sample(
            "standard/unknown-type.json",
            422,
            "unknown type in our own schema: quarantined, refused with the reason",
            &samples::standard(
                "msg_4005",
                &json!({"type": "sale.voided", "data": {"sale_id": "till-7:4001"}}),
                t0,
                None,
            ),
        )),
    ]
}

/// An SQS sample for a consumer and the record ids it must report failed when replayed in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerEntry {
    /// Path under `events/`.
    pub file: String,
    /// `stock-sync` or `loyalty-accrual`.
    pub consumer: String,
    /// `batchItemFailures` item identifiers expected.
    pub failures: Vec<String>,
    /// What the case shows.
    pub case: String,
}

/// A signed `stock.adjusted` of `SKU-010` in `store-001`: `kind` is `on_hand` (a count) or `delta`.
fn stock_adjustment(msg: &str, id: &str, kind: &str, units: i64, at: &str) -> SignedDelivery {
    let body = json!({"type": "stock.adjusted", "timestamp": "2026-01-15T10:00:00Z", "data": {
        "adjustment_id": id, "store_id": "store-001", "sku": "SKU-010", "occurred_at": at, kind: units
    }});
    samples::standard(msg, &body, samples::sample_time(), None)
}

/// The count of `standard/stock-count.json`: 20 units of SKU-010 at 09:00.
fn stock_count() -> SignedDelivery {
    stock_adjustment(
        "msg_4010",
        "count-4010",
        "on_hand",
        20,
        "2026-01-15T09:00:00Z",
    )
}

/// The goods receipt of `standard/stock-delta.json`: 5 units of SKU-010 at 09:30.
fn stock_receipt() -> SignedDelivery {
    stock_adjustment(
        "msg_4011",
        "receipt-4011",
        "delta",
        5,
        "2026-01-15T09:30:00Z",
    )
}

/// The bus events the consumer samples carry: the canonical events of `standard/sale.json` and
/// `standard/return.json`, as capture publishes them.
fn bus_body(d: &SignedDelivery, eb_id: &str) -> String {
    let mut envelope =
        samples::envelope_of(d).unwrap_or_else(|e| panic!("sample is not one event: {e}"));
    envelope.correlation_id = format!("corr-{eb_id}");
    serde_json::to_string(&pos_shared::bus::BusMessage::new(eb_id, envelope)).unwrap_or_default()
}

fn sqs_event(consumer: &str, records: &[(&str, &str, u32)]) -> Value {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
    let mut event = SqsEvent::default();
    for (id, body, receives) in records {
        let mut m = SqsMessage::default();
        m.message_id = Some((*id).to_owned());
        m.receipt_handle = Some(format!("receipt-{id}"));
        m.body = Some((*body).to_owned());
        m.event_source = Some("aws:sqs".into());
        m.event_source_arn = Some(format!(
            "arn:aws:sqs:eu-west-1:123456789012:pos-dev-{consumer}"
        ));
        m.aws_region = Some("eu-west-1".into());
        m.attributes
            .insert("ApproximateReceiveCount".into(), receives.to_string());
        m.attributes.insert(
            "SentTimestamp".into(),
            samples::sample_time().timestamp_millis().to_string(),
        );
        m.attributes
            .insert("SenderId".into(), "AIDAIENQZJOLO23YVJ4VO".into());
        m.attributes.insert(
            "ApproximateFirstReceiveTimestamp".into(),
            samples::sample_time().timestamp_millis().to_string(),
        );
        event.records.push(m);
    }
    serde_json::to_value(event).unwrap_or_default()
}

/// The consumer samples, in replay order, with their manifest entries.
pub fn consumer_samples() -> Vec<(ConsumerEntry, Value)> {
    let t0 = samples::sample_time();
    let sale = bus_body(
        &samples::standard(
            "msg_4001",
            &samples::standard_sale("till-7:4001", "store-001", Some("member-42"), 3),
            t0,
            None,
        ),
        "eb-4001",
    );
    let ret = bus_body(
        &samples::standard(
            "msg_4002",
            &samples::standard_return("till-7:r4002", "till-7:4001", "store-001"),
            t0,
            None,
        ),
        "eb-4002",
    );
    let count = bus_body(&stock_count(), "eb-4010");
    let receipt = bus_body(&stock_receipt(), "eb-4011");
    let poison = "{\"detail-type\": \"SaleCompleted\", \"detail\": \"truncated";
    let mut out = Vec::new();
    for consumer in ["stock-sync", "loyalty-accrual"] {
        let entry = |file: &str, failures: &[&str], case: &str| ConsumerEntry {
            file: format!("{consumer}/{file}"),
            consumer: consumer.to_owned(),
            failures: failures.iter().map(|f| (*f).to_owned()).collect(),
            case: case.to_owned(),
        };
        out.push((
            entry("sale.json", &[], "SaleCompleted of standard/sale.json"),
            sqs_event(consumer, &[("m-1", &sale, 1)]),
        ));
        out.push((
            entry(
                "duplicate.json",
                &[],
                "the same message received again: no second effect",
            ),
            sqs_event(consumer, &[("m-1", &sale, 2)]),
        ));
        out.push((
            entry(
                "poison.json",
                &["m-2"],
                "unparseable body: reported, reaches the DLQ after maxReceiveCount",
            ),
            sqs_event(consumer, &[("m-2", poison, 1)]),
        ));
        out.push((
            entry(
                "mixed-batch.json",
                &["m-2"],
                "return + poison + duplicate sale: only the poison fails",
            ),
            sqs_event(
                consumer,
                &[("m-3", &ret, 1), ("m-2", poison, 2), ("m-1", &sale, 3)],
            ),
        ));
    }
    out.push((
        ConsumerEntry {
            file: "stock-sync/adjustments.json".to_owned(),
            consumer: "stock-sync".to_owned(),
            failures: Vec::new(),
            case: "StockAdjusted: the 09:30 receipt (+5) arrives before the 09:00 count (20): 25 on hand"
                .to_owned(),
        },
        sqs_event("stock-sync", &[("m-5", &receipt, 1), ("m-4", &count, 1)]),
    ));
    out
}

/// The delivery functions' samples (SQS events as commercetools-sync and dynamics-sync receive them), with
/// their manifest entries: replayed against commercetools' own emulator and our D365 emulator by
/// `tests/tests/delivery_events.rs`.
pub fn delivery_samples() -> Vec<(ConsumerEntry, Value)> {
    let t0 = samples::sample_time();
    let sale = bus_body(
        &samples::standard(
            "msg_4001",
            &samples::standard_sale("till-7:4001", "store-001", Some("member-42"), 3),
            t0,
            None,
        ),
        "eb-4001",
    );
    let ret = bus_body(
        &samples::standard(
            "msg_4002",
            &samples::standard_return("till-7:r4002", "till-7:4001", "store-001"),
            t0,
            None,
        ),
        "eb-4002",
    );
    let count = bus_body(&stock_count(), "eb-4010");
    let poison = "{\"detail-type\": \"SaleCompleted\", \"detail\": \"truncated";
    // The same records for each function; only what each destination makes of them differs.
    let cases = [
        (
            "commercetools-sync",
            [
                "SaleCompleted of standard/sale.json: one imported order, one stock movement per line",
                "ReturnCompleted of the sale: return info on its order, the restocked unit added back",
                "StockAdjusted count of SKU-010: the inventory entry set to 20",
            ],
        ),
        (
            "dynamics-sync",
            [
                "SaleCompleted of standard/sale.json: one sales order with its three lines",
                "ReturnCompleted of the sale: one return order with its line",
                "StockAdjusted count of SKU-010: one counting journal counting 20",
            ],
        ),
        (
            "webhooks-sync",
            [
                "SaleCompleted of standard/sale.json: one signed POST to each subscription that takes it",
                "ReturnCompleted of the sale: one signed POST per subscription",
                "StockAdjusted count of SKU-010: one signed POST per subscription",
            ],
        ),
    ];
    let mut out = Vec::new();
    for (consumer, [on_sale, on_return, on_count]) in cases {
        let entry = |file: &str, failures: &[&str], case: &str| ConsumerEntry {
            file: format!("{consumer}/{file}"),
            consumer: consumer.to_owned(),
            failures: failures.iter().map(|f| (*f).to_owned()).collect(),
            case: case.to_owned(),
        };
        out.extend([
            (
                entry("sale.json", &[], on_sale),
                sqs_event(consumer, &[("m-1", &sale, 1)]),
            ),
            (
                entry(
                    "duplicate.json",
                    &[],
                    "the same message received again: skipped by the ledger, no call",
                ),
                sqs_event(consumer, &[("m-1", &sale, 2)]),
            ),
            (
                entry("return.json", &[], on_return),
                sqs_event(consumer, &[("m-3", &ret, 1)]),
            ),
            (
                entry("count.json", &[], on_count),
                sqs_event(consumer, &[("m-4", &count, 1)]),
            ),
            (
                entry(
                    "poison.json",
                    &["m-2"],
                    "unparseable body: reported, reaches the DLQ after maxReceiveCount",
                ),
                sqs_event(consumer, &[("m-2", poison, 1)]),
            ),
        ]);
    }
    out
}

/// The manifest of [`samples`].
pub fn manifest() -> Vec<ManifestEntry> {
    samples().into_iter().map(|s| s.entry).collect()
}

fn pretty(v: &impl Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

/// The files the generator writes: (path under `events/`, content).
pub fn rendered() -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for s in samples() {
        files.push((s.entry.file.clone(), pretty(&s.event)?));
    }
    files.push(("manifest.json".to_owned(), pretty(&manifest())?));
    let consumers = consumer_samples();
    for (entry, event) in &consumers {
        files.push((entry.file.clone(), pretty(event)?));
    }
    let entries: Vec<&ConsumerEntry> = consumers.iter().map(|(e, _)| e).collect();
    files.push(("consumers-manifest.json".to_owned(), pretty(&entries)?));
    let deliveries = delivery_samples();
    for (entry, event) in &deliveries {
        files.push((entry.file.clone(), pretty(event)?));
    }
    let entries: Vec<&ConsumerEntry> = deliveries.iter().map(|(e, _)| e).collect();
    files.push(("deliveries-manifest.json".to_owned(), pretty(&entries)?));
    // What the EventBridge Scheduler schedule sends the outbox relay (infra/schedules.tf), as delivered.
    let job = pos_shared::outbox::ScheduledJob {
        job: "outbox-relay".to_owned(),
        scheduled_at: Some("2026-01-15T10:00:00Z".to_owned()),
    };
    files.push(("outbox-relay/scheduled.json".to_owned(), pretty(&job)?));
    files.push((
        "outbox-publisher/stream.json".to_owned(),
        pretty(&outbox_stream_sample()?)?,
    ));
    Ok(files)
}

/// What the capture table's stream hands `outbox-publisher` after two captures (a sale, its return),
/// as the filtered event source mapping delivers it: their outbox `INSERT`s with `NEW_IMAGE`.
fn outbox_stream_sample() -> anyhow::Result<serde_json::Value> {
    let sale = samples::standard(
        "msg_stream_sale",
        &samples::standard_sale("stream-1", "store-001", Some("member-42"), 2),
        samples::sample_time(),
        None,
    );
    let ret = samples::standard(
        "msg_stream_return",
        &samples::standard_return("stream-r1", "stream-1", "store-001"),
        samples::sample_time(),
        None,
    );
    let mut records = Vec::new();
    for (n, d) in [sale, ret].iter().enumerate() {
        let envelope = samples::envelope_of(d).map_err(|e| anyhow::anyhow!(e))?;
        let entry = pos_shared::store::OutboxEntry {
            envelope,
            status: pos_shared::store::OutboxStatus::Pending,
            created_at: samples::sample_time(),
        };
        let image: serde_json::Map<String, serde_json::Value> =
            pos_shared::store::dynamodb::outbox_image(&entry)?
                .into_iter()
                .map(|(k, v)| (k, serde_json::json!({ "S": v })))
                .collect();
        records.push(serde_json::json!({
            "eventID": format!("c4ca4238a0b923820dcc509a6f75849{n}"),
            "eventName": "INSERT",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-west-1",
            "dynamodb": {
                "ApproximateCreationDateTime": samples::sample_time().timestamp() as f64,
                "Keys": {"pk": image["pk"], "sk": image["sk"]},
                "NewImage": image,
                "SequenceNumber": format!("11000000000174544230{n:02}"),
                "SizeBytes": 1200,
                "StreamViewType": "NEW_IMAGE"
            },
            "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/pos-dev-capture/stream/2026-01-15T00:00:00.000"
        }));
    }
    Ok(serde_json::json!({ "Records": records }))
}

/// Writes every file under `dir`.
pub fn write_all(dir: &Path) -> anyhow::Result<usize> {
    let files = rendered()?;
    for (rel, content) in &files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content)?;
    }
    Ok(files.len())
}
