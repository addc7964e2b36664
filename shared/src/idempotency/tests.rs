//! The edge cases Powertools' own suites cover, on the in-memory and embedded backends.

use super::embedded::EmbeddedIdempotencyStore;
use super::memory::MemoryIdempotencyStore;
use super::*;
use crate::ports::ManualClock;
use std::sync::atomic::{AtomicU32, Ordering};

const HOUR: i64 = 3600;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_768_471_200, 0).unwrap_or_default()
}

struct Setup {
    idem: Idempotency,
    store: Arc<MemoryIdempotencyStore>,
    clock: Arc<ManualClock>,
}

fn setup() -> Setup {
    let store = Arc::new(MemoryIdempotencyStore::new());
    let clock = Arc::new(ManualClock::new(t0()));
    Setup {
        idem: Idempotency::new(store.clone(), clock.clone(), Duration::seconds(HOUR)),
        store,
        clock,
    }
}

async fn counted(calls: &AtomicU32, value: u32) -> Result<u32, String> {
    calls.fetch_add(1, Ordering::SeqCst);
    Ok(value)
}

#[tokio::test]
async fn completed_record_returns_the_stored_result_without_a_second_effect() {
    let s = setup();
    let calls = AtomicU32::new(0);
    let payload = serde_json::json!({"order": 1});
    let first: u32 = s
        .idem
        .run("k", &payload, None, || counted(&calls, 7))
        .await
        .expect("first");
    let second: u32 = s
        .idem
        .run("k", &payload, None, || counted(&calls, 99))
        .await
        .expect("second");
    assert_eq!((first, second), (7, 7));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(s.store.get("k").map(|r| r.status), Some(Status::Completed));
}

#[tokio::test]
async fn in_progress_is_a_distinct_retryable_outcome() {
    let s = setup();
    s.store.insert(IdempotencyRecord {
        key: "k".into(),
        status: Status::InProgress,
        payload_hash: payload_hash(&1),
        expires_at: t0() + Duration::seconds(HOUR),
        in_progress_expires_at: Some(t0() + Duration::seconds(30)),
        response: None,
    });
    let err = s
        .idem
        .run::<u32, String, _, _>("k", &1, None, || async { Ok(1) })
        .await
        .expect_err("in progress");
    assert!(matches!(err, IdempotencyError::AlreadyInProgress));
    assert!(err.is_retryable());
}

