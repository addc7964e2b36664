//! commercetools-sync end to end on its real adapters: the sale published on the bus (moto), routed by
//! the rule `infra/deliveries.tf` declares to the function's queue, received as Lambda would carry it,
//! delivered to commercetools' own emulator with the ledger and the breaker on DynamoDB (moto); an
//! outage changes the record's visibility on the real queue; a record given up lands in the real DLQ.

use aws_sdk_sqs::types::MessageSystemAttributeName;
use pos_shared::delivery::commercetools::CommercetoolsConfig;
use pos_shared::delivery::config::{CommercetoolsClient, commercetools_sync, http_client};
use pos_shared::delivery::ledger::{DeliveryLedger, DeliveryStatus};
use pos_shared::delivery::sync::DeliverySync;
use pos_shared::metrics::{Metrics, Sink};
use pos_shared::model::EventEnvelope;
use pos_shared::ports::{EventPublisher, SystemClock};
use pos_shared::samples;
use pos_tests::ctp::Emulator;
use pos_tests::moto::{CountRequests, Moto};
use pos_tests::queues::{DeliveryRig, dead_port, delete_succeeded, quick_retries, receive};
use secrecy::SecretString;
use std::sync::Arc;

const PROJECT: &str = "pos-sync";

/// DynamoDB requests (ledger, markers, breakers) to deliver a 2-line sale (orders + inventory) and a
/// count (inventory only), fresh: three deliveries × (a ledger read, the pending entry, the write-ahead
/// attempt, the outcome, the breaker's admission and its success) + three inventory lines × (a marker
/// read, its fence, its outcome) = 3 × 6 + 3 × 3.
const DELIVERY_CALLS: usize = 27;

/// The function as `commercetools_sync_from_env` composes it, on moto and the emulator.
fn sync(rig: &DeliveryRig, api_url: &str, auth_url: &str, max_receives: u32) -> DeliverySync {
    commercetools_sync(
        CommercetoolsClient {
            config: CommercetoolsConfig {
                project_key: PROJECT.into(),
                api_url: api_url.into(),
                auth_url: auth_url.into(),
            },
            client_id: "pos-platform".into(),
            client_secret: SecretString::from("emulator-secret"),
            scopes: Some(format!("manage_orders:{PROJECT}")),
            rate: 50,
            policy: quick_retries(),
        },
        rig.deliveries.clone(),
        rig.queue_control(),
        Arc::new(pos_shared::store::claim::NoLinesSource),
        max_receives,
        http_client().expect("http"),
        Arc::new(SystemClock),
        Arc::new(Metrics::new("commercetools-sync", Sink::Off)),
    )
}

fn sale(id: &str) -> EventEnvelope {
    let body = samples::standard_sale(id, "store-001", None, 2);
    samples::envelope_of(&samples::standard("m", &body, samples::sample_time(), None))
        .expect("a sale")
}

/// A loopback URL nothing listens on: the destination is down.
fn dead_url() -> String {
    format!("http://localhost:{}", dead_port())
}

