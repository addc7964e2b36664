//! Stock rules and the consumer on in-memory adapters.

use super::embedded::EmbeddedStockLedger;
use super::*;
use crate::bus::BusMessage;
use crate::bus::memory::RecordingBus;
use crate::metrics::{Metrics, Sink};
use crate::model::{Quantity, Return, ReturnLine, Sale, SaleLine, Source, Vendor};
use crate::money::{Currency, Money};
use crate::ports::ManualClock;
use crate::sqs_batch::RecordError;
use chrono::{DateTime, Utc};
use std::sync::Arc;

fn eur() -> Currency {
    Currency::parse("EUR").expect("eur")
}

fn sale(id: &str, lines: &[(&str, i64)]) -> EventEnvelope {
    let sale = Sale {
        sale_id: crate::ids::SaleId::parse(id).expect("id"),
        store_id: StoreId::parse("store-1").expect("id"),
        occurred_at: DateTime::<Utc>::UNIX_EPOCH,
        source: Source {
            vendor: Vendor::Standard,
            external_id: id.into(),
            channel: None,
        },
        member_id: None,
        currency: eur(),
        lines: lines
            .iter()
            .enumerate()
            .map(|(i, (sku, q))| SaleLine {
                line_id: i.to_string(),
                sku: if sku.is_empty() {
                    None
                } else {
                    Some(Sku::parse(*sku).expect("sku"))
                },
                quantity: Quantity::new(*q).expect("qty"),
                unit_price: Money::from_minor(100, eur()),
                discount: Money::zero(eur()),
            })
            .collect(),
        total: Money::from_minor(100, eur()),
        tax: Money::zero(eur()),
    };
    EventEnvelope::new(
        CanonicalEvent::SaleCompleted(sale),
        "c".into(),
        DateTime::<Utc>::UNIX_EPOCH,
    )
}

fn ret(id: &str, lines: &[(&str, i64, bool)]) -> EventEnvelope {
    let r = Return {
        return_id: crate::ids::ReturnId::parse(id).expect("id"),
        sale_id: None,
        store_id: StoreId::parse("store-1").expect("id"),
        occurred_at: DateTime::<Utc>::UNIX_EPOCH,
        source: Source {
            vendor: Vendor::Standard,
            external_id: id.into(),
            channel: None,
        },
        member_id: None,
        currency: eur(),
        lines: lines
            .iter()
            .enumerate()
            .map(|(i, (sku, q, restock))| ReturnLine {
                line_id: i.to_string(),
                sku: Some(Sku::parse(*sku).expect("sku")),
                quantity: Quantity::new(*q).expect("qty"),
                restock: *restock,
                refund: Money::from_minor(100, eur()),
            })
            .collect(),
        total_refund: Money::from_minor(100, eur()),
    };
    EventEnvelope::new(
        CanonicalEvent::ReturnCompleted(r),
        "c".into(),
        DateTime::<Utc>::UNIX_EPOCH,
    )
}

fn body(e: &EventEnvelope) -> String {
    serde_json::to_string(&BusMessage::new("eb-1", e.clone())).expect("json")
}

struct Setup {
    sync: StockSync,
    ledger: Arc<EmbeddedStockLedger>,
    bus: Arc<RecordingBus>,
}

fn setup(threshold: i64) -> Setup {
    let ledger = Arc::new(EmbeddedStockLedger::in_memory().expect("ledger"));
    let bus = Arc::new(RecordingBus::new());
    let sync = StockSync::new(
        ledger.clone(),
        bus.clone(),
        Arc::new(ManualClock::new(DateTime::<Utc>::UNIX_EPOCH)),
        threshold,
        Arc::new(Metrics::new("stock-sync", Sink::Off)),
    );
    Setup { sync, ledger, bus }
}

async fn level(l: &EmbeddedStockLedger, sku: &str) -> i64 {
    l.on_hand(
        &StoreId::parse("store-1").expect("id"),
        &Sku::parse(sku).expect("sku"),
    )
    .await
    .expect("level")
}

