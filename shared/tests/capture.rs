//! The capture use case end to end on in-memory adapters: every vendor, every status of the contract.

use async_trait::async_trait;
use chrono::Duration;
use pos_shared::capture::{CaptureError, CaptureService, CaptureSettings, Captured};
use pos_shared::ids::EventId;
use pos_shared::model::CanonicalEvent;
use pos_shared::money::Currency;
use pos_shared::outbox::feed::Announced;
use pos_shared::ports::{CaptureStore, ManualClock};
use pos_shared::samples::{self, SignedDelivery};
use pos_shared::secrets::{StaticSecrets, VendorSecrets, dev_secrets};
use pos_shared::store::embedded::EmbeddedStore;
use pos_shared::store::{
    CaptureOutcome, CaptureWrite, OutboxEntry, QuarantineRecord, StoreError, StoreInspect,
};
use pos_shared::vendors::{AuthError, MappingConfig};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// A store that fails on demand, to check that storage errors are infrastructure errors.
struct FlakyStore {
    inner: EmbeddedStore,
    fail_captures: AtomicU32,
}

#[async_trait]
impl CaptureStore for FlakyStore {
    async fn capture(&self, write: CaptureWrite) -> Result<CaptureOutcome, StoreError> {
        if self
            .fail_captures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Unavailable("injected".into()));
        }
        self.inner.capture(write).await
    }
    async fn outbox_entry(&self, id: &EventId) -> Result<Option<OutboxEntry>, StoreError> {
        self.inner.outbox_entry(id).await
    }
    async fn mark_published(
        &self,
        id: &EventId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        self.inner.mark_published(id, at).await
    }
    async fn quarantine(&self, r: QuarantineRecord) -> Result<(), StoreError> {
        self.inner.quarantine(r).await
    }
}

struct Harness {
    svc: CaptureService,
    store: Arc<FlakyStore>,
    bus: Arc<Announced>,
    clock: Arc<ManualClock>,
}

fn nzd_mapping() -> MappingConfig {
    MappingConfig {
        lightspeed_currency: Some(Currency::parse("NZD").expect("nzd")),
        shopify_accept_test_orders: false,
        ..MappingConfig::default()
    }
}

fn harness_with(secrets: VendorSecrets) -> Harness {
    harness_with_mapping(secrets, nzd_mapping())
}

fn harness_with_mapping(secrets: VendorSecrets, mapping: MappingConfig) -> Harness {
    let store = Arc::new(FlakyStore {
        inner: EmbeddedStore::in_memory().expect("store"),
        fail_captures: AtomicU32::new(0),
    });
    let bus = Arc::new(Announced::new(&store.inner));
    let clock = Arc::new(ManualClock::new(samples::sample_time()));
    let settings = CaptureSettings {
        max_body_bytes: 64 * 1024,
        delivery_ttl: Duration::days(7),
        mapping,
    };
    let svc = CaptureService::new(
        store.clone(),
        Arc::new(StaticSecrets(Arc::new(secrets))),
        clock.clone(),
        settings,
    );
    Harness {
        svc,
        store,
        bus,
        clock,
    }
}

fn harness() -> Harness {
    harness_with(dev_secrets())
}

impl Harness {
    async fn send(&self, d: &SignedDelivery) -> Result<Captured, CaptureError> {
        self.svc.handle(&d.to_request("test-correlation")).await
    }

    async fn status(&self, d: &SignedDelivery) -> u16 {
        match self.send(d).await {
            Ok(c) => c.status().as_u16(),
            Err(e) => e.status().as_u16(),
        }
    }
}

fn shopify_sale() -> SignedDelivery {
    samples::shopify(
        "orders/create",
        "evt-1",
        &samples::shopify_order(450_789_469, 3),
        None,
    )
}
fn square_sale() -> SignedDelivery {
    samples::square(
        &samples::square_payment("sq-evt-1", "pay-1", "COMPLETED"),
        None,
    )
}
fn lightspeed_sale() -> SignedDelivery {
    samples::lightspeed(
        "sale.update",
        &samples::lightspeed_sale("ls-sale-1", 1, "CLOSED"),
        None,
    )
}
fn standard_sale() -> SignedDelivery {
    samples::standard(
        "msg_1",
        &samples::standard_sale("till-7:0001", "store-001", Some("member-42"), 2),
        samples::sample_time(),
        None,
    )
}

fn all_valid() -> Vec<SignedDelivery> {
    vec![
        shopify_sale(),
        square_sale(),
        lightspeed_sale(),
        standard_sale(),
    ]
}

#[tokio::test]
async fn every_vendor_valid_delivery_is_accepted_stored_and_announced_once() {
    for d in all_valid() {
        let h = harness();
        let first = h.send(&d).await.expect("accepted");
        assert!(
            matches!(first, Captured::Accepted { .. }),
            "{:?}: {first:?}",
            d.vendor
        );
        let again = h.send(&d).await.expect("duplicate");
        assert!(
            matches!(again, Captured::Duplicate { event_id: Some(_) }),
            "{:?}: {again:?}",
            d.vendor
        );
        assert_eq!(h.bus.events().len(), 1, "{:?}: exactly one event", d.vendor);
        assert_eq!(h.store.inner.records().await.expect("records").len(), 1);
        assert_eq!(
            h.store.inner.pending_outbox().await.expect("outbox").len(),
            1,
            "in the outbox for the publisher"
        );
    }
}

