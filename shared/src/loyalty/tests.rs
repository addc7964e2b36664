//! Loyalty rules and the consumer on the in-memory ledger.

use super::embedded::EmbeddedLoyaltyLedger;
use super::rules::{Accrual, LoyaltyRules, NegativeBalancePolicy, default_rules_json};
use super::*;
use crate::ids::{ReturnId, Sku, StoreId};
use crate::metrics::Sink;
use crate::model::{Quantity, Return, ReturnLine, Sale, SaleLine, Source, Vendor};
use crate::money::{Currency, Money};

fn cur(c: &str) -> Currency {
    Currency::parse(c).expect("currency")
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

/// A sale of `lines` = (sku, qty, unit price minor, discount minor).
fn sale(id: &str, member: Option<&str>, currency: &str, lines: &[(&str, i64, i64, i64)]) -> Sale {
    let c = cur(currency);
    Sale {
        sale_id: SaleId::parse(id).expect("id"),
        store_id: StoreId::parse("store-1").expect("id"),
        occurred_at: at("2026-01-15T10:00:00Z"),
        source: Source {
            vendor: Vendor::Standard,
            external_id: id.into(),
            channel: None,
        },
        member_id: member.map(|m| MemberId::parse(m).expect("member")),
        currency: c,
        lines: lines
            .iter()
            .enumerate()
            .map(|(i, (sku, q, p, d))| SaleLine {
                line_id: (i + 1).to_string(),
                sku: Some(Sku::parse(*sku).expect("sku")),
                quantity: Quantity::new(*q).expect("q"),
                unit_price: Money::from_minor(*p, c),
                discount: Money::from_minor(*d, c),
            })
            .collect(),
        total: Money::zero(c),
        tax: Money::zero(c),
    }
}

fn ret(id: &str, sale_id: &str, lines: &[(&str, &str, i64, i64)]) -> Return {
    let c = cur("EUR");
    Return {
        return_id: ReturnId::parse(id).expect("id"),
        sale_id: Some(SaleId::parse(sale_id).expect("id")),
        store_id: StoreId::parse("store-1").expect("id"),
        occurred_at: at("2026-01-16T10:00:00Z"),
        source: Source {
            vendor: Vendor::Shopify,
            external_id: id.into(),
            channel: None,
        },
        member_id: None,
        currency: c,
        lines: lines
            .iter()
            .map(|(line_id, sku, q, refund)| ReturnLine {
                line_id: (*line_id).to_owned(),
                sku: Some(Sku::parse(*sku).expect("sku")),
                quantity: Quantity::new(*q).expect("q"),
                restock: true,
                refund: Money::from_minor(*refund, c),
            })
            .collect(),
        total_refund: Money::zero(c),
    }
}

fn rules_with(extra: &str) -> LoyaltyRules {
    let mut doc: serde_json::Value = serde_json::from_str(default_rules_json()).expect("json");
    let patch: serde_json::Value = serde_json::from_str(extra).expect("patch");
    for (k, v) in patch.as_object().expect("object") {
        doc[k] = v.clone();
    }
    LoyaltyRules::parse(&doc.to_string()).expect("valid rules")
}

#[test]
fn built_in_rules_are_valid() {
    LoyaltyRules::parse(default_rules_json()).expect("valid");
}

#[test]
fn points_per_currency_unit_floored_once_per_sale() {
    let r = LoyaltyRules::default_rules();
    // 2 x 12.50 + 0.99 - 0.50 discount = 25.49 EUR -> 25 points.
    let a = r
        .accrue(
            &sale(
                "s",
                Some("m"),
                "EUR",
                &[("A", 2, 1250, 0), ("B", 1, 99, 50)],
            ),
            None,
        )
        .expect("earns");
    assert_eq!((a.points, a.eligible_minor), (25, 2549));
    // Two lines of 0.60 each: 1.20 -> 1 point (per-line flooring would give 0).
    let a = r
        .accrue(
            &sale("s", Some("m"), "EUR", &[("A", 1, 60, 0), ("B", 1, 60, 0)]),
            None,
        )
        .expect("earns");
    assert_eq!(a.points, 1);
    // JPY: 1 point per 100 JPY.
    let a = r
        .accrue(&sale("s", Some("m"), "JPY", &[("A", 3, 1000, 0)]), None)
        .expect("earns");
    assert_eq!(a.points, 30);
    // A currency without a rate earns nothing.
    assert!(
        r.accrue(&sale("s", Some("m"), "CHF", &[("A", 1, 1000, 0)]), None)
            .is_none()
    );
}

#[test]
fn gift_cards_are_excluded_and_discounts_never_go_negative() {
    let r = LoyaltyRules::default_rules();
    let a = r
        .accrue(
            &sale(
                "s",
                Some("m"),
                "EUR",
                &[("GIFT-50", 1, 5000, 0), ("A", 1, 1000, 2000)],
            ),
            None,
        )
        .expect("earns");
    assert_eq!((a.points, a.eligible_minor), (0, 0));
}

#[test]
fn tiers_and_dated_promotions_multiply() {
    let r = rules_with(
        r#"{"promotions": [
            {"id": "jan-double", "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-02-01T00:00:00Z", "multiplier_percent": 200, "skus": ["A"]},
            {"id": "feb-triple", "starts_at": "2026-02-01T00:00:00Z", "ends_at": "2026-03-01T00:00:00Z", "multiplier_percent": 300}
        ]}"#,
    );
    let s = sale(
        "s",
        Some("m"),
        "EUR",
        &[("A", 1, 1000, 0), ("B", 1, 1000, 0)],
    );
    let base = r.accrue(&s, None).expect("earns");
    assert_eq!(base.points, 30, "A doubled (20) + B (10)");
    assert_eq!(base.promotions, vec!["jan-double".to_owned()]);
    let gold = r.accrue(&s, Some("gold")).expect("earns");
    assert_eq!(gold.points, 45, "x1.5 for gold");
    assert_eq!(
        r.accrue(&s, Some("unknown-tier")).expect("earns").tier,
        "base"
    );
    let mut feb = s.clone();
    feb.occurred_at = at("2026-02-01T00:00:00Z");
    assert_eq!(
        r.accrue(&feb, None).expect("earns").points,
        60,
        "end is exclusive, start inclusive"
    );
}

