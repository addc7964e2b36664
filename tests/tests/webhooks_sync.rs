//! webhooks-sync end to end on its real adapters: subscriptions read from the deliveries table and
//! their secret rings from Secrets Manager (moto), an operator's change picked up after the TTL; a sale
//! published on the bus, routed by the rule `infra/webhooks.tf` declares, POSTed once to each
//! subscription (verified by the Standard Webhooks reference library), a failing subscription requeued
//! by visibility on the real queue while the delivered one is not sent again.

use aws_sdk_dynamodb::types::AttributeValue;
use pos_shared::bus::eventbridge::EventBridgePublisher;
use pos_shared::delivery::dynamodb::DynamoDeliveries;
use pos_shared::delivery::ledger::{DeliveryLedger, DeliveryStatus};
use pos_shared::delivery::subscriptions::{
    CachedSubscriptions, DynamoSubscriptions, SUBSCRIPTIONS_PK, SubscriptionSource,
};
use pos_shared::delivery::sync::SqsQueueControl;
use pos_shared::delivery::webhooks_config::{
    FUNCTION, SUBSCRIPTIONS_TTL, WebhooksSettings, webhooks_sync,
};
use pos_shared::metrics::{Metrics, Sink};
use pos_shared::ports::{EventPublisher, ManualClock, SystemClock};
use pos_shared::samples;
use pos_tests::hooks::Receiver;
use pos_tests::moto::{Moto, create_table_from_infra};
use pos_tests::queues::{create_consumer_queue, delete_succeeded, receive};
use secrecy::ExposeSecret;
use std::sync::Arc;

const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW: &str = "whsec_ZGV2LXN0YW5kYXJkLXdlYmhvb2tzLWtleS0wMQ==";

struct Store {
    ddb: aws_sdk_dynamodb::Client,
    sm: aws_sdk_secretsmanager::Client,
    table: String,
    secret: String,
}

impl Store {
    async fn new(sdk: &aws_config::SdkConfig, tag: &str) -> Store {
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        let table = format!("deliveries-{tag}-{}", std::process::id());
        create_table_from_infra(&ddb, &table, "deliveries").await;
        let sm = aws_sdk_secretsmanager::Client::new(sdk);
        let secret = format!("webhooks-{tag}-{}", std::process::id());
        sm.create_secret()
            .name(&secret)
            .secret_string("{}")
            .send()
            .await
            .expect("CreateSecret");
        Store {
            ddb,
            sm,
            table,
            secret,
        }
    }

    async fn subscribe(&self, id: &str, url: &str, enabled: bool) {
        self.ddb
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(SUBSCRIPTIONS_PK.into()))
            .item("sk", AttributeValue::S(id.into()))
            .item("url", AttributeValue::S(url.into()))
            .item("enabled", AttributeValue::Bool(enabled))
            .send()
            .await
            .expect("PutItem");
    }

    async fn rings(&self, rings: serde_json::Value) {
        self.sm
            .put_secret_value()
            .secret_id(&self.secret)
            .secret_string(rings.to_string())
            .send()
            .await
            .expect("PutSecretValue");
    }

    fn source(&self) -> DynamoSubscriptions {
        DynamoSubscriptions::new(self.ddb.clone(), &self.table, self.sm.clone(), &self.secret)
    }
}

#[tokio::test]
async fn subscriptions_come_from_the_table_and_the_secret_and_a_change_applies_after_the_ttl() {
    let Some(moto) = Moto::start() else { return };
    let sdk = moto.sdk_config().await;
    let store = Store::new(&sdk, "subs").await;
    store
        .subscribe("erp", "https://erp.example.com/hooks", true)
        .await;
    store.rings(serde_json::json!({ "erp": OLD })).await;
    let clock = Arc::new(ManualClock::new(samples::sample_time()));
    let cached = CachedSubscriptions::new(store.source(), clock.clone(), SUBSCRIPTIONS_TTL);
    let subs = cached.load().await.expect("read");
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].url.as_str(), "https://erp.example.com/hooks");
    assert_eq!(subs[0].secrets[0].expose_secret(), OLD);

    // The operator rotates erp's secret and adds oms.
    store
        .rings(serde_json::json!({ "erp": [NEW, OLD], "oms": NEW }))
        .await;
    store
        .subscribe("oms", "https://oms.example.com/hooks", false)
        .await;
    clock.advance(SUBSCRIPTIONS_TTL - chrono::Duration::seconds(1));
    assert_eq!(
        cached.load().await.expect("cached").len(),
        1,
        "within the TTL"
    );
    clock.advance(chrono::Duration::seconds(1));
    let subs = cached.load().await.expect("re-read");
    let ids: Vec<(&str, usize, bool)> = subs
        .iter()
        .map(|s| (s.id.as_str(), s.secrets.len(), s.enabled))
        .collect();
    assert_eq!(ids, [("erp", 2, true), ("oms", 1, false)]);

    // A subscription whose ring is missing is refused; the last good copy keeps serving.
    store
        .subscribe("wms", "https://wms.example.com/hooks", true)
        .await;
    assert!(store.source().load().await.is_err(), "no ring for wms");
    clock.advance(SUBSCRIPTIONS_TTL);
    assert_eq!(cached.load().await.expect("last good copy").len(), 2);
}

