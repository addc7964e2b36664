//! Size limits (issue 9): the largest sale the capture accepts is published within EventBridge's entry
//! limit and applied exactly once by both consumers, on the embedded store (the moto twin is
//! `tests/tests/big_sales.rs`).

use pos_shared::bus::memory::RecordingBus;
use pos_shared::bus::{BusMessage, MAX_ENTRY_BYTES, check_entry};
use pos_shared::capture::{CaptureService, CaptureSettings, Captured};
use pos_shared::ids::{MemberId, SaleId, Sku, StoreId};
use pos_shared::loyalty::embedded::EmbeddedLoyaltyLedger;
use pos_shared::loyalty::rules::LoyaltyRules;
use pos_shared::loyalty::{LoyaltyAccrual, LoyaltyLedger};
use pos_shared::metrics::{Metrics, Sink};
use pos_shared::model::{CanonicalEvent, LinesRef};
use pos_shared::outbox::feed::Announced;
use pos_shared::ports::LinesSource;
use pos_shared::ports::ManualClock;
use pos_shared::read::SalesReader;
use pos_shared::samples;
use pos_shared::secrets::{StaticSecrets, dev_secrets};
use pos_shared::sqs_batch::RecordError;
use pos_shared::stock::embedded::EmbeddedStockLedger;
use pos_shared::stock::{StockLedger, StockSync};
use pos_shared::store::StoreError;
use pos_shared::store::claim::{CLAIM_CHECK_THRESHOLD, NoLinesSource};
use pos_shared::store::embedded::EmbeddedStore;
use serde_json::Value;
use std::sync::Arc;

