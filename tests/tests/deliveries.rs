//! The delivery ledger and the circuit breaker on DynamoDB (moto), with the table `infra/` declares:
//! compare-and-set holds across instances, one probe is elected among concurrent callers, and a sale's
//! deliveries are listed through the index.

use pos_shared::delivery::breaker::{Admission, BreakerConfig, CircuitBreaker, Transition};
use pos_shared::delivery::dynamodb::DynamoDeliveries;
use pos_shared::delivery::ledger::{DeliveryEntry, DeliveryLedger, DeliveryStatus};
use pos_shared::ids::{EventId, SaleId};
use pos_shared::ports::ManualClock;
use pos_tests::moto::{Moto, create_table_from_infra};
use std::sync::Arc;

async fn table(moto: &Moto) -> DynamoDeliveries {
    let sdk = moto.sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    create_table_from_infra(&ddb, "pos-test-deliveries", "deliveries").await;
    DynamoDeliveries::new(ddb, "pos-test-deliveries")
}

#[tokio::test]
async fn one_probe_is_elected_across_instances_and_the_breaker_state_is_shared() {
    let Some(moto) = Moto::start() else { return };
    let store = Arc::new(table(&moto).await);
    let clock = Arc::new(ManualClock::new(pos_shared::samples::sample_time()));
    let config = BreakerConfig {
        failure_threshold: 2,
        ..BreakerConfig::default()
    };
    // Two instances of the delivery function: two breakers over one table.
    let a = CircuitBreaker::new(store.clone(), clock.clone(), config);
    let b = CircuitBreaker::new(store.clone(), clock.clone(), config);
    assert_eq!(a.record_failure("ct", false).await, Ok(Transition::None));
    assert_eq!(b.record_failure("ct", false).await, Ok(Transition::Opened));
    assert!(matches!(
        a.admit("ct").await,
        Ok(Admission::Rejected { .. })
    ));
    clock.advance(config.open_for + chrono::Duration::seconds(1));
    let (x, y, z, w) = tokio::join!(a.admit("ct"), b.admit("ct"), a.admit("ct"), b.admit("ct"));
    let probes = [x, y, z, w]
        .into_iter()
        .filter(|r| *r == Ok(Admission::Probe))
        .count();
    assert_eq!(probes, 1, "one probe elected by a conditional write");
    assert_eq!(a.record_success("ct", true).await, Ok(Transition::Closed));
    assert_eq!(b.admit("ct").await, Ok(Admission::Call));
}

#[tokio::test]
async fn ledger_entries_are_compare_and_set_and_listed_per_sale() {
    let Some(moto) = Moto::start() else { return };
    let ledger = table(&moto).await;
    let now = pos_shared::samples::sample_time();
    let sale = SaleId::parse("shopify:1001").expect("id");
    let event = EventId::parse("evt:sale:shopify:1001").expect("id");
    let mut entry = DeliveryEntry::pending(event.clone(), Some(sale.clone()), "commercetools", now);
    entry.version = 1;
    assert_eq!(ledger.put(&entry, None).await, Ok(true));
    assert_eq!(ledger.put(&entry, None).await, Ok(false), "exists");
    let mut delivered = entry.clone();
    delivered.status = DeliveryStatus::Delivered;
    delivered.remote_id = Some("order-1".into());
    delivered.version = 2;
    assert_eq!(ledger.put(&delivered, Some(1)).await, Ok(true));
    assert_eq!(
        ledger.put(&delivered, Some(1)).await,
        Ok(false),
        "stale version"
    );
    let mut other = DeliveryEntry::pending(event.clone(), Some(sale.clone()), "dynamics", now);
    other.version = 1;
    assert_eq!(ledger.put(&other, None).await, Ok(true));
    let unrelated = DeliveryEntry::pending(
        EventId::parse("evt:stocklow:abc").expect("id"),
        None,
        "webhooks",
        now,
    );
    assert_eq!(ledger.put(&unrelated, None).await, Ok(true));
    let got = ledger
        .get(&event, "commercetools")
        .await
        .expect("get")
        .expect("entry");
    assert_eq!(got, delivered);
    let mut listed: Vec<String> = ledger
        .for_sale(&sale)
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.destination)
        .collect();
    listed.sort();
    assert_eq!(listed, ["commercetools", "dynamics"]);
}
