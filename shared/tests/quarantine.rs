//! The quarantine contract: a vendor's unmappable delivery is acknowledged (200 `quarantined`), a
//! Standard Webhooks one is refused (422); both are kept, and a reprocess after a mapping fix captures
//! each exactly once, even when reprocesses race, repeat or crash half-way.

use async_trait::async_trait;
use pos_shared::capture::{CaptureError, CaptureService, CaptureSettings, Captured};
use pos_shared::http::outcome_metric;
use pos_shared::model::Vendor;
use pos_shared::money::Currency;
use pos_shared::outbox::feed::Announced;
use pos_shared::ports::{ManualClock, QuarantineStore};
use pos_shared::quarantine::{ReportResult, Reprocessed, Reprocessor};
use pos_shared::samples::{self, SignedDelivery};
use pos_shared::secrets::{StaticSecrets, dev_secrets};
use pos_shared::store::embedded::EmbeddedStore;
use pos_shared::store::{QuarantineRecord, QuarantineResolution, StoreError, StoreInspect};
use pos_shared::vendors::MappingConfig;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// The platform before and after a mapping fix, on one store and one bus.
struct Platform {
    store: EmbeddedStore,
    bus: Arc<Announced>,
    clock: Arc<ManualClock>,
}

impl Platform {
    fn new() -> Self {
        let store = EmbeddedStore::in_memory().expect("store");
        Self {
            bus: Arc::new(Announced::new(&store)),
            store,
            clock: Arc::new(ManualClock::new(samples::sample_time())),
        }
    }

    /// The capture service with `mapping`: without a Lightspeed currency, Lightspeed sales (whose
    /// payloads carry none) cannot be mapped; configuring it is the "fix".
    fn capture(&self, lightspeed_currency: Option<&str>) -> Arc<CaptureService> {
        Arc::new(CaptureService::new(
            Arc::new(self.store.clone()),
            Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
            self.clock.clone(),
            CaptureSettings {
                mapping: MappingConfig {
                    lightspeed_currency: lightspeed_currency
                        .map(|c| Currency::parse(c).expect("ccy")),
                    shopify_accept_test_orders: false,
                    ..MappingConfig::default()
                },
                ..CaptureSettings::default()
            },
        ))
    }

    fn reprocessor<'a>(
        &'a self,
        fixed: &'a CaptureService,
        q: &'a dyn QuarantineStore,
    ) -> Reprocessor<'a> {
        Reprocessor::new(fixed, q, self.clock.as_ref())
    }
}

async fn send(svc: &CaptureService, d: &SignedDelivery) -> Result<Captured, CaptureError> {
    svc.handle(&d.to_request("corr-q")).await
}

fn lightspeed_sale() -> SignedDelivery {
    samples::lightspeed(
        "sale.update",
        &samples::lightspeed_sale("ls-q-1", 1, "CLOSED"),
        None,
    )
}

#[tokio::test]
async fn a_vendors_unmappable_delivery_is_acknowledged_and_kept() {
    let p = Platform::new();
    let broken = p.capture(None);
    let d = lightspeed_sale();
    let answer = send(&broken, &d).await;
    assert_eq!(answer.as_ref().ok(), Some(&Captured::Quarantined));
    assert_eq!(
        answer.as_ref().map(Captured::status).ok(),
        Some(http::StatusCode::OK)
    );
    assert_eq!(
        serde_json::to_value(answer.as_ref().expect("ok")).expect("json"),
        json!({"status": "quarantined"})
    );
    assert_eq!(outcome_metric(&answer), "Quarantined", "the alarm's metric");
    let kept = p.store.quarantined().await.expect("q");
    assert_eq!(kept.len(), 1);
    assert!(kept[0].reason.contains("currency"), "{}", kept[0].reason);
    assert!(p.bus.events().is_empty());
    // A vendor redelivery of the same delivery is acknowledged again and kept once.
    assert_eq!(send(&broken, &d).await.ok(), Some(Captured::Quarantined));
    assert_eq!(p.store.quarantined().await.expect("q").len(), 1);

    // Shopify too: its topic and ids are kept with the body (the mapping reads them), its signature not.
    let mut order = samples::shopify_order(77, 1);
    order["line_items"][0]["price"] = json!("19.999");
    let d = samples::shopify("orders/create", "evt-q", &order, None);
    assert_eq!(send(&broken, &d).await.ok(), Some(Captured::Quarantined));
    let kept = p
        .store
        .quarantined_delivery(Vendor::Shopify, "evt-q")
        .await
        .expect("read")
        .expect("kept");
    let names: Vec<&str> = kept.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"x-shopify-topic"), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("hmac")), "{names:?}");
}

#[tokio::test]
async fn standard_webhooks_keep_the_422_with_the_reason_and_are_kept_too() {
    let p = Platform::new();
    let svc = p.capture(None);
    let mut body = samples::standard_sale("q-1", "store-1", None, 1);
    body["data"]["currency"] = json!("JPY");
    let d = samples::standard("msg_q", &body, samples::sample_time(), None);
    let err = send(&svc, &d).await.expect_err("422");
    assert_eq!(err.status().as_u16(), 422);
    assert!(
        err.public_detail().contains("decimal"),
        "{}",
        err.public_detail()
    );
    let kept = p.store.open_quarantine().await.expect("q");
    assert_eq!(kept.len(), 1);
    assert_eq!(
        kept[0].sender.as_ref().map(|s| s.as_str()),
        Some("dev-till")
    );
    // Reprocessing cannot fix a payload: it stays open, nothing is published.
    let r = p.reprocessor(&svc, &p.store);
    let got = r
        .reprocess(Vendor::Standard, &kept[0].delivery_key)
        .await
        .expect("reprocess");
    assert!(
        matches!(got, Reprocessed::StillUnmappable { .. }),
        "{got:?}"
    );
    assert_eq!(p.store.open_quarantine().await.expect("q").len(), 1);
    assert!(p.bus.events().is_empty());
}