#[tokio::test]
async fn shopify_order_maps_to_the_canonical_sale() {
    let h = harness();
    h.send(&shopify_sale()).await.expect("accepted");
    let events = h.bus.events();
    let CanonicalEvent::SaleCompleted(sale) = &events[0].event else {
        panic!("expected a sale, got {:?}", events[0].event);
    };
    assert_eq!(sale.sale_id.as_str(), "shopify:450789469");
    assert_eq!(sale.store_id.as_str(), "shopify:655441491");
    assert_eq!(sale.source.channel.as_deref(), Some("pos"));
    assert_eq!(
        sale.member_id.as_ref().map(|m| m.as_str()),
        Some("shopify:207119551")
    );
    assert_eq!(sale.lines.len(), 3);
    assert_eq!(sale.lines[0].unit_price.minor, 1999);
    assert_eq!(sale.lines[0].discount.minor, 200);
    assert_eq!(sale.total.minor, 6 * 1999 - 200);
    assert_eq!(sale.occurred_at.to_rfc3339(), "2026-01-15T10:00:00+00:00");
    assert_eq!(events[0].correlation_id, "test-correlation");
}

#[tokio::test]
async fn shopify_refund_maps_to_a_restocked_return() {
    let h = harness();
    let d = samples::shopify(
        "refunds/create",
        "evt-r1",
        &samples::shopify_refund(509_562_969, 450_789_469),
        None,
    );
    assert!(matches!(h.send(&d).await, Ok(Captured::Accepted { .. })));
    let CanonicalEvent::ReturnCompleted(ret) = &h.bus.events()[0].event else {
        panic!("expected a return")
    };
    assert_eq!(
        ret.sale_id.as_ref().map(|s| s.as_str()),
        Some("shopify:450789469")
    );
    assert!(ret.lines[0].restock);
    assert_eq!(
        ret.lines[0].sku.as_ref().map(|s| s.as_str()),
        Some("SKU-001")
    );
    assert_eq!(ret.total_refund.minor, 1799);
}

