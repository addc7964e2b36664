//! The DynamoDB ledgers against moto, table keys from `infra/`: what the embedded ledgers guarantee in
//! the unit tests of `shared/` must hold on DynamoDB too (conditional writes, optimistic concurrency).

use pos_shared::ids::{MemberId, ReturnId, SaleId, Sku, StoreId};
use pos_shared::loyalty::dynamodb::DynamoLoyaltyLedger;
use pos_shared::loyalty::rules::LoyaltyRules;
use pos_shared::loyalty::{EntryKind, LoyaltyAccrual, LoyaltyLedger};
use pos_shared::metrics::{Metrics, Sink};
use pos_shared::model::{
    CanonicalEvent, EventEnvelope, Quantity, Return, ReturnLine, Sale, SaleLine, Source, Vendor,
};
use pos_shared::money::{Currency, Money};
use pos_tests::moto::{Moto, create_table_from_infra};
use std::sync::Arc;

fn eur() -> Currency {
    Currency::parse("EUR").expect("EUR")
}

fn when() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .expect("time")
        .to_utc()
}

fn source(id: &str) -> Source {
    Source {
        vendor: Vendor::Standard,
        external_id: id.into(),
        channel: None,
    }
}

/// A sale by member `m1` of `lines` = (sku, quantity, unit price in cents).
fn sale(id: &str, lines: &[(&str, i64, i64)]) -> EventEnvelope {
    let sale = Sale {
        sale_id: SaleId::parse(id).expect("id"),
        store_id: StoreId::parse("store-1").expect("store"),
        occurred_at: when(),
        source: source(id),
        member_id: Some(MemberId::parse("m1").expect("member")),
        currency: eur(),
        lines: lines
            .iter()
            .enumerate()
            .map(|(i, (sku, q, p))| SaleLine {
                line_id: (i + 1).to_string(),
                sku: Some(Sku::parse(*sku).expect("sku")),
                quantity: Quantity::new(*q).expect("quantity"),
                unit_price: Money::from_minor(*p, eur()),
                discount: Money::zero(eur()),
            })
            .collect(),
        total: Money::zero(eur()),
        tax: Money::zero(eur()),
    };
    EventEnvelope::new(CanonicalEvent::SaleCompleted(sale), "c".into(), when())
}

/// A return against `sale_id` of `lines` = (line id, sku, quantity, refund in cents).
fn ret(id: &str, sale_id: &str, lines: &[(&str, &str, i64, i64)]) -> EventEnvelope {
    let ret = Return {
        return_id: ReturnId::parse(id).expect("id"),
        sale_id: Some(SaleId::parse(sale_id).expect("sale")),
        store_id: StoreId::parse("store-1").expect("store"),
        occurred_at: when(),
        source: source(id),
        member_id: None,
        currency: eur(),
        lines: lines
            .iter()
            .map(|(line, sku, q, refund)| ReturnLine {
                line_id: (*line).to_owned(),
                sku: Some(Sku::parse(*sku).expect("sku")),
                quantity: Quantity::new(*q).expect("quantity"),
                restock: true,
                refund: Money::from_minor(*refund, eur()),
            })
            .collect(),
        total_refund: Money::zero(eur()),
    };
    EventEnvelope::new(CanonicalEvent::ReturnCompleted(ret), "c".into(), when())
}

async fn loyalty(moto: &Moto, table: &str) -> (LoyaltyAccrual, Arc<DynamoLoyaltyLedger>) {
    let ddb = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    create_table_from_infra(&ddb, table, "loyalty").await;
    let ledger = Arc::new(DynamoLoyaltyLedger::new(ddb, table));
    let accrual = LoyaltyAccrual::new(
        ledger.clone(),
        LoyaltyRules::default_rules(),
        Arc::new(Metrics::new("loyalty-accrual", Sink::Off)),
    );
    (accrual, ledger)
}

#[tokio::test]
async fn returns_never_reverse_more_than_a_line_earned_on_dynamodb() {
    let Some(moto) = Moto::start() else { return };
    let (accrual, ledger) = loyalty(&moto, "loyalty-reversals").await;
    let m1 = MemberId::parse("m1").expect("member");
    // s1 earns 40 (2 x 10.00 + 20.00), s2 earns 50.
    for e in [
        sale("s1", &[("A", 2, 1000), ("B", 1, 2000)]),
        sale("s2", &[("C", 1, 5000)]),
    ] {
        accrual.handle_envelope(&e).await.expect("sale");
    }
    assert_eq!(ledger.balance(&m1).await.expect("balance"), 90);
    // Partial returns of line 1, then more units than were sold, then line 2 twice, each redelivered.
    for e in [
        ret("r1", "s1", &[("1", "A", 1, 1000)]),
        ret("r2", "s1", &[("1", "A", 1, 1000)]),
        ret("r3", "s1", &[("1", "A", 2, 2000)]),
        ret("r4", "s1", &[("2", "B", 1, 2000)]),
        ret("r5", "s1", &[("2", "B", 1, 2000)]),
    ] {
        accrual.handle_envelope(&e).await.expect("return");
        accrual.handle_envelope(&e).await.expect("redelivery");
    }
    assert_eq!(
        ledger.balance(&m1).await.expect("balance"),
        50,
        "s2's points stay"
    );
    let entries = ledger.entries(&m1).await.expect("entries");
    let reversals: Vec<i64> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Reverse)
        .map(|e| e.points)
        .collect();
    assert_eq!(reversals, vec![-10, -10, 0, -20, 0]);
    let record = ledger
        .accrual(&SaleId::parse("s1").expect("id"))
        .await
        .expect("read")
        .expect("record");
    assert_eq!(record.reversed.points, 40);
}

