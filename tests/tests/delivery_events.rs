//! The delivery functions' sample events (`events/{commercetools,dynamics,webhooks}-sync/`,
//! `events/deliveries-manifest.json`) replayed through each function's own composition, on the embedded
//! ledger, against commercetools' own emulator, our D365 emulator and the Standard Webhooks reference
//! receiver: each file reports the
//! `batchItemFailures` the manifest states, and the destination ends with what the samples mean (one
//! order with its return, stock moved once, the count set).

use aws_lambda_events::event::sqs::SqsEvent;
use pos_local::events::ConsumerEntry;
use pos_shared::delivery::commercetools::CommercetoolsConfig;
use pos_shared::delivery::config::{CommercetoolsClient, commercetools_sync, http_client};
use pos_shared::delivery::dynamics_config::dynamics_sync;
use pos_shared::delivery::embedded::EmbeddedDeliveries;
use pos_shared::delivery::retry::RetryPolicy;
use pos_shared::delivery::sync::DeliverySync;
use pos_shared::delivery::sync::MemoryQueueControl;
use pos_shared::metrics::{Metrics, Sink};
use pos_shared::ports::SystemClock;
use pos_tests::ctp::Emulator;
use pos_tests::d365::D365;
use secrecy::SecretString;
use std::sync::Arc;

const PROJECT: &str = "pos-events";

/// Replays every file of `consumer` in the manifest through `sync`, checking the failures it states.
async fn replay(sync: &DeliverySync, consumer: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let manifest: Vec<ConsumerEntry> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("deliveries-manifest.json")).expect("manifest"),
    )
    .expect("json");
    let mine: Vec<&ConsumerEntry> = manifest.iter().filter(|e| e.consumer == consumer).collect();
    assert!(!mine.is_empty(), "no samples for {consumer}");
    for entry in mine {
        assert!(
            entry.file.starts_with(&format!("{consumer}/")),
            "{}",
            entry.file
        );
        let text = std::fs::read_to_string(dir.join(&entry.file)).expect("file");
        let event: SqsEvent = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not a Lambda SQS event: {e}", entry.file));
        let response = sync.handle_batch(&event).await;
        let failures: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(failures, entry.failures, "{} ({})", entry.file, entry.case);
    }
}

#[tokio::test]
async fn every_delivery_event_file_reports_what_the_manifest_states_against_the_emulator() {
    let Some(emulator) = Emulator::start() else {
        return;
    };
    emulator
        .seed_products(PROJECT, &["SKU-001", "SKU-002", "SKU-003"])
        .await;
    let queue = Arc::new(MemoryQueueControl::default());
    let sync = commercetools_sync(
        CommercetoolsClient {
            config: CommercetoolsConfig {
                project_key: PROJECT.into(),
                api_url: emulator.url.clone(),
                auth_url: emulator.url.clone(),
            },
            client_id: "pos-platform".into(),
            client_secret: SecretString::from("emulator-secret"),
            scopes: None,
            rate: 50,
            policy: RetryPolicy::default(),
        },
        Arc::new(EmbeddedDeliveries::in_memory().expect("ledger")),
        queue.clone(),
        Arc::new(pos_shared::store::claim::NoLinesSource),
        30,
        http_client().expect("http"),
        Arc::new(SystemClock),
        Arc::new(Metrics::new("commercetools-sync", Sink::Off)),
    );
    replay(&sync, "commercetools-sync").await;
    assert!(
        queue.calls().is_empty(),
        "nothing requeued or dead-lettered"
    );
    let orders = emulator
        .orders_numbered(PROJECT, "dev-till:till-7:4001")
        .await;
    assert_eq!(orders.len(), 1, "one order");
    assert_eq!(orders[0]["lineItems"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        orders[0]["returnInfo"].as_array().map(Vec::len),
        Some(1),
        "one return"
    );
    let on_hand = |sku: &'static str| {
        let emulator = &emulator;
        async move {
            emulator
                .inventory_entry(PROJECT, "store-001", sku)
                .await
                .and_then(|e| e["quantityOnStock"].as_i64())
        }
    };
    assert_eq!(
        on_hand("SKU-001").await,
        Some(0),
        "sold once, returned once"
    );
    assert_eq!(on_hand("SKU-002").await, Some(-1));
    assert_eq!(on_hand("SKU-010").await, Some(20), "the count");
}