/// The body of the Standard sale with the most lines whose body is within `limit` bytes, and its
/// line count.
fn largest_standard_sale(limit: usize) -> (Value, usize) {
    let size = |n: usize| {
        samples::standard_sale("big-1", "store-1", Some("member-1"), n)
            .to_string()
            .len()
    };
    // The largest n whose body fits (sizes grow with n): a binary search, each probe builds a body.
    let (mut lo, mut hi) = (1, limit);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if size(mid) <= limit {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let n = lo;
    (
        samples::standard_sale("big-1", "store-1", Some("member-1"), n),
        n,
    )
}

#[tokio::test]
async fn the_largest_standard_sale_is_accepted_published_within_the_limit_and_applied_once() {
    let store = EmbeddedStore::in_memory().expect("store");
    let bus = Arc::new(Announced::new(&store));
    let clock = Arc::new(ManualClock::new(samples::sample_time()));
    let settings = CaptureSettings::default();
    let capture = CaptureService::new(
        Arc::new(store.clone()),
        Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
        clock.clone(),
        settings.clone(),
    );
    let (body, lines) = largest_standard_sale(settings.max_body_bytes);
    assert!(lines > 3_500, "{lines} lines");
    let delivery = samples::standard("msg_big", &body, samples::sample_time(), None);
    let request = delivery.to_request("c-big");
    assert!(request.body.len() <= settings.max_body_bytes);
    assert!(request.body.len() > settings.max_body_bytes - 1024);
    match capture.handle(&request).await {
        Ok(Captured::Accepted { .. }) => {}
        other => panic!("expected 202, got {other:?}"),
    }
    let events = bus.events();
    assert_eq!(events.len(), 1, "published once");
    let (_, size) = check_entry(&events[0]).expect("within EventBridge's entry limit");
    assert!(size <= MAX_ENTRY_BYTES);
    assert!(size <= CLAIM_CHECK_THRESHOLD, "{size}");
    let reference = events[0].lines_ref.clone().expect("claim-checked");
    assert_eq!(reference.count as usize, lines);
    let CanonicalEvent::SaleCompleted(published) = &events[0].event else {
        panic!("a sale")
    };
    assert!(published.lines.is_empty(), "the lines travel aside");

    // The query API's read answers the whole sale.
    let read = store
        .sale(&SaleId::parse("dev-till:big-1").expect("id"))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(read.lines.len(), lines);
    let page = store
        .store_sales(
            &StoreId::parse("store-1").expect("store"),
            chrono::DateTime::UNIX_EPOCH,
            chrono::DateTime::<chrono::Utc>::MAX_UTC,
            None,
            10,
        )
        .await
        .expect("page");
    assert_eq!(page.sales.len(), 1);
    assert_eq!(page.sales[0], read);
    assert!(
        matches!(
            capture.handle(&request).await,
            Ok(Captured::Duplicate { .. })
        ),
        "a redelivery is a duplicate"
    );
    assert_eq!(bus.events().len(), 1);

    // Both consumers, each SQS record delivered twice: every SKU once, the points of the whole sale once.
    let stock = Arc::new(EmbeddedStockLedger::in_memory().expect("stock"));
    let loyalty = Arc::new(EmbeddedLoyaltyLedger::in_memory().expect("loyalty"));
    let metrics = Arc::new(Metrics::new("test", Sink::Off));
    let consumers = |lines: Arc<dyn LinesSource>| {
        (
            StockSync::new(
                stock.clone(),
                Arc::new(RecordingBus::new()),
                clock.clone(),
                0,
                metrics.clone(),
            )
            .with_lines_source(lines.clone()),
            LoyaltyAccrual::new(
                loyalty.clone(),
                LoyaltyRules::default_rules(),
                metrics.clone(),
            )
            .with_lines_source(lines),
        )
    };
    let sqs_body =
        serde_json::to_string(&BusMessage::new("eb-1", events[0].clone())).expect("body");
    let store_id = StoreId::parse("store-1").expect("store");
    let member = MemberId::parse("member-1").expect("member");

    // The lines store down, or no store wired: the record fails and is retried, nothing is applied.
    for source in [
        Arc::new(DownLines) as Arc<dyn LinesSource>,
        Arc::new(NoLinesSource),
    ] {
        let (sync, accrual) = consumers(source);
        assert!(matches!(
            sync.handle_body(&sqs_body).await,
            Err(RecordError::Retryable(_))
        ));
        assert!(matches!(
            accrual.handle_body(&sqs_body).await,
            Err(RecordError::Retryable(_))
        ));
    }
    assert!(
        stock
            .store_levels(&store_id, None, 10)
            .await
            .expect("levels")
            .0
            .is_empty()
    );
    assert_eq!(loyalty.balance(&member).await.expect("balance"), 0);
    assert!(loyalty.entries(&member).await.expect("entries").is_empty());

    let (sync, accrual) = consumers(Arc::new(store.clone()));
    for _ in 0..2 {
        sync.handle_body(&sqs_body).await.expect("stock applied");
        accrual
            .handle_body(&sqs_body)
            .await
            .expect("loyalty applied");
    }
    for n in [1, lines / 2, lines] {
        let sku = Sku::parse(format!("SKU-{n:03}")).expect("sku");
        assert_eq!(
            stock.on_hand(&store_id, &sku).await.expect("level"),
            -1,
            "SKU-{n:03}"
        );
    }
    let levels = stock
        .store_levels(&store_id, None, lines + 10)
        .await
        .expect("levels")
        .0;
    assert_eq!(levels.len(), lines, "every line's SKU, nothing else");
    assert!(levels.iter().all(|(_, on_hand)| *on_hand == -1));
    // 1 point per EUR: 12.50 EUR a line, floored once for the sale.
    let expected = i64::try_from(1250 * lines / 100).expect("points");
    assert_eq!(loyalty.balance(&member).await.expect("balance"), expected);
    assert_eq!(loyalty.entries(&member).await.expect("entries").len(), 1);
}

/// A capture store that cannot be reached.
struct DownLines;

#[async_trait::async_trait]
impl LinesSource for DownLines {
    async fn line_chunks(&self, _: &LinesRef) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

#[tokio::test]
async fn lines_beyond_one_capture_write_are_refused_with_413_and_nothing_is_stored() {
    use pos_shared::store::StoreInspect;
    use pos_shared::store::claim::MAX_CLAIMED_BYTES;
    let store = EmbeddedStore::in_memory().expect("store");
    let bus = Arc::new(Announced::new(&store));
    // Only reachable with a body limit above the configurable ceiling (1 MiB).
    let settings = CaptureSettings {
        max_body_bytes: 3 * 1024 * 1024,
        ..CaptureSettings::default()
    };
    let capture = CaptureService::new(
        Arc::new(store.clone()),
        Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
        Arc::new(ManualClock::new(samples::sample_time())),
        settings,
    );
    let body = samples::standard_sale("huge-1", "store-1", None, 24_000);
    let request =
        samples::standard("msg_huge", &body, samples::sample_time(), None).to_request("c");
    match capture.handle(&request).await {
        Err(e @ pos_shared::capture::CaptureError::LinesTooLarge { bytes, limit }) => {
            assert!(bytes > MAX_CLAIMED_BYTES && limit == MAX_CLAIMED_BYTES);
            assert_eq!(e.status().as_u16(), 413);
        }
        other => panic!("expected 413, got {other:?}"),
    }
    assert!(store.records().await.expect("records").is_empty());
    assert!(bus.events().is_empty());
}