/// The sales the bus received, in order.
fn published_sales(h: &Harness) -> Vec<pos_shared::model::Sale> {
    h.bus
        .events()
        .into_iter()
        .filter_map(|e| match e.event {
            CanonicalEvent::SaleCompleted(s) => Some(s),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn shopify_line_discounts_come_from_discount_allocations_and_reconcile_with_the_subtotal() {
    let h = harness();
    let order = samples::shopify_discounted_order(820_982_911);
    let d = samples::shopify("orders/create", "evt-disc", &order, None);
    assert!(matches!(h.send(&d).await, Ok(Captured::Accepted { .. })));
    let sales = published_sales(&h);
    let sale = &sales[0];
    let discounts: Vec<i64> = sale.lines.iter().map(|l| l.discount.minor).collect();
    // Code 8.00 + automatic 8.51; automatic 2.95; automatic 3.54, in EUR (shop money), never USD.
    assert_eq!(discounts, vec![1651, 295, 354]);
    let net: i64 = sale
        .lines
        .iter()
        .map(|l| l.unit_price.minor * i64::from(l.quantity.get()) - l.discount.minor)
        .sum();
    assert_eq!(
        net, 11_197,
        "lines after discounts = Shopify's subtotal_price 111.97"
    );
    assert_eq!(
        sale.total.minor, 13_436,
        "total_price; the free shipping is on the shipping line, not on the items"
    );
}

#[tokio::test]
async fn shopify_legacy_total_discount_is_not_added_to_the_allocations() {
    let h = harness();
    // The sample repeats the 2.00 allocation in the legacy total_discount.
    h.send(&shopify_sale()).await.expect("accepted");
    let sale = &published_sales(&h)[0];
    assert_eq!(sale.lines[0].discount.minor, 200);
    let net: i64 = sale
        .lines
        .iter()
        .map(|l| l.unit_price.minor * i64::from(l.quantity.get()) - l.discount.minor)
        .sum();
    assert_eq!(
        net, sale.total.minor,
        "tax-inclusive, no shipping: subtotal = total"
    );
}

#[tokio::test]
async fn shopify_unpaid_order_is_recorded_but_is_a_sale_only_once_paid() {
    for status in ["pending", "authorized", "partially_paid"] {
        let h = harness();
        let mut order = samples::shopify_order(450_789_500, 2);
        order["financial_status"] = json!(status);
        let created = samples::shopify("orders/create", "evt-c", &order, None);
        let answer = h.send(&created).await.expect("acknowledged");
        assert!(
            matches!(&answer, Captured::Ignored { reason } if reason.contains(status)),
            "{status}: {answer:?}"
        );
        assert_eq!(answer.status().as_u16(), 200);
        assert!(
            h.bus.events().is_empty(),
            "{status}: no sale before payment"
        );
        let redelivered = h.send(&created).await.expect("same delivery");
        assert!(
            matches!(redelivered, Captured::Duplicate { event_id: None }),
            "the delivery is stored"
        );

        order["financial_status"] = json!("paid");
        let paid = samples::shopify("orders/paid", "evt-p", &order, None);
        assert!(matches!(h.send(&paid).await, Ok(Captured::Accepted { .. })));
        let sales = published_sales(&h);
        assert_eq!(sales.len(), 1);
        assert_eq!(sales[0].sale_id.as_str(), "shopify:450789500");
    }
}

#[tokio::test]
async fn shopify_orders_paid_after_a_paid_orders_create_is_the_same_sale() {
    let h = harness();
    let first = h.send(&shopify_sale()).await.expect("accepted");
    let Captured::Accepted { event_id } = first else {
        panic!("{first:?}")
    };
    let paid = samples::shopify(
        "orders/paid",
        "evt-paid",
        &samples::shopify_order(450_789_469, 3),
        None,
    );
    let again = h.send(&paid).await.expect("duplicate of the fact");
    assert_eq!(
        again,
        Captured::Duplicate {
            event_id: Some(event_id)
        }
    );
    assert_eq!(h.bus.events().len(), 1, "one sale, one event");
    assert_eq!(h.store.inner.records().await.expect("records").len(), 1);
}

#[tokio::test]
async fn shopify_orders_updated_never_makes_a_sale() {
    let h = harness();
    let d = samples::shopify(
        "orders/updated",
        "evt-u",
        &samples::shopify_order(450_789_501, 1),
        None,
    );
    assert!(matches!(h.send(&d).await, Ok(Captured::Ignored { .. })));
    assert!(h.bus.events().is_empty());
}

#[tokio::test]
async fn shopify_test_orders_have_no_effect_unless_configured() {
    let mut order = samples::shopify_order(450_789_502, 1);
    order["test"] = json!(true);
    let refund = {
        let mut r = samples::shopify_refund(509_562_970, 450_789_502);
        r["transactions"][0]["test"] = json!(true);
        r
    };
    let h = harness();
    for (topic, body) in [
        ("orders/create", &order),
        ("orders/paid", &order),
        ("refunds/create", &refund),
    ] {
        let d = samples::shopify(topic, &format!("evt-t-{topic}"), body, None);
        let answer = h.send(&d).await.expect("acknowledged");
        assert!(
            matches!(&answer, Captured::Ignored { reason } if reason.contains("test")),
            "{topic}: {answer:?}"
        );
    }
    assert!(h.bus.events().is_empty());

    let accepting = harness_with_mapping(
        dev_secrets(),
        MappingConfig {
            shopify_accept_test_orders: true,
            ..nzd_mapping()
        },
    );
    let d = samples::shopify("orders/create", "evt-t", &order, None);
    assert!(matches!(
        accepting.send(&d).await,
        Ok(Captured::Accepted { .. })
    ));
    let d = samples::shopify("refunds/create", "evt-tr", &refund, None);
    assert!(matches!(
        accepting.send(&d).await,
        Ok(Captured::Accepted { .. })
    ));
    // A non-boolean flag is not guessed at: quarantined (and acknowledged, as every vendor delivery).
    order["test"] = json!("yes");
    let d = samples::shopify("orders/create", "evt-t2", &order, None);
    assert!(matches!(h.send(&d).await, Ok(Captured::Quarantined)));
}

#[tokio::test]
async fn shopify_cancellation_of_a_paid_order_counts_once_through_its_refund() {
    let h = harness();
    let order = samples::shopify_order(450_789_510, 1);
    let created = samples::shopify("orders/create", "evt-k1", &order, None);
    assert!(matches!(
        h.send(&created).await,
        Ok(Captured::Accepted { .. })
    ));
    let refund = samples::shopify(
        "refunds/create",
        "evt-k2",
        &samples::shopify_cancel_refund(509_562_980, 450_789_510, true),
        None,
    );
    assert!(matches!(
        h.send(&refund).await,
        Ok(Captured::Accepted { .. })
    ));
    let cancelled = samples::shopify(
        "orders/cancelled",
        "evt-k3",
        &samples::shopify_cancelled_order(450_789_510, 509_562_980, true),
        None,
    );
    let answer = h.send(&cancelled).await.expect("acknowledged");
    assert!(matches!(answer, Captured::Ignored { .. }), "{answer:?}");
    // Shopify retries the refund under a new webhook id, same event id.
    let retry = refund
        .clone()
        .with_header("x-shopify-webhook-id", "wh-retry");
    assert!(matches!(
        h.send(&retry).await,
        Ok(Captured::Duplicate { .. })
    ));

    let events = h.bus.events();
    assert_eq!(events.len(), 2, "the sale and one return");
    let CanonicalEvent::ReturnCompleted(ret) = &events[1].event else {
        panic!("expected a return, got {:?}", events[1].event)
    };
    assert_eq!(ret.return_id.as_str(), "shopify:509562980");
    assert_eq!(
        ret.sale_id.as_ref().map(|s| s.as_str()),
        Some("shopify:450789510")
    );
    assert!(ret.lines[0].restock, "cancelled items go back to stock");
    assert_eq!(ret.total_refund.minor, 1799);
}

#[tokio::test]
async fn shopify_cancellation_of_an_unpaid_order_has_no_effect() {
    let h = harness();
    let mut order = samples::shopify_order(450_789_511, 1);
    order["financial_status"] = json!("pending");
    let deliveries = [
        samples::shopify("orders/create", "evt-u1", &order, None),
        samples::shopify(
            "refunds/create",
            "evt-u2",
            &samples::shopify_cancel_refund(509_562_981, 450_789_511, false),
            None,
        ),
        samples::shopify(
            "orders/cancelled",
            "evt-u3",
            &samples::shopify_cancelled_order(450_789_511, 509_562_981, false),
            None,
        ),
    ];
    for d in &deliveries {
        let answer = h.send(d).await.expect("acknowledged");
        assert!(matches!(answer, Captured::Ignored { .. }), "{answer:?}");
    }
    assert!(
        h.bus.events().is_empty(),
        "no sale, so no stock or points to give back"
    );
    assert!(h.store.inner.records().await.expect("records").is_empty());
}

#[tokio::test]
async fn square_completed_payment_is_recorded_awaiting_enrichment_others_ignored() {
    let h = harness();
    assert!(matches!(
        h.send(&square_sale()).await,
        Ok(Captured::Accepted { .. })
    ));
    let CanonicalEvent::SaleAwaitingEnrichment(p) = &h.bus.events()[0].event else {
        panic!("pending sale")
    };
    assert_eq!(p.amount.minor, 2599);
    assert_eq!(p.order_id.as_deref(), Some("CAISENgvlJ6jLWAzERDzjyHVybY"));
    let approved = samples::square(
        &samples::square_payment("sq-evt-2", "pay-2", "APPROVED"),
        None,
    );
    assert!(matches!(
        h.send(&approved).await,
        Ok(Captured::Ignored { .. })
    ));
    let test = samples::square(&samples::square_test_notification("sq-test"), None);
    assert!(matches!(h.send(&test).await, Ok(Captured::Ignored { .. })));
    assert!(matches!(
        h.send(&test).await,
        Ok(Captured::Duplicate { event_id: None })
    ));
    let unknown = samples::square(
        &json!({"event_id": "sq-x", "type": "customer.created", "data": {}}),
        None,
    );
    assert_eq!(h.status(&unknown).await, 200);
    assert_eq!(
        h.bus.events().len(),
        1,
        "ignored deliveries publish nothing"
    );
}

#[tokio::test]
async fn square_payment_updated_twice_for_one_payment_is_one_fact() {
    let h = harness();
    h.send(&square_sale()).await.expect("first");
    let second = samples::square(
        &samples::square_payment("sq-evt-9", "pay-1", "COMPLETED"),
        None,
    );
    assert!(matches!(
        h.send(&second).await,
        Ok(Captured::Duplicate { event_id: Some(_) })
    ));
    assert_eq!(h.bus.events().len(), 1);
}

#[tokio::test]
async fn lightspeed_maps_closed_sales_ignores_open_ones_and_dedupes_versions() {
    let h = harness();
    assert!(matches!(
        h.send(&lightspeed_sale()).await,
        Ok(Captured::Accepted { .. })
    ));
    let CanonicalEvent::SaleCompleted(sale) = &h.bus.events()[0].event else {
        panic!("sale")
    };
    assert_eq!(sale.currency.code(), "NZD");
    assert_eq!(
        sale.lines[0].sku.as_ref().map(|s| s.as_str()),
        Some("lightspeed-product:0adaafb3-6583-11e5-fb60-0242f1c6e36b")
    );
    assert_eq!(
        sale.lines[1].sku.as_ref().map(|s| s.as_str()),
        Some("MUG-BLUE")
    );
    assert_eq!(sale.total.minor, 3164);
    let v2 = samples::lightspeed(
        "sale.update",
        &samples::lightspeed_sale("ls-sale-1", 2, "CLOSED"),
        None,
    );
    assert!(
        matches!(h.send(&v2).await, Ok(Captured::Duplicate { .. })),
        "a later version of a captured sale"
    );
    let saved = samples::lightspeed(
        "sale.update",
        &samples::lightspeed_sale("ls-sale-2", 1, "SAVED"),
        None,
    );
    assert!(matches!(h.send(&saved).await, Ok(Captured::Ignored { .. })));
    let product = samples::lightspeed("product.update", &json!({"id": "p1", "version": 4}), None);
    assert!(matches!(
        h.send(&product).await,
        Ok(Captured::Ignored { .. })
    ));
    assert_eq!(h.bus.events().len(), 1);
}

#[tokio::test]
async fn tampered_bodies_are_refused_for_every_vendor() {
    for d in all_valid() {
        let h = harness();
        let mut body = d.body.clone();
        let last = body.len() - 2;
        body[last] ^= 0x01;
        let tampered = d.clone().with_body(body);
        assert!(
            matches!(
                h.send(&tampered).await,
                Err(CaptureError::Unauthorized(AuthError::BadSignature))
            ),
            "{:?}",
            d.vendor
        );
        assert!(h.bus.events().is_empty());
    }
}

#[tokio::test]
async fn wrong_keys_are_refused_for_every_vendor() {
    let wrong = [
        samples::shopify(
            "orders/create",
            "e",
            &samples::shopify_order(1, 1),
            Some("not-the-secret"),
        ),
        samples::square(
            &samples::square_payment("e", "p", "COMPLETED"),
            Some("not-the-key"),
        ),
        samples::lightspeed(
            "sale.update",
            &samples::lightspeed_sale("s", 1, "CLOSED"),
            Some("not-the-secret"),
        ),
        samples::standard(
            "m",
            &samples::standard_sale("s", "st", None, 1),
            samples::sample_time(),
            Some("whsec_bm90LXRoZS1rZXk="),
        ),
    ];
    for d in wrong {
        assert_eq!(harness().status(&d).await, 401, "{:?}", d.vendor);
    }
}

#[tokio::test]
async fn previous_keys_still_verify_during_rotation() {
    let rotated = VendorSecrets::from_json(
        r#"{
        "shopify": {"webhook_secret": ["new-shopify", "dev-shopify-client-secret"]},
        "square": {"signature_key": ["new-square", "dev-square-signature-key"], "notification_url": "http://localhost:3000/webhooks/square"},
        "lightspeed": {"client_secret": ["new-ls", "dev-lightspeed-client-secret"]},
        "standard": {"secrets": ["whsec_bmV3LWtleQ==", "whsec_ZGV2LXN0YW5kYXJkLXdlYmhvb2tzLWtleS0wMQ=="]}
    }"#,
    )
    .expect("secrets");
    for d in all_valid() {
        let h = harness_with(rotated.clone());
        assert_eq!(
            h.status(&d).await,
            202,
            "{:?} signed with the previous key",
            d.vendor
        );
    }
    // And the new key works too.
    let h = harness_with(rotated);
    let d = samples::shopify(
        "orders/create",
        "evt-new",
        &samples::shopify_order(7, 1),
        Some("new-shopify"),
    );
    assert_eq!(h.status(&d).await, 202);
}

#[tokio::test]
async fn missing_signature_headers_are_401() {
    let cases = [
        shopify_sale().without_header("x-shopify-hmac-sha256"),
        square_sale().without_header("x-square-hmacsha256-signature"),
        lightspeed_sale().without_header("x-signature"),
        standard_sale().without_header("webhook-signature"),
        standard_sale().without_header("webhook-timestamp"),
        standard_sale().without_header("webhook-id"),
    ];
    for d in cases {
        assert!(
            matches!(
                harness().send(&d).await,
                Err(CaptureError::Unauthorized(AuthError::MissingHeader(_)))
            ),
            "{:?}",
            d.headers
        );
    }
}

#[tokio::test]
async fn shopify_accepts_the_new_header_name() {
    let d = shopify_sale();
    let sig = d.header("x-shopify-hmac-sha256").expect("sig").to_owned();
    let renamed = d
        .without_header("x-shopify-hmac-sha256")
        .with_header("shopify-hmac-sha256", &sig);
    assert_eq!(harness().status(&renamed).await, 202);
}

#[tokio::test]
async fn lightspeed_refuses_other_algorithms_and_accepts_base64() {
    let d = lightspeed_sale();
    let sig = d.header("x-signature").expect("sig").to_owned();
    let sha1 = d
        .clone()
        .with_header("x-signature", &sig.replace("HMAC-SHA256", "HMAC-SHA1"));
    assert!(matches!(
        harness().send(&sha1).await,
        Err(CaptureError::Unauthorized(AuthError::MalformedHeader(_)))
    ));
    let hex_sig = sig
        .trim_start_matches("signature=")
        .split(',')
        .next()
        .expect("hex");
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(hex::decode(hex_sig).expect("hex"))
    };
    let reordered = d.with_header(
        "x-signature",
        &format!("algorithm=HMAC-SHA256, signature={b64}"),
    );
    assert_eq!(harness().status(&reordered).await, 202);
}

#[tokio::test]
async fn standard_webhooks_tolerance_is_five_minutes_both_ways() {
    let body = samples::standard_sale("s-1", "store-001", None, 1);
    let h = harness();
    let t0 = samples::sample_time();
    let stale = samples::standard("msg_stale", &body, t0 - Duration::seconds(301), None);
    assert!(matches!(
        h.send(&stale).await,
        Err(CaptureError::Unauthorized(AuthError::StaleTimestamp))
    ));
    let future = samples::standard("msg_future", &body, t0 + Duration::seconds(301), None);
    assert!(matches!(
        h.send(&future).await,
        Err(CaptureError::Unauthorized(AuthError::FutureTimestamp))
    ));
    let edge = samples::standard("msg_edge", &body, t0 - Duration::seconds(300), None);
    assert_eq!(h.status(&edge).await, 202);
    // A valid delivery replayed later than the tolerance is refused, not deduplicated silently.
    h.clock.advance(Duration::minutes(10));
    assert_eq!(h.status(&edge).await, 401);
}

#[tokio::test]
async fn standard_webhooks_any_of_several_signatures_passes() {
    let d = standard_sale();
    let good = d.header("webhook-signature").expect("sig").to_owned();
    let multi = d.with_header(
        "webhook-signature",
        &format!("v1,Zm9yZ2Vk v1a,aWdub3JlZA== {good}"),
    );
    assert_eq!(harness().status(&multi).await, 202);
}

#[tokio::test]
async fn malformed_bodies_are_400_and_not_stored() {
    let t0 = samples::sample_time();
    let not_json = b"{\"id\": 1,".to_vec();
    let non_utf8 = vec![0xff, 0xfe, b'{', b'}'];
    let cases = [
        SignedDelivery {
            body: not_json.clone(),
            ..samples::shopify("orders/create", "e-bad", &json!({}), None)
        },
        SignedDelivery {
            body: non_utf8.clone(),
            ..samples::shopify("orders/create", "e-bad2", &json!({}), None)
        },
    ];
    for d in cases {
        // Re-sign over the broken body: the signature is right, the content is not.
        let sig =
            pos_shared::vendors::signing::shopify_signature("dev-shopify-client-secret", &d.body);
        let d = d.with_header("x-shopify-hmac-sha256", &sig);
        assert!(matches!(
            harness().send(&d).await,
            Err(CaptureError::Malformed(_))
        ));
    }
    let sq = samples::square(&json!({"type": "payment.updated"}), None);
    assert!(
        matches!(harness().send(&sq).await, Err(CaptureError::Malformed(_))),
        "no event_id"
    );
    let sq_bad: SignedDelivery = {
        let key = "dev-square-signature-key";
        let url = "http://localhost:3000/webhooks/square";
        let body = non_utf8.clone();
        samples::square(&json!({}), None)
            .with_body(body.clone())
            .with_header(
                "x-square-hmacsha256-signature",
                &pos_shared::vendors::signing::square_signature(key, url, &body),
            )
    };
    assert!(matches!(
        harness().send(&sq_bad).await,
        Err(CaptureError::Malformed(_))
    ));
    let ls = {
        let body = b"payload=%7Bnot-json".to_vec();
        samples::lightspeed("sale.update", &json!({}), None)
            .with_body(body.clone())
            .with_header(
                "x-signature",
                &pos_shared::vendors::signing::lightspeed_signature_header(
                    "dev-lightspeed-client-secret",
                    &body,
                ),
            )
    };
    assert!(matches!(
        harness().send(&ls).await,
        Err(CaptureError::Malformed(_))
    ));
    let std_bad = {
        let d = samples::standard("msg_bad", &json!({}), t0, None).with_body(not_json);
        let sig = pos_shared::vendors::signing::standard_signature(
            "whsec_ZGV2LXN0YW5kYXJkLXdlYmhvb2tzLWtleS0wMQ==",
            "msg_bad",
            t0.timestamp(),
            &d.body,
        )
        .expect("sig");
        d.with_header("webhook-signature", &sig)
    };
    assert!(matches!(
        harness().send(&std_bad).await,
        Err(CaptureError::Malformed(_))
    ));
}

#[tokio::test]
async fn deeply_nested_json_is_a_clean_400() {
    let depth = 10_000;
    let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
    let sig = pos_shared::vendors::signing::shopify_signature("dev-shopify-client-secret", &body);
    let d = shopify_sale()
        .with_body(body)
        .with_header("x-shopify-hmac-sha256", &sig);
    let h = Harness {
        ..harness_with(dev_secrets())
    };
    // Within the body limit? 20 KB: yes.
    assert!(matches!(h.send(&d).await, Err(CaptureError::Malformed(_))));
}

#[tokio::test]
async fn wrong_media_type_is_415() {
    for d in all_valid() {
        let wrong = d.clone().with_header("content-type", "text/plain");
        assert_eq!(harness().status(&wrong).await, 415, "{:?}", d.vendor);
        let missing = d.clone().without_header("content-type");
        assert_eq!(harness().status(&missing).await, 415, "{:?}", d.vendor);
    }
    let with_charset =
        shopify_sale().with_header("content-type", "application/json; charset=utf-8");
    assert_eq!(harness().status(&with_charset).await, 202);
}

#[tokio::test]
async fn huge_body_is_413_before_anything_else() {
    let d = shopify_sale().with_body(vec![b' '; 64 * 1024 + 1]);
    assert_eq!(harness().status(&d).await, 413);
}

#[tokio::test]
async fn unknown_vendor_and_wrong_method() {
    let h = harness();
    let mut req = shopify_sale().to_request("c");
    req.vendor = "clover".into();
    assert_eq!(
        h.svc
            .handle(&req)
            .await
            .map_err(|e| e.status().as_u16())
            .err(),
        Some(404)
    );
    let mut req = shopify_sale().to_request("c");
    req.method = http::Method::GET;
    assert_eq!(
        h.svc
            .handle(&req)
            .await
            .map_err(|e| e.status().as_u16())
            .err(),
        Some(405)
    );
}

#[tokio::test]
async fn unknown_event_types() {
    let h = harness();
    let other_topic = samples::shopify("products/update", "evt-p", &json!({"id": 1}), None);
    assert!(matches!(
        h.send(&other_topic).await,
        Ok(Captured::Ignored { .. })
    ));
    let std_unknown = samples::standard(
        "msg_u",
        &json!({"type": "sale.voided", "data": {}}),
        samples::sample_time(),
        None,
    );
    assert!(
        matches!(
            h.send(&std_unknown).await,
            Err(CaptureError::Unmappable { .. })
        ),
        "our own schema is strict"
    );
    assert_eq!(h.store.inner.quarantined().await.expect("q").len(), 1);
}

#[tokio::test]
async fn amounts_with_too_many_decimals_are_quarantined() {
    let h = harness();
    let mut order = samples::shopify_order(99, 1);
    order["line_items"][0]["price"] = json!("19.999");
    let d = samples::shopify("orders/create", "evt-precise", &order, None);
    // A vendor's delivery: acknowledged (the vendor cannot fix our mapping), kept with the reason.
    assert!(matches!(h.send(&d).await, Ok(Captured::Quarantined)));
    let q = h.store.inner.quarantined().await.expect("q");
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].delivery_key, "evt-precise");
    assert!(q[0].reason.contains("decimal places"), "{}", q[0].reason);
    assert!(h.bus.events().is_empty());
    // JPY has no minor unit.
    let mut yen = samples::standard_sale("s-yen", "store-jp", None, 1);
    yen["data"]["currency"] = json!("JPY");
    let d = samples::standard("msg_yen", &yen, samples::sample_time(), None);
    assert_eq!(
        h.status(&d).await,
        422,
        "12.50 JPY is not an amount: a Standard sender is told"
    );
}

