//! The contracts of the delivery ledger and the breaker store as executable checks, run against every
//! adapter: the in-memory fakes and the embedded adapter in the unit tests, the DynamoDB adapter against
//! moto in `tests/tests/deliveries.rs`. One set of scenarios, so the adapters cannot drift apart.
//!
//! Each scenario uses its own sale ids and destination names, so one store can run them all.

use super::breaker::{
    Admission, BreakerConfig, BreakerRecord, BreakerState, BreakerStore, CircuitBreaker, Transition,
};
use super::ledger::{DeliveryEntry, DeliveryLedger, DeliveryStatus};
use crate::ids::{EventId, SaleId};
use crate::ports::ManualClock;
use chrono::{DateTime, Duration, Utc};
use std::fmt::Debug;
use std::sync::Arc;

fn check<T: PartialEq + Debug>(got: T, want: T, what: &str) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, expected {want:?}"))
    }
}

fn time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default()
}

/// A pending entry at version 1 (`sale`: the sale id, if any).
pub fn entry(event: &str, sale: Option<&str>, destination: &str) -> Result<DeliveryEntry, String> {
    let event_id = EventId::parse(event).map_err(|e| e.to_string())?;
    let sale_id = sale
        .map(SaleId::parse)
        .transpose()
        .map_err(|e| e.to_string())?;
    let mut e = DeliveryEntry::pending(event_id, sale_id, destination, time());
    e.version = 1;
    Ok(e)
}

/// Entries: created only when absent, then changed only from the stored version; read back whole;
/// listed per sale in (destination, event) order, without the entries of other sales or of events
/// without a sale.
pub async fn ledger_compare_and_set_and_listing(ledger: &dyn DeliveryLedger) -> Result<(), String> {
    let sale = SaleId::parse("conf:1001").map_err(|e| e.to_string())?;
    let first = entry("evt:sale:conf:1001", Some("conf:1001"), "commercetools")?;
    check(
        ledger.get(&first.event_id, "commercetools").await,
        Ok(None),
        "before any write",
    )?;
    check(ledger.put(&first, None).await, Ok(true), "create")?;
    check(
        ledger.put(&first, None).await,
        Ok(false),
        "create over an existing entry",
    )?;
    check(
        ledger.put(&first, Some(7)).await,
        Ok(false),
        "update from a version never stored",
    )?;

    let mut delivered = first.clone();
    delivered.status = DeliveryStatus::Delivered;
    delivered.attempts = 2;
    delivered.remote_id = Some("order-1".into());
    delivered.remote_version = Some("3".into());
    delivered.last_error = Some("http 503 (retryable)".into());
    delivered.updated_at = time() + Duration::seconds(5);
    delivered.version = 2;
    check(
        ledger.put(&delivered, Some(1)).await,
        Ok(true),
        "update from the stored version",
    )?;
    let mut stale = first.clone();
    stale.status = DeliveryStatus::Dead;
    stale.version = 2;
    check(
        ledger.put(&stale, Some(1)).await,
        Ok(false),
        "update from a stale version",
    )?;
    check(
        ledger.get(&first.event_id, "commercetools").await,
        Ok(Some(delivered.clone())),
        "the entry reads back as written, the stale update lost",
    )?;
    check(
        ledger.get(&first.event_id, "dynamics").await,
        Ok(None),
        "another destination of the same event",
    )?;

    // The same event to two more destinations, and a return of the sale (its event id sorts first).
    let dynamics = entry("evt:sale:conf:1001", Some("conf:1001"), "dynamics")?;
    let webhooks = entry("evt:sale:conf:1001", Some("conf:1001"), "webhooks:erp")?;
    let refund = entry(
        "evt:return:conf:1001-r1",
        Some("conf:1001"),
        "commercetools",
    )?;
    let other_sale = entry("evt:sale:conf:1002", Some("conf:1002"), "commercetools")?;
    let no_sale = entry("evt:stocklow:conf-1", None, "webhooks:erp")?;
    for e in [&webhooks, &dynamics, &refund, &other_sale, &no_sale] {
        check(ledger.put(e, None).await, Ok(true), "create")?;
    }
    check(
        ledger.for_sale(&sale).await,
        Ok(vec![refund, delivered, dynamics, webhooks]),
        "a sale's entries by destination, then event",
    )?;
    check(
        ledger
            .for_sale(&SaleId::parse("conf:9999").map_err(|e| e.to_string())?)
            .await,
        Ok(vec![]),
        "a sale without entries",
    )?;
    check(
        ledger.get(&no_sale.event_id, "webhooks:erp").await,
        Ok(Some(no_sale)),
        "an entry without a sale",
    )?;
    Ok(())
}

