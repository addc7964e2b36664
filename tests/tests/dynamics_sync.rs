//! dynamics-sync end to end on its real adapters: a sale published on the bus (moto), routed by the
//! rule `infra/dynamics.tf` declares to the function's queue, received as Lambda would carry it, and
//! delivered to the D365 emulator with the ledger and the breaker on DynamoDB (moto); an outage
//! changes the record's visibility on the real queue; the last receive gives it up into the real DLQ
//! with its reason, and a redrive delivers it once D365 is back.

use aws_sdk_sqs::types::MessageSystemAttributeName;
use pos_shared::delivery::config::http_client;
use pos_shared::delivery::dynamics::DynamicsConfig;
use pos_shared::delivery::dynamics_config::dynamics_sync;
use pos_shared::delivery::ledger::{DeliveryLedger, DeliveryStatus};
use pos_shared::delivery::sync::DeliverySync;
use pos_shared::metrics::{Metrics, Sink};
use pos_shared::model::EventEnvelope;
use pos_shared::ports::{EventPublisher, SystemClock};
use pos_shared::samples;
use pos_tests::d365::{D365, LEGAL_ENTITY};
use pos_tests::moto::Moto;
use pos_tests::queues::{DeliveryRig, dead_port, delete_succeeded, quick_retries, receive};
use std::sync::Arc;

const HEADERS: &str = "SalesOrderHeadersV2";
const LINES: &str = "SalesOrderLines";

/// The function as `dynamics_sync_from_env` composes it, on moto and the emulator.
fn sync(rig: &DeliveryRig, config: DynamicsConfig, max_receives: u32) -> DeliverySync {
    dynamics_sync(
        config,
        50,
        quick_retries(),
        rig.deliveries.clone(),
        rig.queue_control(),
        Arc::new(pos_shared::store::claim::NoLinesSource),
        max_receives,
        http_client().expect("http"),
        Arc::new(SystemClock),
        Arc::new(Metrics::new("dynamics-sync", Sink::Off)),
    )
}

fn sale(id: &str) -> EventEnvelope {
    let body = samples::standard_sale(id, "store-001", None, 2);
    samples::envelope_of(&samples::standard("m", &body, samples::sample_time(), None))
        .expect("a sale")
}

/// A loopback URL nothing listens on: D365 (and Entra ID) down.
fn dead_url() -> String {
    format!("http://localhost:{}", dead_port())
}

fn down(d365: &D365) -> DynamicsConfig {
    let dead = dead_url();
    DynamicsConfig {
        environment_url: dead.clone(),
        auth_url: dead,
        ..d365.config()
    }
}

/// Headers and lines stored for order `number`.
fn order(d365: &D365, number: &str) -> (usize, usize) {
    let of = |set: &str| {
        d365.entities(set)
            .iter()
            .filter(|e| e["SalesOrderNumber"] == number)
            .count()
    };
    (of(HEADERS), of(LINES))
}

#[tokio::test]
async fn a_sale_routed_by_the_rule_is_one_sales_order_waits_out_an_outage_and_is_given_up_into_the_dlq()
 {
    let Some(moto) = Moto::start() else { return };
    let d365 = D365::start().await;
    let sdk = moto.sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let rig = DeliveryRig::start(&sdk, ddb, "dynamics_sync_queue", "d").await;
    let up = sync(&rig, d365.config(), 30);

    // Published on the bus, routed by the rule, delivered: one header, its two lines.
    let first = sale("dsync-1");
    rig.bus
        .publish(std::slice::from_ref(&first))
        .await
        .expect("publish");
    let batch = receive(&rig.sqs, &rig.queue.url).await;
    assert_eq!(batch.records.len(), 1, "the rule routes the sale");
    let response = up.handle_batch(&batch).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    delete_succeeded(&rig.sqs, &rig.queue.url, &batch, &[]).await;
    assert_eq!(order(&d365, "dev-till:dsync-1"), (1, 2));
    assert_eq!(d365.entities(HEADERS)[0]["dataAreaId"], LEGAL_ENTITY);
    let entry = rig
        .deliveries
        .get(&first.event_id, "dynamics")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(entry.status, DeliveryStatus::Delivered);
    assert_eq!(entry.remote_id.as_deref(), Some("dev-till:dsync-1"));
    // The same record again (an SQS redelivery): acknowledged, no second order, no second line.
    let response = up.handle_batch(&batch).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((d365.created(HEADERS), d365.created(LINES)), (1, 2));

    // D365 is down: the record is reported failed and hidden for the requeue delay (the visibility
    // change happened on the real queue: the next receive does not see it).
    let outage = sync(&rig, down(&d365), 30);
    let second = sale("dsync-2");
    rig.bus
        .publish(std::slice::from_ref(&second))
        .await
        .expect("publish");
    let batch = receive(&rig.sqs, &rig.queue.url).await;
    assert_eq!(batch.records.len(), 1);
    let response = outage.handle_batch(&batch).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert!(
        receive(&rig.sqs, &rig.queue.url).await.records.is_empty(),
        "requeued with a visibility timeout, not visible at once"
    );
    let entry = rig
        .deliveries
        .get(&second.event_id, "dynamics")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(entry.status, DeliveryStatus::Retrying);
    assert!(
        entry
            .last_error
            .as_deref()
            .is_some_and(|e| !e.contains(pos_tests::d365::CLIENT_SECRET))
    );

    // The last receive the queue allows: given up into the DLQ with its reason, and acknowledged.
    rig.sqs
        .change_message_visibility()
        .queue_url(&rig.queue.url)
        .receipt_handle(batch.records[0].receipt_handle.clone().unwrap_or_default())
        .visibility_timeout(0)
        .send()
        .await
        .expect("make it visible for the test");
    let last = sync(&rig, down(&d365), 2);
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
        .expect("dlq")
        .messages
        .unwrap_or_default();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, batch.records[0].body);
    let reason = dead[0]
        .message_attributes
        .as_ref()
        .and_then(|a| a.get("reason"))
        .and_then(|v| v.string_value.clone())
        .unwrap_or_default();
    assert_eq!(reason, "dynamics: gave up after 2 receives");
    let entry = rig
        .deliveries
        .get(&second.event_id, "dynamics")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(entry.status, DeliveryStatus::Dead);
    assert_eq!(order(&d365, "dev-till:dsync-2"), (0, 0), "nothing landed");

    // Redriven from the DLQ once D365 is back: delivered, one order with its lines.
    assert!(up.handle_batch(&batch).await.batch_item_failures.is_empty());
    assert_eq!(order(&d365, "dev-till:dsync-2"), (1, 2));
    let entry = rig
        .deliveries
        .get(&second.event_id, "dynamics")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(entry.status, DeliveryStatus::Delivered);
}