fn dead_url() -> String {
    format!("http://127.0.0.1:{}/hooks", pos_tests::queues::dead_port())
}

#[tokio::test]
async fn a_sale_routed_by_the_rule_reaches_each_subscription_once_and_only_the_failing_one_waits() {
    let Some(moto) = Moto::start() else { return };
    let Some(rx) = Receiver::start() else { return };
    rx.configure(OLD, &[]).await;
    let sdk = moto.sdk_config().await;
    let store = Store::new(&sdk, "e2e").await;
    store
        .subscribe("erp", &format!("{}/hooks/erp", rx.url), true)
        .await;
    store.subscribe("down", &dead_url(), true).await;
    store
        .rings(serde_json::json!({ "erp": OLD, "down": OLD }))
        .await;
    let bus = format!("pos-w-{}", std::process::id());
    aws_sdk_eventbridge::Client::new(&sdk)
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .expect("bus");
    let queue = create_consumer_queue(&sdk, &bus, "webhooks_sync_queue").await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let deliveries = Arc::new(DynamoDeliveries::new(store.ddb.clone(), &store.table));
    let sync = webhooks_sync(
        Arc::new(store.source()),
        deliveries.clone(),
        Arc::new(SqsQueueControl::new(
            sqs.clone(),
            queue.url.clone(),
            queue.dlq_url.clone(),
        )),
        Arc::new(pos_shared::store::claim::NoLinesSource),
        WebhooksSettings {
            max_receives: 100,
            disable_after: chrono::Duration::days(5),
            rate: 50,
        },
        Arc::new(SystemClock),
        Arc::new(Metrics::new(FUNCTION, Sink::Off)),
    )
    .expect("composed");

    let body = samples::standard_sale("hook-1", "store-001", None, 2);
    let sale = samples::envelope_of(&samples::standard("w", &body, samples::sample_time(), None))
        .expect("a sale");
    EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&sdk), &bus)
        .publish(std::slice::from_ref(&sale))
        .await
        .expect("publish");
    let batch = receive(&sqs, &queue.url).await;
    assert_eq!(batch.records.len(), 1, "routed by the rule");
    let response = sync.handle_batch(&batch).await;
    assert_eq!(response.batch_item_failures.len(), 1, "down must retry");
    assert!(
        receive(&sqs, &queue.url).await.records.is_empty(),
        "requeued with a visibility timeout on the real queue, not visible at once"
    );
    let got = rx.received().await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].verified && got[0].id.as_deref() == Some(sale.event_id.as_str()));
    let status = |d: &'static str| {
        let deliveries = deliveries.clone();
        let id = sale.event_id.clone();
        async move {
            deliveries
                .get(&id, d)
                .await
                .expect("ledger")
                .map(|e| e.status)
        }
    };
    assert_eq!(
        status("webhooks:erp").await,
        Some(DeliveryStatus::Delivered)
    );
    assert_eq!(
        status("webhooks:down").await,
        Some(DeliveryStatus::Retrying)
    );

    // The record comes back (made visible for the test): erp is not sent it again, down still fails.
    sqs.change_message_visibility()
        .queue_url(&queue.url)
        .receipt_handle(batch.records[0].receipt_handle.clone().unwrap_or_default())
        .visibility_timeout(0)
        .send()
        .await
        .expect("visible again");
    let again = receive(&sqs, &queue.url).await;
    assert_eq!(again.records.len(), 1);
    let response = sync.handle_batch(&again).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(rx.received().await.len(), 1, "erp received it once");

    // The operator fixes down's URL (this source is read on every record, no TTL): the next receive
    // delivers it and the record is acknowledged.
    store
        .subscribe("down", &format!("{}/hooks/down", rx.url), true)
        .await;
    sqs.change_message_visibility()
        .queue_url(&queue.url)
        .receipt_handle(again.records[0].receipt_handle.clone().unwrap_or_default())
        .visibility_timeout(0)
        .send()
        .await
        .expect("visible again");
    let last = receive(&sqs, &queue.url).await;
    let response = sync.handle_batch(&last).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    delete_succeeded(&sqs, &queue.url, &last, &[]).await;
    let got = rx.received().await;
    assert_eq!(got.len(), 2, "one POST per subscription: {got:?}");
    assert!(got.iter().all(|r| r.verified));
    assert_eq!(
        status("webhooks:down").await,
        Some(DeliveryStatus::Delivered)
    );
}