fn record(state: BreakerState, version: u64) -> BreakerRecord {
    BreakerRecord { state, version }
}

/// Breaker records: created only when absent, replaced only from the stored version, per destination.
pub async fn breaker_store_compare_and_set(store: &dyn BreakerStore) -> Result<(), String> {
    let closed = BreakerState::Closed {
        failures: 1,
        since: time(),
    };
    let open = BreakerState::Open {
        until: time() + Duration::seconds(30),
    };
    check(store.load("conf-cas").await, Ok(None), "before any write")?;
    let v1 = record(closed, 1);
    check(
        store.compare_and_set("conf-cas", Some(0), &v1).await,
        Ok(false),
        "update of nothing",
    )?;
    check(
        store.compare_and_set("conf-cas", None, &v1).await,
        Ok(true),
        "create",
    )?;
    check(
        store.compare_and_set("conf-cas", None, &v1).await,
        Ok(false),
        "create again",
    )?;
    let v2 = record(open, 2);
    check(
        store.compare_and_set("conf-cas", Some(1), &v2).await,
        Ok(true),
        "update",
    )?;
    let lost = record(
        BreakerState::HalfOpen {
            probe_until: time(),
        },
        2,
    );
    check(
        store.compare_and_set("conf-cas", Some(1), &lost).await,
        Ok(false),
        "stale update",
    )?;
    check(
        store.load("conf-cas").await,
        Ok(Some(v2)),
        "the record reads back",
    )?;
    check(
        store.load("conf-cas-other").await,
        Ok(None),
        "another destination",
    )?;
    Ok(())
}

fn config() -> BreakerConfig {
    BreakerConfig {
        failure_threshold: 3,
        window: Duration::seconds(60),
        open_for: Duration::seconds(30),
        probe_timeout: Duration::seconds(10),
    }
}

fn breaker(store: Arc<dyn BreakerStore>) -> (CircuitBreaker, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(time()));
    (CircuitBreaker::new(store, clock.clone(), config()), clock)
}

fn rejected(a: &Result<Admission, super::breaker::BreakerStoreError>) -> bool {
    matches!(a, Ok(Admission::Rejected { .. }))
}

/// Failures within the window open the breaker, a success resets the count, failures spread beyond
/// the window do not add up, and another destination is not affected.
pub async fn breaker_opens_within_the_window(store: Arc<dyn BreakerStore>) -> Result<(), String> {
    let (b, clock) = breaker(store);
    let d = "conf-window";
    check(b.admit(d).await, Ok(Admission::Call), "a fresh destination")?;
    for what in ["f1", "f2", "reset", "f1 again", "f2 again"] {
        let r = if what == "reset" {
            b.record_success(d, false).await
        } else {
            b.record_failure(d, false).await
        };
        check(r, Ok(Transition::None), what)?;
    }
    check(b.admit(d).await, Ok(Admission::Call), "2 failures < 3")?;
    clock.advance(Duration::seconds(61));
    check(
        b.record_failure(d, false).await,
        Ok(Transition::None),
        "a new window",
    )?;
    check(
        b.record_failure(d, false).await,
        Ok(Transition::None),
        "2 in it",
    )?;
    check(
        b.record_failure(d, false).await,
        Ok(Transition::Opened),
        "3 in it",
    )?;
    check(
        b.admit(d).await,
        Ok(Admission::Rejected {
            retry_in: Duration::seconds(30),
        }),
        "open",
    )?;
    check(
        b.admit("conf-window-other").await,
        Ok(Admission::Call),
        "another destination",
    )?;
    Ok(())
}