#[tokio::test]
async fn same_delivery_id_with_another_payload_is_a_conflict() {
    let h = harness();
    h.send(&standard_sale()).await.expect("first");
    let other = samples::standard(
        "msg_1",
        &samples::standard_sale("till-7:0002", "store-001", None, 1),
        samples::sample_time(),
        None,
    );
    assert!(matches!(h.send(&other).await, Err(CaptureError::Conflict)));
    assert_eq!(h.bus.events().len(), 1);
}

/// The capture's 202 means stored, with the event in the outbox for the stream publisher; redeliveries
/// find the stored delivery and add nothing (the event is already on its way: the sweep covers a
/// publisher that failed).
#[tokio::test]
async fn an_accepted_sale_is_announced_once_and_redeliveries_add_nothing() {
    let h = harness();
    assert!(matches!(
        h.send(&standard_sale()).await,
        Ok(Captured::Accepted { .. })
    ));
    assert_eq!(
        h.store.inner.pending_outbox().await.expect("outbox").len(),
        1,
        "pending until the publisher takes it"
    );
    assert_eq!(h.bus.events().len(), 1);
    for _ in 0..2 {
        assert!(matches!(
            h.send(&standard_sale()).await,
            Ok(Captured::Duplicate { event_id: Some(_) })
        ));
    }
    assert_eq!(h.bus.events().len(), 1);
    assert_eq!(
        h.store.inner.pending_outbox().await.expect("outbox").len(),
        1
    );
}