#[test]
fn invalid_rules_are_refused_with_a_reason() {
    for (patch, needle) in [
        (r#"{"default_tier": "platinum"}"#, "default_tier"),
        (r#"{"earn": {"XYZ": {"points": 1, "per": "1.00"}}}"#, "XYZ"),
        (r#"{"earn": {"EUR": {"points": 1, "per": "0.001"}}}"#, "per"),
        (
            r#"{"earn": {"EUR": {"points": 1, "per": "0"}}}"#,
            "positive",
        ),
        (r#"{"tiers": {"base": 0}}"#, "multiplier"),
        (
            r#"{"promotions": [{"id": "p", "starts_at": "2026-02-01T00:00:00Z", "ends_at": "2026-01-01T00:00:00Z", "multiplier_percent": 200}]}"#,
            "ends before",
        ),
        (r#"{"surprise": true}"#, "unknown field"),
    ] {
        let mut doc: serde_json::Value = serde_json::from_str(default_rules_json()).expect("json");
        for (k, v) in serde_json::from_str::<serde_json::Value>(patch)
            .expect("patch")
            .as_object()
            .expect("obj")
        {
            doc[k] = v.clone();
        }
        let err = LoyaltyRules::parse(&doc.to_string()).expect_err(patch);
        assert!(err.to_string().contains(needle), "{patch}: {err}");
    }
}

/// The points `ret` reverses as the only return of its sale.
fn first_reversal(r: &LoyaltyRules, a: &Accrual, ret: &Return) -> i64 {
    r.reversal(a, &Reversed::default(), ret).1
}

#[test]
fn returns_reverse_pro_rata_capped_by_the_line() {
    let r = LoyaltyRules::default_rules();
    let a = r
        .accrue(
            &sale(
                "s",
                Some("m"),
                "EUR",
                &[("A", 2, 1000, 0), ("B", 1, 2000, 0)],
            ),
            None,
        )
        .expect("earns");
    assert_eq!(a.points, 40);
    assert_eq!(
        first_reversal(&r, &a, &ret("r", "s", &[("1", "A", 1, 1000)])),
        10
    );
    assert_eq!(
        first_reversal(&r, &a, &ret("r", "s", &[("9", "B", 1, 9999)])),
        20,
        "matched by SKU, refund capped at the line"
    );
    assert_eq!(
        first_reversal(
            &r,
            &a,
            &ret("r", "s", &[("1", "A", 2, 2000), ("2", "B", 1, 2000)])
        ),
        40
    );
    assert_eq!(
        first_reversal(&r, &a, &ret("r", "s", &[("7", "Z", 1, 500)])),
        0,
        "unknown line"
    );
}

#[test]
fn several_returns_of_a_sale_never_reverse_more_than_a_line_earned() {
    let r = LoyaltyRules::default_rules();
    let a = r
        .accrue(
            &sale(
                "s",
                Some("m"),
                "EUR",
                &[("A", 2, 1000, 0), ("B", 1, 2000, 0), ("A", 1, 1000, 0)],
            ),
            None,
        )
        .expect("earns");
    assert_eq!(a.points, 50);
    let mut so_far = Reversed::default();
    let mut reversed = Vec::new();
    for ret in [
        ret("r1", "s", &[("1", "A", 1, 1000)]),
        ret("r2", "s", &[("1", "A", 1, 1000)]),
        // Line 1 is fully returned: a third unit of it gives nothing back.
        ret("r3", "s", &[("1", "A", 1, 1000)]),
        // By SKU: the first A line with something left is line 3.
        ret("r4", "s", &[("x", "A", 5, 5000)]),
        ret("r5", "s", &[("x", "A", 1, 1000)]),
        ret("r6", "s", &[("2", "B", 1, 1500), ("2", "B", 1, 1500)]),
    ] {
        let (next, points) = r.reversal(&a, &so_far, &ret);
        so_far = next;
        reversed.push(points);
    }
    assert_eq!(reversed, vec![10, 10, 0, 10, 0, 20]);
    assert_eq!(so_far.points, a.points);
    for line in &a.lines {
        assert_eq!(so_far.lines.get(&line.line_id), Some(&line.eligible_minor));
    }
}

#[test]
fn partial_returns_floor_like_one_whole_return() {
    // 3 units of 3.50 earn 10 points; three returns of one unit each give back 3 + 3 + 4, as one return
    // of all three would: the running total is floored, not each return (which would give 3 + 3 + 3).
    let r = LoyaltyRules::default_rules();
    let a = r
        .accrue(&sale("s", Some("m"), "EUR", &[("A", 3, 350, 0)]), None)
        .expect("earns");
    assert_eq!(a.points, 10);
    let mut so_far = Reversed::default();
    let mut total = 0;
    for n in 0..3 {
        let (next, points) = r.reversal(
            &a,
            &so_far,
            &ret(&format!("r{n}"), "s", &[("1", "A", 1, 350)]),
        );
        so_far = next;
        total += points;
    }
    assert_eq!(total, 10);
}

struct Setup {
    accrual: LoyaltyAccrual,
    ledger: Arc<EmbeddedLoyaltyLedger>,
    metrics: Arc<Metrics>,
}

fn setup(rules: LoyaltyRules) -> Setup {
    let ledger = Arc::new(EmbeddedLoyaltyLedger::in_memory().expect("ledger"));
    let metrics = Arc::new(Metrics::new(
        "loyalty-accrual",
        Sink::Memory(std::sync::Mutex::new(Vec::new())),
    ));
    let accrual = LoyaltyAccrual::new(ledger.clone(), rules, metrics.clone());
    Setup {
        accrual,
        ledger,
        metrics,
    }
}

fn env(event: CanonicalEvent) -> EventEnvelope {
    EventEnvelope::new(event, "c".into(), at("2026-01-15T10:00:00Z"))
}

fn member(m: &str) -> MemberId {
    MemberId::parse(m).expect("member")
}

#[tokio::test]
async fn exactly_one_ledger_entry_per_sale_under_redelivery() {
    let s = setup(LoyaltyRules::default_rules());
    let e = env(CanonicalEvent::SaleCompleted(sale(
        "s1",
        Some("m1"),
        "EUR",
        &[("A", 1, 1999, 0)],
    )));
    for _ in 0..3 {
        s.accrual.handle_envelope(&e).await.expect("handled");
    }
    assert_eq!(s.ledger.balance(&member("m1")).await.expect("balance"), 19);
    assert_eq!(
        s.ledger
            .entries(&member("m1"))
            .await
            .expect("entries")
            .len(),
        1
    );
}

#[tokio::test]
async fn sales_without_a_member_earn_nothing_and_are_counted() {
    let s = setup(LoyaltyRules::default_rules());
    s.accrual
        .handle_envelope(&env(CanonicalEvent::SaleCompleted(sale(
            "s1",
            None,
            "EUR",
            &[("A", 1, 1999, 0)],
        ))))
        .await
        .expect("ok");
    assert!(s.metrics.recorded().iter().any(|d| d["NoMember"] == 1.0));
    assert!(s.ledger.balances().expect("balances").is_empty());
    // Its return has nothing to reverse (and is not retried forever).
    s.accrual
        .handle_envelope(&env(CanonicalEvent::ReturnCompleted(ret(
            "r1",
            "s1",
            &[("1", "A", 1, 1999)],
        ))))
        .await
        .expect("ok");
    assert!(
        s.metrics
            .recorded()
            .iter()
            .any(|d| d["NothingToReverse"] == 1.0)
    );
}

#[tokio::test]
async fn a_return_before_its_sale_is_retried_until_the_sale_lands() {
    let s = setup(LoyaltyRules::default_rules());
    let r = env(CanonicalEvent::ReturnCompleted(ret(
        "r1",
        "s1",
        &[("1", "A", 1, 1000)],
    )));
    assert!(matches!(
        s.accrual.handle_envelope(&r).await,
        Err(RecordError::Retryable(_))
    ));
    s.accrual
        .handle_envelope(&env(CanonicalEvent::SaleCompleted(sale(
            "s1",
            Some("m1"),
            "EUR",
            &[("A", 2, 1000, 0)],
        ))))
        .await
        .expect("sale");
    s.accrual.handle_envelope(&r).await.expect("now reversible");
    s.accrual.handle_envelope(&r).await.expect("redelivery");
    assert_eq!(s.ledger.balance(&member("m1")).await.expect("balance"), 10);
    let entries = s.ledger.entries(&member("m1")).await.expect("entries");
    assert_eq!(
        entries.iter().map(|e| e.points).collect::<Vec<_>>(),
        vec![20, -10]
    );
}

/// The member spends `points` elsewhere (a redemption, outside this platform).
async fn spend(ledger: &EmbeddedLoyaltyLedger, m: &str, points: i64) {
    let entry = LedgerEntry {
        event_id: EventId::parse("evt:redeem:1").expect("id"),
        member_id: member(m),
        kind: EntryKind::Reverse,
        points: 0,
        unrecovered: 0,
        sale_id: None,
        occurred_at: at("2026-01-15T12:00:00Z"),
    };
    ledger
        .reverse(&entry, points, NegativeBalancePolicy::Allow)
        .await
        .expect("spend");
}

#[tokio::test]
async fn a_reversal_below_zero_is_clamped_and_the_rest_recorded() {
    let s = setup(LoyaltyRules::default_rules());
    s.accrual
        .handle_envelope(&env(CanonicalEvent::SaleCompleted(sale(
            "s1",
            Some("m1"),
            "EUR",
            &[("A", 1, 5000, 0)],
        ))))
        .await
        .expect("sale");
    // The member spends 40 of the 50 points elsewhere.
    spend(&s.ledger, "m1", 40).await;
    s.accrual
        .handle_envelope(&env(CanonicalEvent::ReturnCompleted(ret(
            "r1",
            "s1",
            &[("1", "A", 1, 5000)],
        ))))
        .await
        .expect("return");
    assert_eq!(s.ledger.balance(&member("m1")).await.expect("balance"), 0);
    let last = s
        .ledger
        .entries(&member("m1"))
        .await
        .expect("entries")
        .pop()
        .expect("entry");
    assert_eq!((last.points, last.unrecovered), (-10, 40));
}

#[tokio::test]
async fn the_allow_policy_lets_the_balance_go_negative() {
    let mut doc: serde_json::Value = serde_json::from_str(default_rules_json()).expect("json");
    doc["negative_balance"] = serde_json::json!("allow");
    let s = setup(LoyaltyRules::parse(&doc.to_string()).expect("rules"));
    s.accrual
        .handle_envelope(&env(CanonicalEvent::SaleCompleted(sale(
            "s1",
            Some("m1"),
            "EUR",
            &[("A", 1, 5000, 0)],
        ))))
        .await
        .expect("sale");
    spend(&s.ledger, "m1", 40).await;
    s.accrual
        .handle_envelope(&env(CanonicalEvent::ReturnCompleted(ret(
            "r1",
            "s1",
            &[("1", "A", 1, 5000)],
        ))))
        .await
        .expect("return");
    assert_eq!(s.ledger.balance(&member("m1")).await.expect("balance"), -40);
}

#[tokio::test]
async fn returns_beyond_what_a_line_earned_take_nothing_from_the_members_other_points() {
    let s = setup(LoyaltyRules::default_rules());
    for (id, lines) in [
        ("s1", &[("A", 2, 1000, 0), ("B", 1, 2000, 0)][..]),
        ("s2", &[("C", 1, 5000, 0)][..]),
    ] {
        s.accrual
            .handle_envelope(&env(CanonicalEvent::SaleCompleted(sale(
                id,
                Some("m1"),
                "EUR",
                lines,
            ))))
            .await
            .expect("sale");
    }
    assert_eq!(s.ledger.balance(&member("m1")).await.expect("balance"), 90);
    // Line 1 of s1 (2 x A) returned in two partial returns, then once more (more units than sold),
    // then line 2 twice: s1 earned 40, so at most 40 come back; s2's 50 points stay.
    for (id, lines) in [
        ("r1", &[("1", "A", 1, 1000)][..]),
        ("r2", &[("1", "A", 1, 1000)][..]),
        ("r3", &[("1", "A", 2, 2000)][..]),
        ("r4", &[("2", "B", 1, 2000)][..]),
        ("r5", &[("2", "B", 1, 2000)][..]),
    ] {
        let e = env(CanonicalEvent::ReturnCompleted(ret(id, "s1", lines)));
        s.accrual.handle_envelope(&e).await.expect("return");
        s.accrual.handle_envelope(&e).await.expect("redelivery");
    }
    assert_eq!(s.ledger.balance(&member("m1")).await.expect("balance"), 50);
    let reversed: Vec<i64> = s
        .ledger
        .entries(&member("m1"))
        .await
        .expect("entries")
        .iter()
        .filter(|e| e.kind == EntryKind::Reverse)
        .map(|e| e.points)
        .collect();
    assert_eq!(reversed.iter().sum::<i64>(), -40);
    let record = s
        .ledger
        .accrual(&SaleId::parse("s1").expect("id"))
        .await
        .expect("read")
        .expect("record");
    assert_eq!(record.reversed.points, 40);
}

#[tokio::test]
async fn the_member_tier_comes_from_the_ledger() {
    let s = setup(LoyaltyRules::default_rules());
    s.ledger.set_tier(&member("m1"), "gold").expect("tier");
    s.accrual
        .handle_envelope(&env(CanonicalEvent::SaleCompleted(sale(
            "s1",
            Some("m1"),
            "EUR",
            &[("A", 1, 1000, 0)],
        ))))
        .await
        .expect("sale");
    assert_eq!(s.ledger.balance(&member("m1")).await.expect("balance"), 15);
}

#[tokio::test]
async fn poison_bodies_are_poison() {
    let s = setup(LoyaltyRules::default_rules());
    assert!(matches!(
        s.accrual.handle_body("[]").await,
        Err(RecordError::Poison(_))
    ));
}

#[tokio::test]
async fn each_batch_emits_its_size_failures_and_latency() {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
    let s = setup(LoyaltyRules::default_rules());
    let mut event = SqsEvent::default();
    for (id, body) in [("a", "{bad"), ("b", "[]")] {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        event.records.push(m);
    }
    let resp = s.accrual.handle_batch(&event).await;
    assert_eq!(resp.batch_item_failures.len(), 2);
    let doc = s.metrics.recorded().pop().expect("batch metrics");
    assert_eq!(
        (
            doc["BatchRecords"].as_f64(),
            doc["RecordFailures"].as_f64(),
            doc["PoisonRecords"].as_f64()
        ),
        (Some(2.0), Some(2.0), Some(2.0))
    );
    assert!(doc["HandlerLatency"].as_f64().is_some());
}

#[tokio::test]
async fn ledger_pages_follow_key_order_in_memory_and_on_disk() {
    let (m, other, empty) = (member("m1"), member("m2"), member("m3"));
    let memory = EmbeddedLoyaltyLedger::in_memory().expect("ledger");
    conformance::pages_in_key_order(&memory, &m, &other, &empty)
        .await
        .expect("in memory");
    let dir = tempfile::tempdir().expect("dir");
    let db = redb::Database::create(dir.path().join("loyalty.redb")).expect("db");
    let disk = EmbeddedLoyaltyLedger::new(Arc::new(db)).expect("ledger");
    conformance::pages_in_key_order(&disk, &m, &other, &empty)
        .await
        .expect("on disk");
}
