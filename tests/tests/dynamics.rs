//! The delivery engine with the Dynamics 365 destination against the D365 emulator (`pos_tests::d365`):
//! one sales order with exactly its lines per sale, under redelivery, lost answers, a crash between
//! header and lines, throttling, token expiry, refusals and bad configuration; order numbers within
//! D365's lengths; one journal per stock adjustment.

use pos_shared::delivery::breaker::{BreakerConfig, CircuitBreaker, MemoryBreakerStore};
use pos_shared::delivery::dynamics::{
    DynamicsConfig, DynamicsConfigError, DynamicsOrders, RMA_NUMBER_MAX, SALES_ORDER_NUMBER_MAX,
    d365_key,
};
use pos_shared::delivery::engine::{Deliverer, Outcome};
use pos_shared::delivery::ledger::{DeliveryLedger, DeliveryStatus, MemoryDeliveryLedger};
use pos_shared::delivery::retry::RetryPolicy;
use pos_shared::model::EventEnvelope;
use pos_shared::ports::{Clock, SystemClock};
use pos_shared::samples;
use pos_tests::d365::{D365, Fault, FaultKind, LEGAL_ENTITY};
use secrecy::SecretString;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const HEADERS: &str = "SalesOrderHeadersV2";
const LINES: &str = "SalesOrderLines";

fn engine(config: DynamicsConfig) -> (Deliverer, Arc<MemoryDeliveryLedger>) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // The client's timeout is well under the emulator's lost-reply delay.
    let dest = DynamicsOrders::connect(
        config,
        reqwest::Client::new(),
        clock.clone(),
        Duration::from_millis(800),
    );
    let ledger = Arc::new(MemoryDeliveryLedger::default());
    let deliverer = Deliverer::new(
        Arc::new(dest),
        ledger.clone(),
        CircuitBreaker::new(
            Arc::new(MemoryBreakerStore::default()),
            clock.clone(),
            BreakerConfig::default(),
        ),
        RetryPolicy {
            in_process: pos_shared::backoff::Backoff {
                attempts: 3,
                base: Duration::from_millis(10),
                cap: Duration::from_millis(50),
            },
            ..RetryPolicy::default()
        },
        clock,
    );
    (deliverer, ledger)
}

fn sale(id: &str, lines: usize) -> EventEnvelope {
    let body = samples::standard_sale(id, "store-001", Some("m-1"), lines);
    samples::envelope_of(&samples::standard("m", &body, samples::sample_time(), None))
        .expect("a sale")
}

fn fault(method: &'static str, set: &'static str, kind: FaultKind) -> Fault {
    Fault {
        method: Some(method),
        set: Some(set),
        kind,
    }
}

/// The line sequence numbers stored for `number`, sorted (a duplicate shows twice).
fn line_numbers(d365: &D365, number: &str) -> Vec<u64> {
    let mut seqs: Vec<u64> = d365
        .entities(LINES)
        .iter()
        .filter(|l| l["SalesOrderNumber"] == number)
        .filter_map(|l| l["LineCreationSequenceNumber"].as_u64())
        .collect();
    seqs.sort_unstable();
    seqs
}

#[tokio::test]
async fn a_sale_is_one_sales_order_with_exactly_its_lines_and_a_redelivery_is_skipped() {
    let d365 = D365::start().await;
    let (engine, ledger) = engine(d365.config());
    let event = sale("dx-1", 2);
    let out = engine.deliver(&event, 1).await.expect("deliver");
    let Outcome::Delivered(landed) = out else {
        panic!("not delivered: {out:?}");
    };
    assert_eq!(landed.remote_id.as_deref(), Some("dev-till:dx-1"));
    assert!(landed.remote_version.is_some(), "the header's @odata.etag");
    assert_eq!((d365.created(HEADERS), d365.created(LINES)), (1, 2));
    let header = &d365.entities(HEADERS)[0];
    assert_eq!(header["dataAreaId"], LEGAL_ENTITY);
    assert_eq!(header["OrderingCustomerAccountNumber"], "US-RETAIL");
    assert_eq!(header["DefaultShippingWarehouseId"], "WH-01");
    let lines = d365.entities(LINES);
    assert_eq!(lines[0]["ItemNumber"], "SKU-001");
    assert_eq!(lines[0]["SalesPrice"], "12.50");
    assert_eq!(lines[1]["LineCreationSequenceNumber"], 2);
    assert_eq!(d365.tokens_issued(), 1, "one token for every call");

    // The SQS redelivery of the same record: skipped, nothing written.
    assert_eq!(
        engine.deliver(&event, 2).await.expect("again"),
        Outcome::Skipped
    );
    assert_eq!((d365.created(HEADERS), d365.created(LINES)), (1, 2));
    let entry = ledger
        .get(&event.event_id, "dynamics")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(entry.status, DeliveryStatus::Delivered);
    assert_eq!(entry.remote_id.as_deref(), Some("dev-till:dx-1"));
}