#[tokio::test]
async fn a_sale_routed_by_the_rule_is_delivered_once_waits_out_an_outage_and_is_given_up_into_the_dlq()
 {
    let Some(moto) = Moto::start() else { return };
    let Some(emulator) = Emulator::start() else {
        return;
    };
    let sdk = moto.sdk_config().await;
    let counter = CountRequests::default();
    let ddb = counter.client(&sdk);
    let rig = DeliveryRig::start(&sdk, ddb, "commercetools_sync_queue", "s").await;
    emulator
        .seed_products(PROJECT, &["SKU-001", "SKU-002"])
        .await;
    let up = sync(&rig, &emulator.url, &emulator.url, 30);

    // Published on the bus, routed by the rule, delivered, acknowledged.
    let first = sale("sync-1");
    rig.bus
        .publish(std::slice::from_ref(&first))
        .await
        .expect("publish");
    // A stock count is routed to the same queue (inventory only).
    let count = serde_json::json!({"type": "stock.adjusted", "timestamp": "2026-01-15T10:00:00Z",
        "data": {"adjustment_id": "sync-c1", "store_id": "store-001", "sku": "SKU-009",
                 "occurred_at": "2026-01-15T09:00:00Z", "on_hand": 20}});
    let count = samples::envelope_of(&samples::standard(
        "c",
        &count,
        samples::sample_time(),
        None,
    ))
    .expect("a count");
    rig.bus
        .publish(std::slice::from_ref(&count))
        .await
        .expect("publish");
    let batch = receive(&rig.sqs, &rig.queue.url).await;
    assert_eq!(batch.records.len(), 2);
    counter.take();
    let response = up.handle_batch(&batch).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let calls = counter.take();
    println!("DynamoDB requests to deliver a 2-line sale and a count: {calls}");
    assert_eq!(
        calls, DELIVERY_CALLS,
        "counted, so it cannot drift unnoticed"
    );
    delete_succeeded(&rig.sqs, &rig.queue.url, &batch, &[]).await;
    assert_eq!(
        emulator
            .orders_numbered(PROJECT, "dev-till:sync-1")
            .await
            .len(),
        1
    );
    let entry = rig
        .deliveries
        .get(&first.event_id, "commercetools")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(entry.status, DeliveryStatus::Delivered);
    assert!(entry.remote_id.is_some(), "the order's id is the proof");
    for event in [&first, &count] {
        let stock = rig
            .deliveries
            .get(&event.event_id, "commercetools-inventory")
            .await
            .expect("ledger")
            .expect("entry");
        assert_eq!(
            stock.status,
            DeliveryStatus::Delivered,
            "{}",
            event.event_id
        );
    }
    // The same record again (an SQS redelivery): acknowledged, no second order.
    let response = up.handle_batch(&batch).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        emulator
            .orders_numbered(PROJECT, "dev-till:sync-1")
            .await
            .len(),
        1
    );

    // Its return, routed by the same rule, is added to the order.
    let ret = samples::envelope_of(&samples::standard(
        "r",
        &samples::standard_return("sync-r1", "sync-1", "store-001"),
        samples::sample_time(),
        None,
    ))
    .expect("a return");
    rig.bus.publish(&[ret]).await.expect("publish");
    let batch = receive(&rig.sqs, &rig.queue.url).await;
    assert_eq!(batch.records.len(), 1);
    assert!(up.handle_batch(&batch).await.batch_item_failures.is_empty());
    delete_succeeded(&rig.sqs, &rig.queue.url, &batch, &[]).await;
    let orders = emulator.orders_numbered(PROJECT, "dev-till:sync-1").await;
    assert_eq!(
        orders[0]["returnInfo"][0]["returnTrackingId"],
        "dev-till:sync-r1"
    );

    // commercetools is down: the record is reported failed and hidden for the requeue delay (the
    // visibility change happened on the real queue: the next receive does not see it).
    let down = sync(&rig, &dead_url(), &emulator.url, 30);
    let second = sale("sync-2");
    rig.bus
        .publish(std::slice::from_ref(&second))
        .await
        .expect("publish");
    let batch = receive(&rig.sqs, &rig.queue.url).await;
    assert_eq!(batch.records.len(), 1);
    let response = down.handle_batch(&batch).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert!(
        receive(&rig.sqs, &rig.queue.url).await.records.is_empty(),
        "requeued with a visibility timeout, not visible at once"
    );
    let entry = rig
        .deliveries
        .get(&second.event_id, "commercetools")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(entry.status, DeliveryStatus::Retrying);
    assert!(
        entry
            .last_error
            .as_deref()
            .is_some_and(|e| !e.contains("emulator-secret"))
    );

    // The last receive the queue allows: given up into the DLQ, with the reason, and acknowledged.
    rig.sqs
        .change_message_visibility()
        .queue_url(&rig.queue.url)
        .receipt_handle(batch.records[0].receipt_handle.clone().unwrap_or_default())
        .visibility_timeout(0)
        .send()
        .await
        .expect("make it visible for the test");
    let last = sync(&rig, &dead_url(), &emulator.url, 2);
    let batch = receive(&rig.sqs, &rig.queue.url).await;
    assert_eq!(
        batch.records[0]
            .attributes
            .get("ApproximateReceiveCount")
            .map(String::as_str),
        Some("2")
    );
    let response = last.handle_batch(&batch).await;
    assert!(response.batch_item_failures.is_empty(), "in the DLQ now");
    delete_succeeded(&rig.sqs, &rig.queue.url, &batch, &[]).await;
    let dead = rig
        .sqs
        .receive_message()
        .queue_url(&rig.queue.dlq_url)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .expect("dlq");
    let dead = dead.messages.unwrap_or_default();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, batch.records[0].body);
    let reason = dead[0]
        .message_attributes
        .as_ref()
        .and_then(|a| a.get("reason"))
        .and_then(|v| v.string_value.clone())
        .unwrap_or_default();
    assert_eq!(
        reason,
        "commercetools: gave up after 2 receives; commercetools-inventory: gave up after 2 receives"
    );
    let entry = rig
        .deliveries
        .get(&second.event_id, "commercetools")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(entry.status, DeliveryStatus::Dead);

    // Redriven from the DLQ once commercetools is back: delivered, one order.
    assert!(up.handle_batch(&batch).await.batch_item_failures.is_empty());
    assert_eq!(
        emulator
            .orders_numbered(PROJECT, "dev-till:sync-2")
            .await
            .len(),
        1
    );
}