#[tokio::test]
async fn storage_failure_is_503_never_duplicate() {
    let h = harness();
    h.store.fail_captures.store(1, Ordering::SeqCst);
    assert_eq!(h.status(&standard_sale()).await, 503);
    assert_eq!(
        h.status(&standard_sale()).await,
        202,
        "the retry succeeds as new"
    );
}

#[tokio::test]
async fn unconfigured_vendor_is_503() {
    let only_shopify =
        VendorSecrets::from_json(r#"{"shopify":{"webhook_secret":"x"}}"#).expect("secrets");
    let h = harness_with(only_shopify);
    assert_eq!(h.status(&standard_sale()).await, 503);
}

#[tokio::test]
async fn expired_delivery_records_no_longer_deduplicate_but_facts_still_do() {
    let h = harness();
    let d = shopify_sale();
    h.send(&d).await.expect("first");
    h.clock.advance(Duration::days(8));
    assert!(
        matches!(h.send(&d).await, Ok(Captured::Duplicate { .. })),
        "the canonical record still dedupes"
    );
    assert_eq!(h.bus.events().len(), 1);
}

#[tokio::test]
async fn each_invocation_emits_one_emf_document_with_its_outcome_and_latency() {
    use pos_shared::metrics::{Metrics, Sink};
    let h = harness();
    let metrics = Arc::new(Metrics::new(
        "sale-capture",
        Sink::Memory(std::sync::Mutex::new(Vec::new())),
    ));
    let svc = CaptureService::new(
        h.store.clone(),
        Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
        h.clock.clone(),
        CaptureSettings::default(),
    )
    .with_metrics(metrics.clone());
    for d in [
        standard_sale(),
        standard_sale(),
        standard_sale().with_body(b"{}".to_vec()),
    ] {
        let event = serde_json::to_string(&d.to_apigw_event("r")).expect("event");
        let req = pos_shared::http::request_from_event_json(&event).expect("request");
        pos_shared::http::handle(&svc, req).await;
    }
    let docs = metrics.recorded();
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[0]["Captured"], 1.0);
    assert_eq!(docs[1]["Duplicates"], 1.0);
    assert_eq!(docs[2]["SignatureFailures"], 1.0);
    assert!(docs.iter().all(|d| d["HandlerLatency"].as_f64().is_some()));
}