#[tokio::test]
async fn a_lost_answer_is_read_back_never_a_second_order_or_line() {
    let d365 = D365::start().await;
    let (engine, ledger) = engine(d365.config());
    // The header lands but its answer is lost; then the same for the first line (three tries in
    // one invocation: the third reads back and completes).
    d365.fault(fault("POST", HEADERS, FaultKind::LoseReply));
    d365.fault(fault("POST", LINES, FaultKind::LoseReply));
    let event = sale("dx-2", 3);
    let out = engine.deliver(&event, 1).await.expect("deliver");
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert_eq!(d365.faults_pending(), 0, "every lost answer happened");
    assert_eq!(d365.created(HEADERS), 1, "one order");
    assert_eq!(line_numbers(&d365, "dev-till:dx-2"), vec![1, 2, 3]);
    let entry = ledger
        .get(&event.event_id, "dynamics")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(entry.status, DeliveryStatus::Delivered);
    assert_eq!(
        entry.attempts, 3,
        "one attempt per lost answer, then the last"
    );
}

#[tokio::test]
async fn a_header_left_without_its_lines_gets_only_the_missing_ones() {
    let d365 = D365::start().await;
    // A previous process created the header and line 1, then died.
    d365.seed(
        HEADERS,
        json!({"dataAreaId": LEGAL_ENTITY, "SalesOrderNumber": "dev-till:dx-3",
               "CustomersOrderReference": "dev-till:dx-3",
               "OrderingCustomerAccountNumber": "US-RETAIL", "CurrencyCode": "EUR"}),
    );
    d365.seed(
        LINES,
        json!({"dataAreaId": LEGAL_ENTITY, "SalesOrderNumber": "dev-till:dx-3",
               "LineCreationSequenceNumber": 1, "ItemNumber": "SKU-001", "OrderedSalesQuantity": 1}),
    );
    let (engine, _) = engine(d365.config());
    let out = engine.deliver(&sale("dx-3", 3), 2).await.expect("deliver");
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert_eq!(d365.created(HEADERS), 0, "the duplicate header was refused");
    assert_eq!(d365.created(LINES), 2, "lines 2 and 3 only");
    assert_eq!(line_numbers(&d365, "dev-till:dx-3"), vec![1, 2, 3]);

    // And within one delivery: the first two line creates fail (503), the retries complete the
    // lines once.
    let (engine, _) = self::engine(d365.config());
    let second = sale("dx-4", 2);
    d365.fault(fault("POST", LINES, FaultKind::Unavailable));
    d365.fault(fault("POST", LINES, FaultKind::Unavailable));
    let out = engine.deliver(&second, 1).await.expect("deliver");
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert_eq!(d365.faults_served(), 2);
    assert_eq!(line_numbers(&d365, "dev-till:dx-4"), vec![1, 2]);
    assert_eq!(
        d365.entities(HEADERS)
            .iter()
            .filter(|h| h["SalesOrderNumber"] == "dev-till:dx-4")
            .count(),
        1
    );
}