#[test]
fn deltas_merge_lines_and_skip_custom_items_and_non_restocked_returns() {
    let d = deltas_of(&sale("s1", &[("A", 2), ("B", 1), ("A", 3), ("", 5)]).event);
    assert_eq!(
        d.iter()
            .map(|d| (d.sku.as_str(), d.delta))
            .collect::<Vec<_>>(),
        vec![("A", -5), ("B", -1)]
    );
    let r = deltas_of(&ret("r1", &[("A", 1, true), ("B", 2, false)]).event);
    assert_eq!(
        r.iter()
            .map(|d| (d.sku.as_str(), d.delta))
            .collect::<Vec<_>>(),
        vec![("A", 1)]
    );
}

#[tokio::test]
async fn redelivered_events_apply_once_in_any_order() {
    let s = setup(-100);
    let events = [
        sale("s1", &[("A", 2)]),
        ret("r1", &[("A", 1, true)]),
        sale("s2", &[("A", 1), ("B", 4)]),
    ];
    // Deliver in reverse order, each twice.
    for e in events.iter().rev().chain(events.iter()) {
        s.sync.handle_body(&body(e)).await.expect("handled");
    }
    assert_eq!(level(&s.ledger, "A").await, -2);
    assert_eq!(level(&s.ledger, "B").await, -4);
}

#[tokio::test]
async fn negative_stock_is_flagged_not_refused_and_low_stock_notified_on_crossing() {
    let s = setup(2);
    s.ledger
        .apply(
            &EventId::parse("evt:init").expect("id"),
            chrono::Utc::now(),
            &[StockDelta {
                store_id: StoreId::parse("store-1").expect("id"),
                sku: Sku::parse("A").expect("sku"),
                delta: 4,
            }],
        )
        .await
        .expect("init");
    s.sync
        .handle_body(&body(&sale("s1", &[("A", 1)])))
        .await
        .expect("4 -> 3");
    assert!(s.bus.events().is_empty());
    s.sync
        .handle_body(&body(&sale("s2", &[("A", 2)])))
        .await
        .expect("3 -> 1");
    s.sync
        .handle_body(&body(&sale("s3", &[("A", 1)])))
        .await
        .expect("1 -> 0");
    s.sync
        .handle_body(&body(&sale("s4", &[("A", 3)])))
        .await
        .expect("0 -> -3");
    let kinds: Vec<&str> = s.bus.events().iter().map(|e| e.detail_type()).collect();
    assert_eq!(kinds, vec!["StockLow", "StockNegative"]);
    assert_eq!(level(&s.ledger, "A").await, -3);
}

#[tokio::test]
async fn poison_and_mismatched_records_are_poison() {
    let s = setup(0);
    assert!(matches!(
        s.sync.handle_body("{not json").await,
        Err(RecordError::Poison(_))
    ));
    let mut v: serde_json::Value =
        serde_json::from_str(&body(&sale("s1", &[("A", 1)]))).expect("json");
    v["detail-type"] = serde_json::json!("ReturnCompleted");
    assert!(matches!(
        s.sync.handle_body(&v.to_string()).await,
        Err(RecordError::Poison(_))
    ));
    assert_eq!(level(&s.ledger, "A").await, 0);
}

#[tokio::test]
async fn a_failed_notification_does_not_fail_the_record() {
    let s = setup(10);
    s.bus.fail_next(1);
    s.sync
        .handle_body(&body(&sale("s1", &[("A", 1)])))
        .await
        .expect("applied anyway");
    assert_eq!(level(&s.ledger, "A").await, -1);
}

#[tokio::test]
async fn store_levels_page_in_sku_order() {
    let s = setup(-100);
    s.sync
        .handle_body(&body(&sale("s1", &[("C", 1), ("A", 2), ("B", 3)])))
        .await
        .expect("applied");
    let store = StoreId::parse("store-1").expect("id");
    let (page1, next) = s
        .ledger
        .store_levels(&store, None, 2)
        .await
        .expect("levels");
    assert_eq!(
        page1
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect::<Vec<_>>(),
        vec![("A", -2), ("B", -3)]
    );
    let (page2, next2) = s
        .ledger
        .store_levels(&store, next.as_ref(), 2)
        .await
        .expect("levels");
    assert_eq!(
        page2
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect::<Vec<_>>(),
        vec![("C", -1)]
    );
    assert!(next2.is_none());
    let other = StoreId::parse("store-0").expect("id");
    assert!(
        s.ledger
            .store_levels(&other, None, 10)
            .await
            .expect("levels")
            .0
            .is_empty()
    );
}