#[tokio::test]
async fn an_in_progress_record_of_a_timed_out_lambda_frees_the_key() {
    let s = setup();
    let calls = AtomicU32::new(0);
    s.store.insert(IdempotencyRecord {
        key: "k".into(),
        status: Status::InProgress,
        payload_hash: payload_hash(&1),
        expires_at: t0() + Duration::seconds(HOUR),
        in_progress_expires_at: Some(t0() + Duration::seconds(30)),
        response: None,
    });
    s.clock.advance(Duration::seconds(31));
    let v: u32 = s
        .idem
        .run("k", &1, Some(std::time::Duration::from_secs(10)), || {
            counted(&calls, 5)
        })
        .await
        .expect("runs");
    assert_eq!(v, 5);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_in_progress_expiry_follows_the_remaining_time() {
    let s = setup();
    let clock = s.clock.clone();
    let store = s.store.clone();
    let _: u32 = s
        .idem
        .run(
            "k",
            &1,
            Some(std::time::Duration::from_secs(12)),
            || async move {
                let r = store.get("k").expect("record while running");
                assert_eq!(r.status, Status::InProgress);
                assert_eq!(
                    r.in_progress_expires_at,
                    Some(clock.now() + Duration::seconds(12))
                );
                Ok::<u32, String>(1)
            },
        )
        .await
        .expect("runs");
}

#[tokio::test]
async fn expired_records_run_again() {
    let s = setup();
    let calls = AtomicU32::new(0);
    let _: u32 = s
        .idem
        .run("k", &1, None, || counted(&calls, 1))
        .await
        .expect("first");
    s.clock.advance(Duration::seconds(HOUR));
    let v: u32 = s
        .idem
        .run("k", &1, None, || counted(&calls, 2))
        .await
        .expect("after expiry");
    assert_eq!(v, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_record_expiring_during_the_request_is_checked_on_read() {
    let s = setup();
    let clock = s.clock.clone();
    // The handler takes longer than the record's lifetime; the next call sees an expired record.
    let _: u32 = s
        .idem
        .run("k", &1, None, || async move {
            clock.advance(Duration::seconds(2 * HOUR));
            Ok::<u32, String>(1)
        })
        .await
        .expect("runs");
    let r = s.store.get("k").expect("record");
    assert!(r.is_live(s.clock.now()), "expiry counts from completion");
    s.clock.advance(Duration::seconds(HOUR));
    assert!(!s.store.get("k").expect("record").is_live(s.clock.now()));
}

#[tokio::test]
async fn a_handler_mutating_its_event_does_not_change_the_key_payload() {
    let s = setup();
    let mut event = serde_json::json!({"qty": 1});
    let original = event.clone();
    let _: u32 = s
        .idem
        .run("k", &event.clone(), None, || async {
            event["qty"] = serde_json::json!(2);
            Ok::<u32, String>(1)
        })
        .await
        .expect("runs");
    let again: u32 = s
        .idem
        .run("k", &original, None, || async { Ok::<u32, String>(9) })
        .await
        .expect("same payload");
    assert_eq!(again, 1);
}

#[tokio::test]
async fn a_failing_handler_removes_the_record_so_a_retry_succeeds() {
    let s = setup();
    let err = s
        .idem
        .run::<u32, String, _, _>("k", &1, None, || async { Err("boom".to_owned()) })
        .await
        .expect_err("fails");
    assert!(matches!(err, IdempotencyError::Handler(ref m) if m == "boom"));
    assert!(s.store.get("k").is_none());
    let v: u32 = s
        .idem
        .run("k", &1, None, || async { Ok::<u32, String>(3) })
        .await
        .expect("retry");
    assert_eq!(v, 3);
}

#[tokio::test]
async fn payload_tampering_is_a_conflict() {
    let s = setup();
    let _: u32 = s
        .idem
        .run("k", &serde_json::json!({"amount": 10}), None, || async {
            Ok::<u32, String>(1)
        })
        .await
        .expect("first");
    let err = s
        .idem
        .run::<u32, String, _, _>("k", &serde_json::json!({"amount": 1000}), None, || async {
            Ok(2)
        })
        .await
        .expect_err("tampered");
    assert!(matches!(err, IdempotencyError::PayloadMismatch));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn storage_failures_on_each_call_are_persistence_errors() {
    let s = setup();
    let calls = AtomicU32::new(0);
    s.store.fail_acquire.store(true, Ordering::SeqCst);
    let e = s
        .idem
        .run::<u32, String, _, _>("a", &1, None, || counted(&calls, 1))
        .await
        .expect_err("acquire");
    assert!(matches!(e, IdempotencyError::Persistence(_)) && e.is_retryable());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "nothing runs when the record cannot be written"
    );

    s.store.fail_complete.store(true, Ordering::SeqCst);
    let e = s
        .idem
        .run::<u32, String, _, _>("b", &1, None, || counted(&calls, 1))
        .await
        .expect_err("complete");
    assert!(matches!(e, IdempotencyError::Persistence(_)));

    s.store.fail_release.store(true, Ordering::SeqCst);
    let e = s
        .idem
        .run::<u32, String, _, _>("c", &1, None, || async { Err("boom".to_owned()) })
        .await
        .expect_err("release");
    assert!(
        matches!(e, IdempotencyError::Persistence(_)),
        "never reported as handled or duplicate"
    );
}

#[tokio::test]
async fn a_missing_key_is_refused() {
    let s = setup();
    let e = s
        .idem
        .run::<u32, String, _, _>("", &1, None, || async { Ok(1) })
        .await
        .expect_err("no key");
    assert!(matches!(e, IdempotencyError::MissingKey));
}

#[tokio::test]
async fn concurrent_duplicates_run_the_handler_once() {
    let s = setup();
    let calls = Arc::new(AtomicU32::new(0));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let idem = Arc::new(s.idem);
    let first = {
        let (idem, calls) = (idem.clone(), calls.clone());
        tokio::spawn(async move {
            idem.run::<u32, String, _, _>("k", &1, None, || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let _ = rx.await;
                Ok(1)
            })
            .await
        })
    };
    while s.store.get("k").is_none() {
        tokio::task::yield_now().await;
    }
    let second = idem
        .run::<u32, String, _, _>("k", &1, None, || async { Ok(2) })
        .await;
    assert!(matches!(second, Err(IdempotencyError::AlreadyInProgress)));
    let _ = tx.send(());
    assert_eq!(first.await.expect("join").expect("first"), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_embedded_backend_has_the_same_semantics() {
    let db = Arc::new(
        redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .expect("db"),
    );
    let store = Arc::new(EmbeddedIdempotencyStore::new(db, "stock-sync").expect("store"));
    let clock = Arc::new(ManualClock::new(t0()));
    let idem = Idempotency::new(store, clock.clone(), Duration::seconds(HOUR));
    let calls = AtomicU32::new(0);
    assert_eq!(
        idem.run("k", &1, None, || counted(&calls, 4))
            .await
            .expect("first"),
        4
    );
    assert_eq!(
        idem.run("k", &1, None, || counted(&calls, 5))
            .await
            .expect("dup"),
        4
    );
    assert!(matches!(
        idem.run::<u32, String, _, _>("k", &2, None, || async { Ok(1) })
            .await,
        Err(IdempotencyError::PayloadMismatch)
    ));
    let e = idem
        .run::<u32, String, _, _>("f", &1, None, || async { Err("x".to_owned()) })
        .await;
    assert!(matches!(e, Err(IdempotencyError::Handler(_))));
    assert_eq!(
        idem.run("f", &1, None, || counted(&calls, 6))
            .await
            .expect("retry after failure"),
        6
    );
    clock.advance(Duration::seconds(HOUR));
    assert_eq!(
        idem.run("k", &1, None, || counted(&calls, 7))
            .await
            .expect("expired"),
        7
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