#[tokio::test]
async fn throttling_honours_retry_after() {
    let d365 = D365::start().await;
    let (engine, ledger) = engine(d365.config());
    // A short Retry-After is waited for in the invocation.
    d365.fault(fault("POST", HEADERS, FaultKind::Throttle(1)));
    let out = engine.deliver(&sale("dx-5", 1), 1).await.expect("deliver");
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert_eq!(d365.faults_served(), 1);
    assert_eq!((d365.created(HEADERS), d365.created(LINES)), (1, 1));

    // A long one sends the record back to the queue for exactly that long, with nothing written.
    d365.fault(Fault {
        method: None,
        set: None,
        kind: FaultKind::Throttle(120),
    });
    let event = sale("dx-6", 1);
    assert_eq!(
        engine.deliver(&event, 1).await.expect("deliver"),
        Outcome::Requeue(Duration::from_secs(120))
    );
    assert_eq!(d365.faults_served(), 2);
    assert_eq!(d365.created(HEADERS), 1);
    let entry = ledger
        .get(&event.event_id, "dynamics")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(entry.status, DeliveryStatus::Retrying);
    assert_eq!(entry.last_error.as_deref(), Some("HTTP 429"));
}

#[tokio::test]
async fn a_rejected_token_is_refreshed_once() {
    let d365 = D365::start().await;
    let (engine, _) = engine(d365.config());
    assert!(matches!(
        engine.deliver(&sale("dx-7", 1), 1).await.expect("first"),
        Outcome::Delivered(_)
    ));
    assert_eq!(d365.tokens_issued(), 1);
    d365.revoke_tokens();
    let out = engine.deliver(&sale("dx-8", 2), 1).await.expect("second");
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert_eq!(d365.tokens_issued(), 2, "one refresh");
    assert_eq!((d365.created(HEADERS), d365.created(LINES)), (2, 3));
}

#[tokio::test]
async fn a_permanent_refusal_is_dead_with_its_status_and_nothing_written() {
    let d365 = D365::start().await;
    let (engine, ledger) = engine(d365.config());
    d365.fault(fault("POST", HEADERS, FaultKind::Invalid));
    let event = sale("dx-9", 1);
    let out = engine.deliver(&event, 1).await.expect("deliver");
    assert!(
        matches!(&out, Outcome::Dead(reason) if reason.starts_with("HTTP 400")),
        "{out:?}"
    );
    assert_eq!(d365.created(HEADERS), 0);
    let entry = ledger
        .get(&event.event_id, "dynamics")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(entry.status, DeliveryStatus::Dead);
    let error = entry.last_error.unwrap_or_default();
    assert!(!error.contains("Item number"), "no message bodies: {error}");
}

#[tokio::test]
async fn a_return_is_one_return_order_with_negative_lines() {
    let d365 = D365::start().await;
    let (engine, _) = engine(d365.config());
    let ret = samples::envelope_of(&samples::standard(
        "r",
        &samples::standard_return("r-1", "dx-1", "store-001"),
        samples::sample_time(),
        None,
    ))
    .expect("a return");
    let out = engine.deliver(&ret, 1).await.expect("deliver");
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert_eq!(
        engine.deliver(&ret, 2).await.expect("again"),
        Outcome::Skipped
    );
    let headers = d365.entities("ReturnOrderHeaders");
    assert_eq!(headers.len(), 1);
    // 12 characters do not fit an RMA number: the stable short number, the whole id beside it.
    let rma = d365_key("dev-till:r-1", RMA_NUMBER_MAX);
    assert!(rma.len() <= 10, "{rma}");
    assert_eq!(headers[0]["ReturnOrderNumber"], rma.as_str());
    assert_eq!(headers[0]["CustomersOrderReference"], "dev-till:r-1");
    assert_eq!(headers[0]["CustomerRequisitionNumber"], "dev-till:dx-1");
    let lines = d365.entities("ReturnOrderLines");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["ReturnOrderNumber"], rma.as_str());
    assert_eq!(lines[0]["OrderedSalesQuantity"], -1);
    assert_eq!(lines[0]["LineAmount"], "-12.50");
    assert_eq!(d365.created(HEADERS), 0, "not a sales order");
}

