//! Cursors and pagination on the embedded store.

use super::*;
use crate::capture::{CaptureService, CaptureSettings};
use crate::ports::ManualClock;
use crate::samples;
use crate::secrets::{StaticSecrets, dev_secrets};
use crate::store::embedded::EmbeddedStore;
use std::sync::Arc;

fn codec() -> CursorCodec {
    CursorCodec::new(b"0123456789abcdef0123456789abcdef".to_vec()).expect("key")
}

fn pos(t: &str, key: &str) -> Position {
    Position {
        occurred_at: DateTime::parse_from_rfc3339(t)
            .expect("time")
            .with_timezone(&Utc),
        key: key.into(),
    }
}

#[test]
fn cursors_round_trip_and_refuse_tampering_and_reuse() {
    let c = codec();
    let p = pos("2026-01-15T10:00:00Z", "sale#a");
    let cursor = c.encode(&p, "q1");
    assert_eq!(c.decode(&cursor, "q1"), Ok(p.clone()));
    assert_eq!(
        c.decode(&cursor, "q2"),
        Err(CursorError),
        "bound to its query"
    );
    let (body, mac) = cursor.split_once('.').expect("two parts");
    let forged_body =
        B64URL.encode(br#"{"p":{"occurred_at":"2020-01-01T00:00:00Z","key":"x"},"q":"q1"}"#);
    assert_eq!(
        c.decode(&format!("{forged_body}.{mac}"), "q1"),
        Err(CursorError)
    );
    assert_eq!(c.decode(&format!("{body}.AAAA"), "q1"), Err(CursorError));
    for garbage in ["", ".", "abc", "!!.!!", "a.b.c"] {
        assert_eq!(c.decode(garbage, "q1"), Err(CursorError), "{garbage:?}");
    }
    assert!(CursorCodec::new(b"short".to_vec()).is_err());
}

async fn add_sale(svc: &CaptureService, id: &str, store: &str, at: &str) {
    let mut body = samples::standard_sale(id, store, None, 1);
    body["data"]["occurred_at"] = serde_json::json!(at);
    let d = samples::standard(&format!("msg_{id}"), &body, samples::sample_time(), None);
    svc.handle(&d.to_request("read-test"))
        .await
        .expect("captured");
}

fn ids(page: &SalesPage) -> Vec<String> {
    // The vendor's own ids (the canonical ones carry the Standard sender's namespace, `dev-till:`).
    page.sales
        .iter()
        .map(|s| s.source.external_id.clone())
        .collect()
}

#[tokio::test]
async fn pages_are_stable_under_concurrent_writes() {
    let store = EmbeddedStore::in_memory().expect("store");
    let svc = CaptureService::new(
        Arc::new(store.clone()),
        Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
        Arc::new(ManualClock::new(samples::sample_time())),
        CaptureSettings::default(),
    );
    for (id, at) in [
        ("s1", "2026-01-15T09:00:00Z"),
        ("s2", "2026-01-15T09:01:00Z"),
        ("s3", "2026-01-15T09:01:00Z"),
        ("s4", "2026-01-15T09:02:00Z"),
        ("s5", "2026-01-15T09:03:00Z"),
        ("s6", "2026-01-15T09:04:00Z"),
        ("s7", "2026-01-15T12:00:00Z"),
    ] {
        add_sale(&svc, id, "store-1", at).await;
    }
    add_sale(&svc, "other", "store-2", "2026-01-15T09:00:30Z").await;
    let store_id = StoreId::parse("store-1").expect("id");
    let from = pos("2026-01-15T00:00:00Z", "").occurred_at;
    let to = pos("2026-01-15T12:00:00Z", "").occurred_at;
    let page1 = store
        .store_sales(&store_id, from, to, None, 3)
        .await
        .expect("page");
    assert_eq!(ids(&page1), vec!["s1", "s2", "s3"]);
    // Written between two page reads: one before the cursor (not seen), one after it (seen once).
    add_sale(&svc, "late-early", "store-1", "2026-01-15T08:00:00Z").await;
    add_sale(&svc, "late-later", "store-1", "2026-01-15T09:02:30Z").await;
    let page2 = store
        .store_sales(&store_id, from, to, page1.next.as_ref(), 3)
        .await
        .expect("page");
    assert_eq!(ids(&page2), vec!["s4", "late-later", "s5"]);
    let page3 = store
        .store_sales(&store_id, from, to, page2.next.as_ref(), 3)
        .await
        .expect("page");
    assert_eq!(ids(&page3), vec!["s6"], "s7 is at `to`, excluded");
    assert!(page3.next.is_none());
    assert!(
        store
            .sale(&SaleId::parse("dev-till:s4").expect("id"))
            .await
            .expect("read")
            .is_some()
    );
    assert!(
        store
            .sale(&SaleId::parse("nope").expect("id"))
            .await
            .expect("read")
            .is_none()
    );
}