#[tokio::test]
async fn concurrent_returns_of_one_sale_cannot_both_reverse_the_same_line() {
    let Some(moto) = Moto::start() else { return };
    let (accrual, ledger) = loyalty(&moto, "loyalty-concurrent").await;
    let m1 = MemberId::parse("m1").expect("member");
    accrual
        .handle_envelope(&sale("s1", &[("A", 1, 3000)]))
        .await
        .expect("sale");
    accrual
        .handle_envelope(&sale("s2", &[("C", 1, 5000)]))
        .await
        .expect("sale");
    // Eight returns of the one unit, at once (eight Lambda instances): 30 points come back, once.
    let returns: Vec<EventEnvelope> = (0..8)
        .map(|i| ret(&format!("r{i}"), "s1", &[("1", "A", 1, 3000)]))
        .collect();
    let accrual = Arc::new(accrual);
    let mut tasks = tokio::task::JoinSet::new();
    for e in returns {
        let accrual = accrual.clone();
        // A record that lost the race too often goes back to the queue: redeliver it, as SQS would.
        tasks.spawn(async move {
            let mut last = Ok(());
            for _ in 0..5 {
                last = accrual.handle_envelope(&e).await;
                if last.is_ok() {
                    break;
                }
            }
            last
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task")
            .expect("each return is recorded once, never doubled");
    }
    assert_eq!(ledger.balance(&m1).await.expect("balance"), 50);
    let reversed: i64 = ledger
        .entries(&m1)
        .await
        .expect("entries")
        .iter()
        .filter(|e| e.kind == EntryKind::Reverse)
        .map(|e| e.points)
        .sum();
    assert_eq!(reversed, -30);
}

#[tokio::test]
async fn free_text_skus_keep_their_own_stock_level_on_dynamodb() {
    use pos_shared::ids::EventId;
    use pos_shared::stock::dynamodb::DynamoStockLedger;
    use pos_shared::stock::{StockDelta, StockLedger};
    let Some(moto) = Moto::start() else { return };
    let ddb = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    create_table_from_infra(&ddb, "stock-skus", "stock").await;
    let ledger = DynamoStockLedger::new(ddb, "stock-skus");
    let store = StoreId::parse("store-1").expect("store");
    // SKUs that share a prefix or differ only by a character an encoding could fold.
    let skus = [
        "TEE RED M",
        "Größe 42",
        "CAP#NAVY+1",
        "CAP#NAVY",
        "CAP",
        "50%/2",
        "é".repeat(Sku::MAX_LEN).leak(),
    ];
    for (n, sku) in skus.iter().enumerate() {
        let delta = StockDelta {
            store_id: store.clone(),
            sku: Sku::parse(*sku).expect("sku"),
            delta: i64::try_from(n).expect("n") + 1,
        };
        ledger
            .apply(
                &EventId::parse(format!("evt:adj:{n}")).expect("id"),
                when(),
                &[delta],
            )
            .await
            .expect("applied");
    }
    for (n, sku) in skus.iter().enumerate() {
        let level = ledger
            .on_hand(&store, &Sku::parse(*sku).expect("sku"))
            .await
            .expect("read");
        assert_eq!(level, i64::try_from(n).expect("n") + 1, "{sku}");
    }
    let mut seen = Vec::new();
    let mut after: Option<Sku> = None;
    loop {
        let (page, next) = ledger
            .store_levels(&store, after.as_ref(), 2)
            .await
            .expect("page");
        seen.extend(page.into_iter().map(|(sku, _)| sku.to_string()));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let mut expected: Vec<String> = skus.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(seen, expected, "every SKU once, in byte order as in redb");
}

#[tokio::test]
async fn counts_and_deltas_commute_on_dynamodb() {
    use pos_shared::stock::conformance::{ORDERS, counts_and_deltas_commute};
    use pos_shared::stock::dynamodb::DynamoStockLedger;
    let Some(moto) = Moto::start() else { return };
    let ddb = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    create_table_from_infra(&ddb, "stock-counts", "stock").await;
    let ledger = DynamoStockLedger::new(ddb, "stock-counts");
    let store = StoreId::parse("store-1").expect("store");
    // A spread of the 720 arrival orders (moto answers in milliseconds; the embedded run covers all).
    counts_and_deltas_commute(&ledger, &store, (0..ORDERS).step_by(37))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn the_loyalty_ledger_pages_in_key_order_on_dynamodb() {
    let Some(moto) = Moto::start() else { return };
    let (_, ledger) = loyalty(&moto, "loyalty-pages").await;
    let member = |m: &str| MemberId::parse(m).expect("member");
    // The same scenario as the embedded ledger's (shared/src/loyalty/conformance.rs); m1 also has a
    // profile item (`PROFILE` sorts after `ENTRY#…`) that must not show up as an entry.
    pos_shared::loyalty::conformance::pages_in_key_order(
        ledger.as_ref(),
        &member("m1"),
        &member("m2"),
        &member("m3"),
    )
    .await
    .expect("pages");
}