#[tokio::test]
async fn bad_configuration_is_refused_clearly() {
    let d365 = D365::start().await;
    // A key missing: refused before any call, naming the key.
    let base = d365.config();
    let err = DynamicsConfig::from_env_map(|k| match k {
        "D365_ENVIRONMENT_URL" => None,
        "D365_TENANT_ID" => Some(base.tenant_id.clone()),
        _ => Some("x".into()),
    })
    .expect_err("missing key");
    assert_eq!(err, DynamicsConfigError::Missing("D365_ENVIRONMENT_URL"));
    assert_eq!(err.to_string(), "D365_ENVIRONMENT_URL is missing");

    // A wrong secret: Entra ID refuses the client. That is the destination's configuration, not the
    // record's fault: it waits in the queue (the breaker alarms) with the OAuth code only.
    let mut wrong = d365.config();
    wrong.client_secret = SecretString::from("not-the-secret");
    let (engine, ledger) = engine(wrong);
    let event = sale("dx-10", 1);
    let out = engine.deliver(&event, 1).await.expect("deliver");
    assert!(matches!(out, Outcome::Requeue(_)), "not waiting: {out:?}");
    let reason = ledger
        .get(&event.event_id, "dynamics")
        .await
        .expect("ledger")
        .and_then(|e| e.last_error)
        .unwrap_or_default();
    assert!(reason.contains("invalid_client"), "{reason}");
    assert!(!reason.contains("not-the-secret"), "{reason}");
    assert_eq!(d365.created(HEADERS), 0);
}

#[tokio::test]
async fn a_long_sale_id_is_a_short_number_read_back_by_the_same_mapping() {
    let d365 = D365::start().await;
    let (engine, _) = engine(d365.config());
    let id = "0b9d5a3e-6f2c-4c1e-9a47-3f1c2d8e7b10";
    let event = sale(id, 2);
    let full = format!("dev-till:{id}");
    let number = d365_key(&full, SALES_ORDER_NUMBER_MAX);
    // The header's answer is lost: the read-back must find the order under the same short number.
    d365.fault(fault("POST", HEADERS, FaultKind::LoseReply));
    let out = engine.deliver(&event, 1).await.expect("deliver");
    let Outcome::Delivered(landed) = out else {
        panic!("not delivered: {out:?}");
    };
    assert_eq!(landed.remote_id.as_deref(), Some(number.as_str()));
    assert_eq!(d365.created(HEADERS), 1, "one order");
    let header = &d365.entities(HEADERS)[0];
    assert!(number.len() <= 20, "{number}");
    assert_eq!(header["SalesOrderNumber"], number.as_str());
    assert_eq!(header["CustomersOrderReference"], full.as_str());
    assert_eq!(line_numbers(&d365, &number), vec![1, 2]);
}

#[tokio::test]
async fn a_number_held_by_another_order_is_refused_never_taken_as_ours() {
    let d365 = D365::start().await;
    // An order D365 already has under our number (in another case: D365 ignores it), for another
    // reference: a collision, or a number someone else gave.
    d365.seed(
        HEADERS,
        json!({"dataAreaId": LEGAL_ENTITY, "SalesOrderNumber": "DEV-TILL:DX-11",
               "CustomersOrderReference": "someone-else", "CurrencyCode": "EUR"}),
    );
    let (engine, ledger) = engine(d365.config());
    let event = sale("dx-11", 1);
    let out = engine.deliver(&event, 1).await.expect("deliver");
    assert!(
        matches!(&out, Outcome::Dead(reason) if reason.contains("holds another order")),
        "{out:?}"
    );
    assert_eq!((d365.created(HEADERS), d365.created(LINES)), (0, 0));
    let entry = ledger
        .get(&event.event_id, "dynamics")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(entry.status, DeliveryStatus::Dead);
}

const MOVES: &str = "InventoryMovementJournalHeaders";
const MOVE_LINES: &str = "InventoryMovementJournalEntriesV2";

fn adjustment(id: &str, field: &str, units: i64) -> EventEnvelope {
    samples::envelope_of(&samples::standard(
        &format!("m-{id}"),
        &json!({"type": "stock.adjusted", "timestamp": "2026-01-15T10:00:00Z", "data": {
            "adjustment_id": id, "store_id": "store-001", "sku": "SKU-001",
            "occurred_at": "2026-01-15T09:00:00Z", field: units}}),
        samples::sample_time(),
        None,
    ))
    .expect("an adjustment")
}