/// `pos-local webhooks enable <id> --aws`: on the deployed table, the endpoint is enabled and only its
/// records dead as "endpoint disabled" are put back on the queue, re-read from the capture table's
/// outbox; one the outbox does not hold is reported, not invented.
#[tokio::test]
async fn enabling_on_aws_replays_the_disabled_records_from_the_outbox_onto_the_queue() {
    use pos_shared::delivery::webhooks::{ENDPOINT_DISABLED, EndpointHealth, Verdict};
    use pos_shared::delivery::webhooks_enable::{SqsRequeue, enable_and_replay};
    use pos_shared::store::dynamodb::DynamoStore;
    let Some(moto) = Moto::start() else { return };
    let sdk = moto.sdk_config().await;
    let store = Store::new(&sdk, "enable").await;
    let capture_table = format!("capture-enable-{}", std::process::id());
    create_table_from_infra(&store.ddb, &capture_table, "capture").await;
    let capture_store = DynamoStore::new(store.ddb.clone(), &capture_table);
    let clock: Arc<dyn pos_shared::ports::Clock> = Arc::new(SystemClock);
    let capture = pos_shared::capture::CaptureService::new(
        Arc::new(capture_store.clone()),
        Arc::new(pos_shared::secrets::StaticSecrets(Arc::new(
            pos_shared::secrets::dev_secrets(),
        ))),
        clock.clone(),
        pos_shared::capture::CaptureSettings::default(),
    );
    let sale = samples::standard(
        "msg_enable_1",
        &samples::standard_sale("enable-1", "store-001", None, 1),
        chrono::Utc::now(),
        None,
    );
    let captured = capture
        .handle(&sale.to_request("c1"))
        .await
        .expect("captured");
    let sale_id = pos_shared::ids::SaleId::parse("dev-till:enable-1").expect("sale id");

    let deliveries = Arc::new(DynamoDeliveries::new(store.ddb.clone(), &store.table));
    let pos_shared::capture::Captured::Accepted { event_id } = captured else {
        panic!("not accepted: {captured:?}");
    };
    // Dead for erp because it was disabled; dead for oms for another reason; an event we never held.
    let dead = |event: &pos_shared::ids::EventId, destination: &str, reason: &str| {
        let mut e = pos_shared::delivery::ledger::DeliveryEntry::pending(
            event.clone(),
            Some(sale_id.clone()),
            destination,
            chrono::Utc::now(),
        );
        e.status = DeliveryStatus::Dead;
        e.last_error = Some(reason.to_owned());
        e.version = 1;
        e
    };
    let unknown = pos_shared::ids::EventId::parse("evt:sale:never:1").expect("id");
    for e in [
        dead(&event_id, "webhooks:erp", ENDPOINT_DISABLED),
        dead(&unknown, "webhooks:erp", ENDPOINT_DISABLED),
        dead(
            &event_id,
            "webhooks:oms",
            "retry schedule exhausted after 8 attempts",
        ),
    ] {
        assert_eq!(deliveries.put(&e, None).await, Ok(true));
    }
    let health = EndpointHealth::new(deliveries.clone(), EndpointHealth::DEFAULT_DISABLE_AFTER);
    let t0 = chrono::Utc::now() - chrono::Duration::days(6);
    assert_eq!(health.record_failure("erp", t0).await, Ok(Verdict::Failing));
    assert_eq!(
        health.record_failure("erp", chrono::Utc::now()).await,
        Ok(Verdict::DisabledNow)
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("webhooks-enable-{}", std::process::id()))
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");

    let report = enable_and_replay(
        "erp",
        &health,
        deliveries.as_ref(),
        &capture_store,
        &SqsRequeue::new(sqs.clone(), &queue_url),
    )
    .await
    .expect("enabled");
    assert!(!health.is_disabled("erp").await.expect("read"));
    assert_eq!(report.replayed, vec![event_id.clone()]);
    assert_eq!(report.not_replayed, vec![unknown]);
    let batch = receive(&sqs, &queue_url).await;
    assert_eq!(batch.records.len(), 1, "only erp's disabled record");
    let message: pos_shared::bus::BusMessage =
        serde_json::from_str(batch.records[0].body.as_deref().unwrap_or_default())
            .expect("a bus message");
    assert_eq!(message.detail.event_id, event_id);
}