fn ls(payload: &serde_json::Value) -> SignedDelivery {
    samples::lightspeed("sale.update", payload, None)
}

#[tokio::test]
async fn lightspeed_documented_sale_update_is_accepted_with_the_register_as_store() {
    let h = harness();
    let d = ls(&samples::lightspeed_documented_sale_update());
    assert_eq!(h.status(&d).await, 202);
    let events = h.bus.events();
    assert_eq!(events.len(), 1);
    let CanonicalEvent::SaleCompleted(sale) = &events[0].event else {
        panic!("sale")
    };
    assert_eq!(
        sale.store_id.as_str(),
        "lightspeed-register:06e94082-ed4a-11e5-f0fc-8b1d6e838b2c"
    );
    assert_eq!(
        sale.sale_id.as_str(),
        "lightspeed:0adfd74a-ed4a-11e5-f0fc-8b1d6e7c81c8"
    );
    assert_eq!((sale.total.minor, sale.tax.minor), (6500, 848));
    let line = &sale.lines[0];
    assert_eq!(
        (
            line.unit_price.minor,
            line.discount.minor,
            line.quantity.get()
        ),
        (6500, 0, 1)
    );
    assert_eq!(
        line.sku.as_ref().map(|s| s.as_str()),
        Some("lightspeed-product:0adaafb3-6583-11e5-fb60-0242f1c6e36b")
    );
    assert_eq!(h.status(&d).await, 200, "a redelivery is a duplicate");
    assert_eq!(h.bus.events().len(), 1);
}