#[tokio::test]
async fn every_dynamics_sync_event_file_reports_what_the_manifest_states_against_the_d365_emulator()
{
    let d365 = D365::start().await;
    let queue = Arc::new(MemoryQueueControl::default());
    let sync = dynamics_sync(
        d365.config(),
        50,
        RetryPolicy::default(),
        Arc::new(EmbeddedDeliveries::in_memory().expect("ledger")),
        queue.clone(),
        Arc::new(pos_shared::store::claim::NoLinesSource),
        30,
        http_client().expect("http"),
        Arc::new(SystemClock),
        Arc::new(Metrics::new("dynamics-sync", Sink::Off)),
    );
    replay(&sync, "dynamics-sync").await;
    assert!(
        queue.calls().is_empty(),
        "nothing requeued or dead-lettered"
    );
    let orders = d365.entities("SalesOrderHeadersV2");
    assert_eq!(orders.len(), 1, "one sales order");
    assert_eq!(orders[0]["SalesOrderNumber"], "dev-till:till-7:4001");
    assert_eq!(d365.created("SalesOrderLines"), 3, "its three lines, once");
    assert_eq!(d365.created("ReturnOrderHeaders"), 1, "one return order");
    assert_eq!(d365.created("ReturnOrderLines"), 1);
    let counted = d365.entities("InventoryCountingJournalLines");
    assert_eq!(counted.len(), 1, "one counting journal line");
    assert_eq!(counted[0]["ItemNumber"], "SKU-010");
    assert_eq!(counted[0]["CountedQuantity"], "20");
}

#[tokio::test]
async fn every_webhooks_sync_event_file_reports_what_the_manifest_states_to_the_reference_receiver()
{
    use pos_shared::delivery::subscriptions::StaticSubscriptions;
    use pos_shared::delivery::webhooks::subscriptions_from_connectors;
    use pos_shared::delivery::webhooks_config::{WebhooksSettings, webhooks_sync};
    let Some(receiver) = pos_tests::hooks::Receiver::start() else {
        return;
    };
    const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    receiver.configure(KEY, &[]).await;
    let connectors = serde_json::json!({"webhooks": {"subscriptions": [
        {"id": "erp", "url": format!("{}/hooks", receiver.url), "secrets": KEY}
    ]}});
    let subscriptions =
        subscriptions_from_connectors(&connectors.to_string()).expect("subscriptions");
    let queue = Arc::new(MemoryQueueControl::default());
    let sync = webhooks_sync(
        Arc::new(StaticSubscriptions(Arc::new(subscriptions))),
        Arc::new(EmbeddedDeliveries::in_memory().expect("ledger")),
        queue.clone(),
        Arc::new(pos_shared::store::claim::NoLinesSource),
        WebhooksSettings {
            max_receives: 8,
            disable_after: chrono::Duration::days(5),
            rate: 50,
        },
        Arc::new(SystemClock),
        Arc::new(Metrics::new("webhooks-sync", Sink::Off)),
    )
    .expect("composed");
    replay(&sync, "webhooks-sync").await;
    assert!(
        queue.calls().is_empty(),
        "nothing requeued or dead-lettered"
    );
    let got = receiver.received().await;
    assert!(got.iter().all(|r| r.verified), "{got:?}");
    let mut ids: Vec<String> = got.iter().filter_map(|r| r.id.clone()).collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            "evt:adjustment:dev-till:count-4010".to_owned(),
            "evt:return:dev-till:till-7:r4002".to_owned(),
            "evt:sale:dev-till:till-7:4001".to_owned(),
        ],
        "sale, return and count once each; the duplicate was not sent again"
    );
}