#[tokio::test]
async fn a_stock_delta_is_one_movement_journal_once() {
    let d365 = D365::start().await;
    let (engine, ledger) = engine(d365.config());
    let event = adjustment("adj-1", "delta", -4);
    let out = engine.deliver(&event, 1).await.expect("deliver");
    let Outcome::Delivered(landed) = out else {
        panic!("not delivered: {out:?}");
    };
    let headers = d365.entities(MOVES);
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0]["Description"], "dev-till:adj-1");
    assert_eq!(headers[0]["JournalNameId"], "IMov");
    let number = headers[0]["JournalNumber"]
        .as_str()
        .expect("a number")
        .to_owned();
    assert_eq!(landed.remote_id.as_deref(), Some(number.as_str()));
    let lines = d365.entities(MOVE_LINES);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["JournalNumber"], number.as_str());
    assert_eq!(lines[0]["InventoryQuantity"], "-4");
    assert_eq!(lines[0]["InventoryWarehouseId"], "WH-01");
    assert_eq!(
        engine.deliver(&event, 2).await.expect("again"),
        Outcome::Skipped
    );
    // Another engine (a fresh ledger: the entry lost) reads the journal back instead of a second one.
    let (fresh, _) = self::engine(d365.config());
    let out = fresh.deliver(&event, 2).await.expect("fresh");
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert_eq!((d365.created(MOVES), d365.created(MOVE_LINES)), (1, 1));
    let entry = ledger
        .get(&event.event_id, "dynamics")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(entry.status, DeliveryStatus::Delivered);
}

#[tokio::test]
async fn a_lost_journal_answer_is_read_back_never_a_second_journal() {
    let d365 = D365::start().await;
    let (engine, _) = engine(d365.config());
    d365.fault(fault("POST", MOVES, FaultKind::LoseReply));
    d365.fault(fault("POST", MOVE_LINES, FaultKind::LoseReply));
    let out = engine
        .deliver(&adjustment("adj-2", "delta", 6), 1)
        .await
        .expect("deliver");
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert_eq!(d365.faults_pending(), 0, "both answers were lost");
    assert_eq!((d365.created(MOVES), d365.created(MOVE_LINES)), (1, 1));
}

#[tokio::test]
async fn a_journal_left_without_its_line_gets_it() {
    let d365 = D365::start().await;
    d365.seed(
        MOVES,
        json!({"dataAreaId": LEGAL_ENTITY, "JournalNumber": "000777",
               "Description": "dev-till:adj-3", "JournalNameId": "IMov"}),
    );
    let (engine, _) = engine(d365.config());
    let out = engine
        .deliver(&adjustment("adj-3", "delta", 2), 2)
        .await
        .expect("deliver");
    let Outcome::Delivered(landed) = out else {
        panic!("not delivered: {out:?}");
    };
    assert_eq!(landed.remote_id.as_deref(), Some("000777"));
    assert_eq!(d365.created(MOVES), 0, "no second header");
    let lines = d365.entities(MOVE_LINES);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["JournalNumber"], "000777");
}

#[tokio::test]
async fn a_count_is_a_counting_journal_and_a_negative_count_is_refused() {
    let d365 = D365::start().await;
    let (engine, _) = engine(d365.config());
    let out = engine
        .deliver(&adjustment("adj-4", "on_hand", 9), 1)
        .await
        .expect("deliver");
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    let lines = d365.entities("InventoryCountingJournalLines");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["CountedQuantity"], "9");
    assert_eq!(
        d365.entities("InventoryCountingJournalHeaders")[0]["JournalNameId"],
        "ICnt"
    );
    assert_eq!(d365.created(MOVES), 0);
    let out = engine
        .deliver(&adjustment("adj-5", "on_hand", -2), 1)
        .await
        .expect("deliver");
    assert!(
        matches!(&out, Outcome::Dead(reason) if reason.contains("negative count")),
        "{out:?}"
    );
    assert_eq!(d365.created("InventoryCountingJournalHeaders"), 1);
}