#[tokio::test]
async fn lightspeed_register_map_names_the_outlet() {
    let mut mapping = nzd_mapping();
    mapping.lightspeed_registers.insert(
        "06e94082-ed4a-11e5-f0fc-8b1d6e838b2c".into(),
        "06e94082-ed4a-11e5-f0fc-8b1d6e7b2ae8".into(),
    );
    let h = harness_with_mapping(dev_secrets(), mapping);
    assert_eq!(
        h.status(&ls(&samples::lightspeed_documented_sale_update()))
            .await,
        202
    );
    assert_eq!(
        h.bus.events()[0].event.store_id().as_str(),
        "lightspeed:06e94082-ed4a-11e5-f0fc-8b1d6e7b2ae8"
    );
}

#[tokio::test]
async fn lightspeed_bad_amounts_and_lines_are_quarantined() {
    let base = samples::lightspeed_documented_sale_update();
    let mut cases: Vec<(&str, serde_json::Value, &str)> = Vec::new();
    let mut v = base.clone();
    v["totals"]["total_price"] = json!("57.52174");
    cases.push(("mismatched totals", v, "does not reconcile"));
    let mut v = base.clone();
    v["register_sale_payments"][0]["amount"] = json!("65.001");
    cases.push(("too-precise payment", v, "payment 0"));
    let mut v = base.clone();
    v["register_sale_payments"][0]["amount"] = json!("64.99");
    cases.push(("payments short", v, "payments"));
    let mut v = base.clone();
    v["totals"]["total_payment"] = json!("65.00001");
    cases.push(("too-precise paid total", v, "total_payment"));
    let mut v = base.clone();
    v["register_sale_products"][0]["quantity"] = json!(-1);
    v["totals"] = json!({"total_price": "-56.52174", "total_tax": "-8.47826"});
    v["register_sale_payments"] = json!([]);
    cases.push(("negative quantity without return_for", v, "return_for"));
    let mut v = base.clone();
    v["register_sale_products"][0]["product_id"] = json!(null);
    cases.push(("neither sku nor product", v, "no sku and no product_id"));
    let mut v = base.clone();
    v["register_sale_products"][0]["price"] = json!("56.521745");
    cases.push(("six decimals", v, "price"));
    let mut v = base.clone();
    v["register_sale_products"][0]["quantity"] = json!(0);
    cases.push(("zero quantity", v, "quantity"));
    let mut v = base;
    v["register_id"] = json!(null);
    cases.push(("no outlet, no register", v, "register_id"));
    for (name, payload, expected) in cases {
        let h = harness();
        // A vendor's delivery: acknowledged and quarantined with the reason.
        let answer = h.send(&ls(&payload)).await;
        assert!(
            matches!(answer, Ok(Captured::Quarantined)),
            "{name}: {answer:?}"
        );
        let kept = h.store.inner.quarantined().await.expect("quarantine");
        assert_eq!(kept.len(), 1, "{name}");
        assert!(
            kept[0].reason.contains(expected),
            "{name}: {}",
            kept[0].reason
        );
        assert!(h.bus.events().is_empty(), "{name}");
    }
}