/// After the open period exactly one of several concurrent callers is elected to probe; its success
/// closes the breaker for everyone.
pub async fn breaker_elects_one_probe(store: Arc<dyn BreakerStore>) -> Result<(), String> {
    let (b, clock) = breaker(store);
    let d = "conf-probe";
    for _ in 0..3 {
        b.record_failure(d, false)
            .await
            .map_err(|e| e.to_string())?;
    }
    clock.advance(Duration::seconds(31));
    let (x, y, z) = tokio::join!(b.admit(d), b.admit(d), b.admit(d));
    let probes = [&x, &y, &z]
        .into_iter()
        .filter(|a| **a == Ok(Admission::Probe))
        .count();
    check(probes, 1, "probes among concurrent callers")?;
    if ![x, y, z]
        .iter()
        .all(|a| *a == Ok(Admission::Probe) || rejected(a))
    {
        return Err("a caller was neither elected nor rejected".into());
    }
    if !rejected(&b.admit(d).await) {
        return Err("a caller after the election is not rejected".into());
    }
    check(
        b.record_success(d, true).await,
        Ok(Transition::Closed),
        "the probe succeeds",
    )?;
    check(b.admit(d).await, Ok(Admission::Call), "closed")?;
    Ok(())
}

/// A failed probe reopens the breaker; a probe that never reports is replaced after the probe timeout;
/// a late success of a call admitted before the breaker opened does not close it.
pub async fn breaker_reopens_and_replaces_a_lost_probe(
    store: Arc<dyn BreakerStore>,
) -> Result<(), String> {
    let (b, clock) = breaker(store);
    let d = "conf-reopen";
    for _ in 0..3 {
        b.record_failure(d, false)
            .await
            .map_err(|e| e.to_string())?;
    }
    clock.advance(Duration::seconds(31));
    check(b.admit(d).await, Ok(Admission::Probe), "elected")?;
    check(
        b.record_failure(d, true).await,
        Ok(Transition::Opened),
        "the probe fails",
    )?;
    if !rejected(&b.admit(d).await) {
        return Err("not rejected after a failed probe".into());
    }
    clock.advance(Duration::seconds(31));
    check(b.admit(d).await, Ok(Admission::Probe), "elected again")?;
    clock.advance(Duration::seconds(5));
    if !rejected(&b.admit(d).await) {
        return Err("a second probe while the first may still report".into());
    }
    clock.advance(Duration::seconds(6));
    check(
        b.admit(d).await,
        Ok(Admission::Probe),
        "the lost probe replaced",
    )?;
    check(
        b.record_success(d, false).await,
        Ok(Transition::None),
        "a late success",
    )?;
    if !rejected(&b.admit(d).await) {
        return Err("a late success closed the breaker".into());
    }
    Ok(())
}

/// Two instances (two breakers, each over its own handle `a` and `b` on one store) share the state:
/// failures add up across them and one probe is elected among both.
pub async fn breaker_is_shared_between_instances(
    a: Arc<dyn BreakerStore>,
    b: Arc<dyn BreakerStore>,
) -> Result<(), String> {
    let clock = Arc::new(ManualClock::new(time()));
    let config = BreakerConfig {
        failure_threshold: 2,
        ..config()
    };
    let (a, b) = (
        CircuitBreaker::new(a, clock.clone(), config),
        CircuitBreaker::new(b, clock.clone(), config),
    );
    let d = "conf-shared";
    check(
        a.record_failure(d, false).await,
        Ok(Transition::None),
        "a: 1 failure",
    )?;
    check(
        b.record_failure(d, false).await,
        Ok(Transition::Opened),
        "b: the 2nd",
    )?;
    if !rejected(&a.admit(d).await) {
        return Err("a does not see b's open breaker".into());
    }
    clock.advance(config.open_for + Duration::seconds(1));
    let (x, y, z, w) = tokio::join!(a.admit(d), b.admit(d), a.admit(d), b.admit(d));
    let probes = [x, y, z, w]
        .into_iter()
        .filter(|r| *r == Ok(Admission::Probe))
        .count();
    check(probes, 1, "probes among both instances")?;
    check(
        a.record_success(d, true).await,
        Ok(Transition::Closed),
        "a's probe succeeds",
    )?;
    check(b.admit(d).await, Ok(Admission::Call), "b sees it closed")?;
    Ok(())
}