#[tokio::test]
async fn after_the_fix_a_reprocess_captures_once_and_a_second_one_does_nothing() {
    let p = Platform::new();
    send(&p.capture(None), &lightspeed_sale())
        .await
        .expect("ack");
    let key = p.store.open_quarantine().await.expect("q")[0]
        .delivery_key
        .clone();

    let fixed = p.capture(Some("NZD"));
    let r = p.reprocessor(&fixed, &p.store);
    let first = r
        .reprocess(Vendor::Lightspeed, &key)
        .await
        .expect("reprocess");
    let Reprocessed::Accepted { event_id } = first else {
        panic!("not captured: {first:?}");
    };
    assert_eq!(p.bus.events().len(), 1, "published once");
    assert_eq!(p.bus.events()[0].event_id, event_id);
    let records = p.store.records().await.expect("records");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].delivery_key, key);
    assert!(p.store.open_quarantine().await.expect("q").is_empty());
    let resolved = p
        .store
        .quarantined_delivery(Vendor::Lightspeed, &key)
        .await
        .expect("read")
        .and_then(|q| q.resolution)
        .expect("resolved");
    assert_eq!(
        (resolved.outcome.as_str(), resolved.event_id),
        ("accepted", Some(event_id))
    );

    assert_eq!(
        r.reprocess(Vendor::Lightspeed, &key).await.expect("again"),
        Reprocessed::AlreadyResolved
    );
    assert_eq!(r.reprocess_all().await.expect("all").len(), 0);
    assert_eq!(
        r.reprocess(Vendor::Lightspeed, "no-such")
            .await
            .expect("none"),
        Reprocessed::NotFound
    );
    // The vendor redelivering the same delivery now is a duplicate: still one sale.
    assert!(matches!(
        send(&fixed, &lightspeed_sale()).await,
        Ok(Captured::Duplicate { .. })
    ));
    assert_eq!(p.bus.events().len(), 1);
    assert_eq!(p.store.records().await.expect("records").len(), 1);
}

/// A quarantine store whose resolution write fails on demand: a crash between capture and resolve.
struct CrashBeforeResolve {
    inner: EmbeddedStore,
    fail_resolves: AtomicU32,
}

#[async_trait]
impl QuarantineStore for CrashBeforeResolve {
    async fn quarantined_delivery(
        &self,
        vendor: Vendor,
        key: &str,
    ) -> Result<Option<QuarantineRecord>, StoreError> {
        self.inner.quarantined_delivery(vendor, key).await
    }
    async fn open_quarantine(&self) -> Result<Vec<QuarantineRecord>, StoreError> {
        self.inner.open_quarantine().await
    }
    async fn resolve_quarantine(
        &self,
        vendor: Vendor,
        key: &str,
        resolution: QuarantineResolution,
    ) -> Result<bool, StoreError> {
        if self
            .fail_resolves
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Unavailable("injected".into()));
        }
        self.inner.resolve_quarantine(vendor, key, resolution).await
    }
}

#[tokio::test]
async fn a_reprocess_interrupted_after_the_capture_is_finished_by_the_next_without_a_second_effect()
{
    let p = Platform::new();
    send(&p.capture(None), &lightspeed_sale())
        .await
        .expect("ack");
    let fixed = p.capture(Some("NZD"));
    let crashing = CrashBeforeResolve {
        inner: p.store.clone(),
        fail_resolves: AtomicU32::new(1),
    };
    let r = p.reprocessor(&fixed, &crashing);
    let reports = r.reprocess_all().await.expect("listed");
    assert!(
        matches!(reports[0].result, ReportResult::Failed { .. }),
        "{reports:?}"
    );
    assert_eq!(
        p.bus.events().len(),
        1,
        "captured and published before the crash"
    );
    let reports = r.reprocess_all().await.expect("listed");
    assert!(
        matches!(
            reports[0].result,
            ReportResult::Done(Reprocessed::Duplicate { event_id: Some(_) })
        ),
        "{reports:?}"
    );
    assert_eq!(p.bus.events().len(), 1, "no second event");
    assert!(p.store.open_quarantine().await.expect("q").is_empty());
}

#[tokio::test]
async fn racing_reprocesses_capture_once() {
    let p = Platform::new();
    for i in 0..5 {
        let d = samples::lightspeed(
            "sale.update",
            &samples::lightspeed_sale(&format!("ls-race-{i}"), 1, "CLOSED"),
            None,
        );
        send(&p.capture(None), &d).await.expect("ack");
    }
    let fixed = p.capture(Some("NZD"));
    let a = p.reprocessor(&fixed, &p.store);
    let b = p.reprocessor(&fixed, &p.store);
    let (ra, rb) = tokio::join!(a.reprocess_all(), b.reprocess_all());
    let accepted = ra
        .expect("a")
        .into_iter()
        .chain(rb.expect("b"))
        .filter(|r| matches!(r.result, ReportResult::Done(Reprocessed::Accepted { .. })))
        .count();
    assert_eq!(
        accepted, 5,
        "each delivery accepted by exactly one reprocess"
    );
    // The loser may republish a still-pending event (at-least-once; consumers dedupe by id): never a
    // second event id.
    let ids: std::collections::BTreeSet<_> =
        p.bus.events().into_iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), 5);
    assert_eq!(p.store.records().await.expect("records").len(), 5);
    assert!(p.store.open_quarantine().await.expect("q").is_empty());
}
