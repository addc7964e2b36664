//! The delivery ledger and the circuit breaker on DynamoDB (moto), with the table `infra/` declares:
//! the same contract scenarios the in-memory and embedded adapters pass
//! (`shared/src/delivery/conformance.rs`): compare-and-set holds across instances, one probe is elected
//! among concurrent callers, and a sale's deliveries are listed through the index.

use pos_shared::delivery::conformance;
use pos_shared::delivery::dynamodb::DynamoDeliveries;
use pos_tests::moto::{Moto, create_table_from_infra};
use std::sync::Arc;

async fn table(moto: &Moto, name: &str) -> DynamoDeliveries {
    let sdk = moto.sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    create_table_from_infra(&ddb, name, "deliveries").await;
    DynamoDeliveries::new(ddb, name)
}

#[tokio::test]
async fn the_breaker_keeps_the_contract_and_is_shared_across_instances() {
    let Some(moto) = Moto::start() else { return };
    let store = Arc::new(table(&moto, "pos-test-breakers").await);
    conformance::breaker_store_compare_and_set(store.as_ref())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    conformance::breaker_opens_within_the_window(store.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    conformance::breaker_elects_one_probe(store.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    conformance::breaker_reopens_and_replaces_a_lost_probe(store.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Two instances of the delivery function: two adapters over one table (all coordination is the
    // table's conditional writes).
    let other = Arc::new(store.as_ref().clone());
    conformance::breaker_is_shared_between_instances(store, other)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn the_ledger_keeps_the_contract() {
    let Some(moto) = Moto::start() else { return };
    let ledger = table(&moto, "pos-test-deliveries").await;
    conformance::ledger_compare_and_set_and_listing(&ledger)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