#[tokio::test]
async fn lightspeed_return_and_exchange_each_count_once() {
    let h = harness();
    assert_eq!(h.status(&lightspeed_sale()).await, 202);
    let ret = ls(&samples::lightspeed_return("ls-ret-1", "ls-sale-1", false));
    assert_eq!(h.status(&ret).await, 202);
    let events = h.bus.events();
    let CanonicalEvent::ReturnCompleted(r) = &events[1].event else {
        panic!("return")
    };
    assert_eq!(r.return_id.as_str(), "lightspeed:ls-ret-1");
    assert_eq!(
        r.sale_id.as_ref().map(|s| s.as_str()),
        Some("lightspeed:ls-sale-1")
    );
    assert_eq!(
        (
            r.lines[0].quantity.get(),
            r.lines[0].refund.minor,
            r.total_refund.minor
        ),
        (1, 1208, 1208)
    );
    assert!(r.lines[0].restock);
    assert_eq!(h.status(&ret).await, 200);

    let exchange = samples::lightspeed_return("ls-exch-1", "ls-sale-1", true);
    assert_eq!(h.status(&ls(&exchange)).await, 202);
    let events = h.bus.events();
    assert_eq!(
        events.len(),
        4,
        "the exchange publishes a sale and a return"
    );
    let CanonicalEvent::SaleCompleted(s) = &events[2].event else {
        panic!("exchange sale")
    };
    assert_eq!(
        (s.sale_id.as_str(), s.total.minor, s.lines.len()),
        ("lightspeed:ls-exch-1", 748, 1)
    );
    let CanonicalEvent::ReturnCompleted(r) = &events[3].event else {
        panic!("exchange return")
    };
    assert_eq!(
        (r.return_id.as_str(), r.total_refund.minor),
        ("lightspeed:ls-exch-1", 1208)
    );
    // The same delivery again, and a later version of the same sale: nothing counts twice.
    assert_eq!(h.status(&ls(&exchange)).await, 200);
    let mut v2 = exchange;
    v2["version"] = json!(2);
    assert_eq!(h.status(&ls(&v2)).await, 200);
    assert_eq!(h.bus.events().len(), 4);
}

#[tokio::test]
async fn lightspeed_void_reverses_a_captured_sale_once_and_ignores_an_unseen_one() {
    use pos_shared::loyalty::embedded::EmbeddedLoyaltyLedger;
    use pos_shared::loyalty::rules::LoyaltyRules;
    use pos_shared::loyalty::{LoyaltyAccrual, LoyaltyLedger};
    use pos_shared::metrics::{Metrics, Sink};
    use pos_shared::stock::StockLedger;
    use pos_shared::stock::StockSync;
    use pos_shared::stock::embedded::EmbeddedStockLedger;

    let h = harness();
    let never = ls(&samples::lightspeed_sale("ls-parked", 3, "VOIDED"));
    match h.send(&never).await {
        Ok(Captured::Ignored { reason }) => assert!(reason.contains("never captured"), "{reason}"),
        other => panic!("expected ignored, got {other:?}"),
    }
    assert_eq!(h.status(&lightspeed_sale()).await, 202);
    let void = ls(&samples::lightspeed_sale("ls-sale-1", 3, "VOIDED"));
    assert_eq!(h.status(&void).await, 202);
    assert_eq!(h.status(&void).await, 200);
    let v4 = ls(&samples::lightspeed_sale("ls-sale-1", 4, "VOIDED"));
    assert_eq!(h.status(&v4).await, 200, "a later version of the void");
    let events = h.bus.events();
    assert_eq!(events.len(), 2);
    let CanonicalEvent::ReturnCompleted(r) = &events[1].event else {
        panic!("void")
    };
    assert_eq!(r.return_id.as_str(), "lightspeed:ls-sale-1:void");
    assert_eq!(r.total_refund.minor, 3164);

    // Through the consumers, every event delivered twice: stock and points come back exactly once.
    let stock = Arc::new(EmbeddedStockLedger::in_memory().expect("stock"));
    let loyalty = Arc::new(EmbeddedLoyaltyLedger::in_memory().expect("loyalty"));
    let metrics = Arc::new(Metrics::new("test", Sink::Off));
    let sync = StockSync::new(
        stock.clone(),
        Arc::new(pos_shared::bus::memory::RecordingBus::new()),
        h.clock.clone(),
        0,
        metrics.clone(),
    );
    let accrual = LoyaltyAccrual::new(loyalty.clone(), LoyaltyRules::default_rules(), metrics);
    let store = events[0].event.store_id().clone();
    let sku = pos_shared::ids::Sku::parse("MUG-BLUE").expect("sku");
    let member =
        pos_shared::ids::MemberId::parse("lightspeed:0adaafb3-6583-11e5-fb60-f2f1e9f8b6b3")
            .expect("member");
    let mut after_sale = None;
    for (i, e) in events.iter().enumerate() {
        for _ in 0..2 {
            let body = serde_json::to_string(&pos_shared::bus::BusMessage::new(
                format!("eb-{i}"),
                e.clone(),
            ))
            .expect("body");
            sync.handle_body(&body).await.expect("stock");
            accrual.handle_envelope(e).await.expect("loyalty");
        }
        if i == 0 {
            after_sale = Some((
                stock.on_hand(&store, &sku).await.expect("on hand"),
                loyalty.balance(&member).await.expect("balance"),
            ));
        }
    }
    assert_eq!(after_sale.map(|(s, p)| (s, p > 0)), Some((-1, true)));
    assert_eq!(stock.on_hand(&store, &sku).await.expect("on hand"), 0);
    assert_eq!(loyalty.balance(&member).await.expect("balance"), 0);
}
