//! The AWS adapters with the real SDK against moto_server: tables, bus and rules created from the
//! definitions in `infra/`, the `events/` samples replayed through DynamoDB, EventBridge and Secrets
//! Manager, crash recovery through the outbox, and secret rotation mid-stream.

use aws_sdk_dynamodb::types::AttributeValue;
use pos_local::events::ManifestEntry;
use pos_shared::bus::EVENT_SOURCE;
use pos_shared::bus::eventbridge::EventBridgePublisher;
use pos_shared::capture::{CaptureService, CaptureSettings};
use pos_shared::money::Currency;
use pos_shared::ports::{Clock, ManualClock};
use pos_shared::samples;
use pos_shared::secrets::aws::SecretsManagerSecrets;
use pos_shared::secrets::{CachedSecrets, StaticSecrets, dev_secrets, dev_secrets_json};
use pos_shared::store::dynamodb::DynamoStore;
use pos_shared::vendors::MappingConfig;
use pos_tests::infra;
use pos_tests::moto::{Moto, create_table_from_infra};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::SeqCst)
    )
}

/// The AWS side of one test: resources with unique names, created from `infra/`.
struct Aws {
    ddb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    sdk: aws_config::SdkConfig,
    table: String,
    bus: String,
    queue_url: String,
    secret_id: String,
    stream: pos_tests::moto::OutboxStream,
}

async fn setup(moto: &Moto) -> Aws {
    let sdk = moto.sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let eb = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let table = unique("capture");
    create_table_from_infra(&ddb, &table, "capture").await;
    assert!(
        infra::resource("aws_cloudwatch_event_bus", "pos").is_some(),
        "infra/ declares the bus"
    );
    let bus = unique("pos");
    eb.create_event_bus()
        .name(&bus)
        .send()
        .await
        .expect("CreateEventBus");
    // A catch-all rule on the bus into a queue, to observe what capture publishes.
    let queue = unique("observer");
    let queue_url = sqs
        .create_queue()
        .queue_name(&queue)
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("url");
    let queue_arn = format!("arn:aws:sqs:eu-west-1:123456789012:{queue}");
    let rule = unique("observe");
    eb.put_rule()
        .name(&rule)
        .event_bus_name(&bus)
        .event_pattern(serde_json::json!({"source": [EVENT_SOURCE]}).to_string())
        .send()
        .await
        .expect("PutRule");
    eb.put_targets()
        .rule(&rule)
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(queue_arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("PutTargets");
    let secret_id = unique("vendor-webhooks");
    sm.create_secret()
        .name(&secret_id)
        .secret_string(dev_secrets_json())
        .send()
        .await
        .expect("CreateSecret");
    Aws {
        ddb,
        sqs,
        sdk,
        bus,
        queue_url,
        secret_id,
        stream: pos_tests::moto::OutboxStream::new(&moto.endpoint, &table),
        table,
    }
}

impl Aws {
    fn service(&self, clock: Arc<dyn Clock>, min_refresh: chrono::Duration) -> CaptureService {
        let secrets = CachedSecrets::new(
            SecretsManagerSecrets::new(
                aws_sdk_secretsmanager::Client::new(&self.sdk),
                &self.secret_id,
            ),
            clock.clone(),
            chrono::Duration::seconds(300),
            min_refresh,
        );
        CaptureService::new(
            Arc::new(DynamoStore::new(self.ddb.clone(), &self.table)),
            Arc::new(secrets),
            clock,
            CaptureSettings {
                mapping: MappingConfig {
                    lightspeed_currency: Some(Currency::parse("NZD").expect("nzd")),
                    shopify_accept_test_orders: false,
                    ..MappingConfig::default()
                },
                ..CaptureSettings::default()
            },
        )
    }

    /// Detail types of every event delivered to the observer queue so far.
    async fn observed(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        loop {
            let resp = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("ReceiveMessage");
            let msgs = resp.messages.unwrap_or_default();
            if msgs.is_empty() {
                return out;
            }
            for m in msgs {
                out.push(
                    serde_json::from_str(m.body().unwrap_or("null")).expect("EventBridge envelope"),
                );
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("DeleteMessage");
            }
        }
    }

    /// What outbox-publisher does with the stream's new records: publishes them to `bus` (and marks
    /// them), answering the batch item failures Lambda would retry.
    async fn publish_stream(&self, bus: &str) -> aws_lambda_events::streams::DynamoDbEventResponse {
        let publisher =
            pos_tests::moto::outbox_publisher(&self.ddb, &self.table, &self.sdk, bus, None);
        self.stream.publish(&publisher).await
    }

    async fn items(&self) -> Vec<HashMap<String, AttributeValue>> {
        self.ddb
            .scan()
            .table_name(&self.table)
            .send()
            .await
            .expect("Scan")
            .items
            .unwrap_or_default()
    }
}

fn pk_prefix_count(items: &[HashMap<String, AttributeValue>], prefix: &str) -> usize {
    items
        .iter()
        .filter(|i| {
            i.get("pk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|pk| pk.starts_with(prefix))
        })
        .count()
}

#[tokio::test]
async fn events_samples_replayed_through_dynamodb_eventbridge_and_secrets_manager() {
    let Some(moto) = Moto::start() else { return };
    let aws = setup(&moto).await;
    let service = aws.service(
        Arc::new(ManualClock::new(samples::sample_time())),
        chrono::Duration::seconds(30),
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let manifest: Vec<ManifestEntry> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    for entry in &manifest {
        let text = std::fs::read_to_string(dir.join(&entry.file)).expect("file");
        let req = pos_shared::http::request_from_event_json(&text).expect("event");
        let resp = pos_shared::http::handle(&service, req).await;
        assert_eq!(
            resp.status().as_u16(),
            entry.status,
            "{} ({}) through the AWS adapters",
            entry.file,
            entry.case
        );
    }
    // One event per captured fact: a Lightspeed exchange is one delivery with a sale and a return,
    // written in one transaction.
    let accepted = manifest.iter().filter(|e| e.status == 202).count()
        + manifest
            .iter()
            .filter(|e| e.file == "lightspeed/sale-exchange.json")
            .count();
    assert!(
        aws.items()
            .await
            .iter()
            .any(|i| i.contains_key("outbox_pending")),
        "capture leaves publication to the stream"
    );
    let stream = aws.publish_stream(&aws.bus).await;
    assert!(stream.batch_item_failures.is_empty(), "{stream:?}");
    let observed = aws.observed().await;
    assert_eq!(
        observed.len(),
        accepted,
        "one event on the bus per captured fact"
    );
    for e in &observed {
        assert_eq!(e["source"], EVENT_SOURCE);
        assert!(
            e["detail"]["event_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("evt:")),
            "{e}"
        );
        assert_eq!(e["detail"]["type"], e["detail-type"]);
    }
    let items = aws.items().await;
    assert_eq!(pk_prefix_count(&items, "RECORD#"), accepted);
    assert_eq!(pk_prefix_count(&items, "OUTBOX#"), accepted);
    assert_eq!(
        pk_prefix_count(&items, "QUARANTINE#"),
        manifest.iter().filter(|e| e.quarantined).count()
    );
    let pending = items
        .iter()
        .filter(|i| i.contains_key("outbox_pending"))
        .count();
    assert_eq!(pending, 0, "every published entry left the pending index");
    let record = items
        .iter()
        .find(|i| {
            i.get("pk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|pk| pk == "RECORD#sale#shopify:450789469")
        })
        .expect("the Shopify sale is stored");
    assert_eq!(
        record
            .get("gsi1pk")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str),
        Some("STORE#shopify:655441491")
    );
}

/// The capture's only request is its transaction: a bus outage never reaches the vendor. The stream
/// path reports the records it could not publish (Lambda retries them), the retry publishes them with
/// the capture's correlation id, and redeliveries publish nothing more.
#[tokio::test]
async fn a_bus_outage_is_retried_on_the_stream_and_never_fails_a_capture() {
    let Some(moto) = Moto::start() else { return };
    let aws = setup(&moto).await;
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(samples::sample_time()));
    let service = aws.service(clock, chrono::Duration::seconds(30));
    let sale = samples::standard(
        "msg_crash_1",
        &samples::standard_sale("till-9:1", "store-009", None, 2),
        samples::sample_time(),
        None,
    );
    let first = service.handle(&sale.to_request("c1")).await;
    assert_eq!(first.expect("stored").status().as_u16(), 202);
    let event = aws.stream.next_event().await;
    aws.stream.rewind().await; // read again below
    let outbox_seq = event
        .records
        .iter()
        .find(|r| {
            pos_shared::store::dynamodb::outbox_entry_from_image(&r.change.new_image)
                .is_ok_and(|e| e.is_some())
        })
        .and_then(|r| r.change.sequence_number.clone())
        .expect("the outbox entry's INSERT is on the stream");
    let down = aws.publish_stream("no-such-bus").await;
    let failed: Vec<String> = down
        .batch_item_failures
        .iter()
        .filter_map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, vec![outbox_seq], "the outbox record is retried");
    assert_eq!(
        aws.items()
            .await
            .iter()
            .filter(|i| i.contains_key("outbox_pending"))
            .count(),
        1,
        "still pending (for the sweep too)"
    );
    assert!(aws.observed().await.is_empty());

    aws.stream.rewind().await; // Lambda retries from the failed record
    assert!(
        aws.publish_stream(&aws.bus)
            .await
            .batch_item_failures
            .is_empty()
    );
    let observed = aws.observed().await;
    assert_eq!(observed.len(), 1, "published by the retry");
    assert_eq!(
        observed[0]["detail"]["correlation_id"], "c1",
        "the original correlation id travels with the event"
    );
    assert_eq!(
        aws.items()
            .await
            .iter()
            .filter(|i| i.contains_key("outbox_pending"))
            .count(),
        0
    );
    let retry = service.handle(&sale.to_request("c2")).await.expect("again");
    assert_eq!(retry.status().as_u16(), 200);
    assert!(
        aws.publish_stream(&aws.bus)
            .await
            .batch_item_failures
            .is_empty(),
        "a redelivery writes nothing new to the stream"
    );
    assert!(aws.observed().await.is_empty(), "nothing more to publish");
}

#[tokio::test]
async fn a_secret_rotated_in_secrets_manager_is_picked_up_mid_stream() {
    let Some(moto) = Moto::start() else { return };
    let aws = setup(&moto).await;
    let clock = Arc::new(ManualClock::new(samples::sample_time()));
    let service = aws.service(clock.clone(), chrono::Duration::zero());
    let t0 = samples::sample_time();
    let old = samples::standard(
        "msg_rot_1",
        &samples::standard_sale("rot-1", "store-001", None, 1),
        t0,
        None,
    );
    assert_eq!(
        service
            .handle(&old.to_request("r1"))
            .await
            .expect("old key")
            .status()
            .as_u16(),
        202
    );
    // The operator rotates: new key first, old key kept until every sender has switched.
    let rotated = dev_secrets_json().replace(
        r#""secrets": ["#,
        r#""secrets": ["whsec_cm90YXRlZC1rZXktMDI=", "#,
    );
    aws_sdk_secretsmanager::Client::new(&aws.sdk)
        .put_secret_value()
        .secret_id(&aws.secret_id)
        .secret_string(rotated)
        .send()
        .await
        .expect("PutSecretValue");
    let new = samples::standard(
        "msg_rot_2",
        &samples::standard_sale("rot-2", "store-001", None, 1),
        t0,
        Some("whsec_cm90YXRlZC1rZXktMDI="),
    );
    assert_eq!(
        service
            .handle(&new.to_request("r2"))
            .await
            .expect("new key after refresh")
            .status()
            .as_u16(),
        202
    );
    let forged = samples::standard(
        "msg_rot_3",
        &samples::standard_sale("rot-3", "store-001", None, 1),
        t0,
        Some("whsec_Zm9yZ2Vk"),
    );
    assert_eq!(
        service
            .handle(&forged.to_request("r3"))
            .await
            .expect_err("forged")
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        service
            .handle(&old.to_request("r4"))
            .await
            .expect("old key still valid")
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn storage_and_secret_failures_are_503_not_4xx() {
    let Some(moto) = Moto::start() else { return };
    let aws = setup(&moto).await;
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(samples::sample_time()));
    let sale = samples::standard(
        "msg_infra_1",
        &samples::standard_sale("inf-1", "store-001", None, 1),
        samples::sample_time(),
        None,
    );
    // A table that does not exist.
    let no_table = CaptureService::new(
        Arc::new(DynamoStore::new(aws.ddb.clone(), "no-such-table")),
        Arc::new(SecretsManagerSecrets::new(
            aws_sdk_secretsmanager::Client::new(&aws.sdk),
            &aws.secret_id,
        )),
        clock.clone(),
        CaptureSettings::default(),
    );
    let err = no_table
        .handle(&sale.to_request("x"))
        .await
        .expect_err("no table");
    assert_eq!(err.status().as_u16(), 503);
    assert!(
        !err.public_detail().contains("no-such-table"),
        "internals stay internal"
    );
    // A secret that does not exist.
    let no_secret = CaptureService::new(
        Arc::new(DynamoStore::new(aws.ddb.clone(), &aws.table)),
        Arc::new(SecretsManagerSecrets::new(
            aws_sdk_secretsmanager::Client::new(&aws.sdk),
            "no-such-secret",
        )),
        clock,
        CaptureSettings::default(),
    );
    assert_eq!(
        no_secret
            .handle(&sale.to_request("y"))
            .await
            .expect_err("no secret")
            .status()
            .as_u16(),
        503
    );
}

#[tokio::test]
async fn idempotency_records_in_dynamodb_follow_the_powertools_contract() {
    use pos_shared::idempotency::dynamodb::DynamoIdempotencyStore;
    use pos_shared::idempotency::{Idempotency, IdempotencyError};
    let Some(moto) = Moto::start() else { return };
    let aws = setup(&moto).await;
    let clock = Arc::new(ManualClock::new(samples::sample_time()));
    let store = Arc::new(DynamoIdempotencyStore::new(
        aws.ddb.clone(),
        &aws.table,
        "stock-sync",
    ));
    let idem = Idempotency::new(store, clock.clone(), chrono::Duration::hours(1));
    let calls = AtomicUsize::new(0);
    let run = |value: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<u32, String>(value) }
    };
    assert_eq!(
        idem.run("evt-1", &"payload", None, || run(1))
            .await
            .expect("first"),
        1
    );
    assert_eq!(
        idem.run("evt-1", &"payload", None, || run(2))
            .await
            .expect("stored result"),
        1
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no second effect");
    assert!(matches!(
        idem.run::<u32, String, _, _>("evt-1", &"tampered", None, || async { Ok(3) })
            .await,
        Err(IdempotencyError::PayloadMismatch)
    ));
    let failed = idem
        .run::<u32, String, _, _>("evt-2", &"p", None, || async { Err("boom".into()) })
        .await;
    assert!(matches!(failed, Err(IdempotencyError::Handler(_))));
    assert_eq!(
        idem.run("evt-2", &"p", None, || run(4))
            .await
            .expect("retry after failure"),
        4
    );
    // A run that "times out" leaves INPROGRESS with a 5 s in-progress expiry; a concurrent duplicate is
    // refused until it passes, then the key is free again.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let idem = Arc::new(idem);
    let stuck = {
        let idem = idem.clone();
        tokio::spawn(async move {
            idem.run::<u32, String, _, _>(
                "evt-3",
                &"p",
                Some(std::time::Duration::from_secs(5)),
                || async move {
                    let _ = rx.await;
                    Ok(5)
                },
            )
            .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(matches!(
        idem.run::<u32, String, _, _>("evt-3", &"p", None, || async { Ok(6) })
            .await,
        Err(IdempotencyError::AlreadyInProgress)
    ));
    clock.advance(chrono::Duration::seconds(6));
    assert_eq!(
        idem.run("evt-3", &"p", None, || run(7))
            .await
            .expect("dead run's key is free"),
        7
    );
    let _ = tx.send(());
    let _ = stuck.await;
    clock.advance(chrono::Duration::hours(2));
    assert_eq!(
        idem.run("evt-1", &"payload", None, || run(8))
            .await
            .expect("expired record runs again"),
        8
    );
}

#[tokio::test]
async fn the_outbox_relay_publishes_what_the_stream_path_missed() {
    use pos_shared::metrics::{Metrics, Sink};
    use pos_shared::outbox::OutboxRelay;
    let Some(moto) = Moto::start() else { return };
    let aws = setup(&moto).await;
    let clock = Arc::new(ManualClock::new(samples::sample_time()));
    let broken = aws.service(clock.clone(), chrono::Duration::seconds(30));
    let sale = samples::standard(
        "msg_relay_1",
        &samples::standard_sale("relay-9", "store-009", None, 1),
        samples::sample_time(),
        None,
    );
    assert_eq!(
        broken
            .handle(&sale.to_request("r1"))
            .await
            .expect("captured")
            .status()
            .as_u16(),
        202
    );
    let store = Arc::new(DynamoStore::new(aws.ddb.clone(), &aws.table));
    let relay = OutboxRelay::new(
        store.clone(),
        store,
        Arc::new(EventBridgePublisher::new(
            aws_sdk_eventbridge::Client::new(&aws.sdk),
            &aws.bus,
        )),
        clock.clone(),
        chrono::Duration::seconds(60),
        100,
        Arc::new(Metrics::new("outbox-relay", Sink::Off)),
    );
    assert_eq!(
        relay.run().await.expect("run").found,
        0,
        "younger than the minimum age"
    );
    clock.advance(chrono::Duration::seconds(90));
    let report = relay.run().await.expect("run");
    assert_eq!(
        (report.found, report.published),
        (1, 1),
        "found through the sparse outbox-pending index"
    );
    let observed = aws.observed().await;
    assert_eq!(observed.len(), 1);
    assert_eq!(
        observed[0]["detail"]["event_id"],
        "evt:sale:dev-till:relay-9"
    );
    assert_eq!(
        aws.items()
            .await
            .iter()
            .filter(|i| i.contains_key("outbox_pending"))
            .count(),
        0
    );
    assert_eq!(relay.run().await.expect("run").found, 0);
}

#[tokio::test]
async fn store_sales_pages_through_the_gsi_in_a_stable_order() {
    use pos_shared::ids::StoreId;
    use pos_shared::read::SalesReader;
    let Some(moto) = Moto::start() else { return };
    let aws = setup(&moto).await;
    let service = aws.service(
        Arc::new(ManualClock::new(samples::sample_time())),
        chrono::Duration::seconds(30),
    );
    let add = |id: &'static str, store: &'static str, at: &'static str| {
        let mut body = samples::standard_sale(id, store, None, 1);
        body["data"]["occurred_at"] = serde_json::json!(at);
        samples::standard(&format!("msg_{id}"), &body, samples::sample_time(), None)
    };
    for (id, at) in [
        ("g1", "2026-01-15T09:00:00Z"),
        ("g2", "2026-01-15T09:01:00Z"),
        ("g3", "2026-01-15T09:01:00Z"),
        ("g4", "2026-01-15T09:02:00Z"),
        ("g5", "2026-01-15T12:00:00Z"),
    ] {
        service
            .handle(&add(id, "store-g", at).to_request("g"))
            .await
            .expect("captured");
    }
    service
        .handle(&add("other", "store-h", "2026-01-15T09:00:00Z").to_request("g"))
        .await
        .expect("captured");
    let ret = samples::standard(
        "msg_gr",
        &samples::standard_return("gr-1", "g1", "store-g"),
        samples::sample_time(),
        None,
    );
    service
        .handle(&ret.to_request("g"))
        .await
        .expect("return captured");
    let store = DynamoStore::new(aws.ddb.clone(), &aws.table);
    let store_id = StoreId::parse("store-g").expect("id");
    let from = chrono::DateTime::parse_from_rfc3339("2026-01-15T00:00:00Z")
        .expect("t")
        .with_timezone(&chrono::Utc);
    let to = chrono::DateTime::parse_from_rfc3339("2026-01-15T12:00:00Z")
        .expect("t")
        .with_timezone(&chrono::Utc);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .store_sales(&store_id, from, to, after.as_ref(), 2)
            .await
            .expect("page");
        // The senders' own ids (canonical ids carry the Standard sender's namespace).
        seen.extend(page.sales.iter().map(|s| s.source.external_id.clone()));
        match page.next {
            Some(p) => after = Some(p),
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec!["g1", "g2", "g3", "g4"],
        "sales only, ordered, `to` excluded, no duplicates"
    );
}

/// Sales of one store within one millisecond (microseconds and nanoseconds apart, and equal times whose
/// tie is broken by sale id), out of id order, around a `from` and a `to` inside a millisecond.
const SUB_MS_SALES: [(&str, &str); 9] = [
    ("m-before", "2026-01-15T09:00:00.000050Z"),
    ("m-z", "2026-01-15T09:00:00.000100Z"),
    ("m-y", "2026-01-15T09:00:00.000100001Z"),
    ("m-a", "2026-01-15T09:00:00.000100002Z"),
    ("m-c", "2026-01-15T09:00:00.000900Z"),
    ("m-b", "2026-01-15T09:00:00.000900Z"),
    ("m-d", "2026-01-15T09:00:00.000900Z"),
    ("m-next", "2026-01-15T09:00:00.001Z"),
    ("m-after", "2026-01-15T09:00:00.001700Z"),
];

/// The order the read model promises: `(occurred_at, sale id)`, `from` (…000100Z) included, `to`
/// (…001500Z) excluded, both inside a millisecond.
const SUB_MS_EXPECTED: [&str; 7] = ["m-z", "m-y", "m-a", "m-b", "m-c", "m-d", "m-next"];

fn sub_ms_sale(id: &str, at: &str) -> samples::SignedDelivery {
    let mut body = samples::standard_sale(id, "store-ms", None, 1);
    body["data"]["occurred_at"] = serde_json::json!(at);
    samples::standard(&format!("msg_{id}"), &body, samples::sample_time(), None)
}

/// Every page of `store-ms` between `from` and `to`, `size` at a time.
async fn all_pages(reader: &dyn pos_shared::read::SalesReader, size: usize) -> Vec<String> {
    let store_id = pos_shared::ids::StoreId::parse("store-ms").expect("id");
    let t = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("t")
            .with_timezone(&chrono::Utc)
    };
    let (from, to) = (
        t("2026-01-15T09:00:00.000100Z"),
        t("2026-01-15T09:00:00.001500Z"),
    );
    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..20 {
        let page = reader
            .store_sales(&store_id, from, to, after.as_ref(), size)
            .await
            .expect("page");
        assert!(page.sales.len() <= size);
        // The senders' own ids (canonical ids carry the Standard sender's namespace).
        seen.extend(page.sales.iter().map(|s| s.source.external_id.clone()));
        match page.next {
            Some(p) => after = Some(p),
            None => return seen,
        }
    }
    panic!("paging does not end: {seen:?}");
}

#[tokio::test]
async fn sales_within_one_millisecond_page_exactly_once_in_the_same_order_as_the_embedded_store() {
    use pos_shared::secrets::{StaticSecrets, dev_secrets};
    use pos_shared::store::embedded::EmbeddedStore;
    let Some(moto) = Moto::start() else { return };
    let aws = setup(&moto).await;
    let service = aws.service(
        Arc::new(ManualClock::new(samples::sample_time())),
        chrono::Duration::seconds(30),
    );
    let embedded = EmbeddedStore::in_memory().expect("store");
    let local = CaptureService::new(
        Arc::new(embedded.clone()),
        Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
        Arc::new(ManualClock::new(samples::sample_time())),
        CaptureSettings::default(),
    );
    for (id, at) in SUB_MS_SALES {
        let d = sub_ms_sale(id, at);
        service.handle(&d.to_request("ms")).await.expect("captured");
        local.handle(&d.to_request("ms")).await.expect("captured");
    }
    let dynamo = DynamoStore::new(aws.ddb.clone(), &aws.table);
    for size in [1, 2, 3, 4, 100] {
        assert_eq!(
            all_pages(&embedded, size).await,
            SUB_MS_EXPECTED,
            "embedded, pages of {size}"
        );
        assert_eq!(
            all_pages(&dynamo, size).await,
            SUB_MS_EXPECTED,
            "DynamoDB, pages of {size}"
        );
    }
}

#[tokio::test]
async fn rows_keyed_with_the_old_millisecond_encoding_are_still_paged_exactly_once() {
    let Some(moto) = Moto::start() else { return };
    let aws = setup(&moto).await;
    let service = aws.service(
        Arc::new(ManualClock::new(samples::sample_time())),
        chrono::Duration::seconds(30),
    );
    for (id, at) in SUB_MS_SALES {
        service
            .handle(&sub_ms_sale(id, at).to_request("ms"))
            .await
            .expect("captured");
    }
    // Rewrite some keys as an earlier release wrote them (`{millis}Z#{record key}`), so both encodings
    // share the partition and the same milliseconds.
    for id in ["m-z", "m-a", "m-c", "m-next"] {
        let at = SUB_MS_SALES
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, at)| {
                chrono::DateTime::parse_from_rfc3339(at)
                    .expect("t")
                    .with_timezone(&chrono::Utc)
            })
            .expect("listed");
        let old = format!(
            "{}#sale#dev-till:{id}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
        aws.ddb
            .update_item()
            .table_name(&aws.table)
            .key(
                "pk",
                AttributeValue::S(format!("RECORD#sale#dev-till:{id}")),
            )
            .key("sk", AttributeValue::S("RECORD".into()))
            .update_expression("SET gsi1sk = :k")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":k", AttributeValue::S(old))
            .send()
            .await
            .expect("UpdateItem");
    }
    let dynamo = DynamoStore::new(aws.ddb.clone(), &aws.table);
    for size in [1, 2, 3, 100] {
        assert_eq!(
            all_pages(&dynamo, size).await,
            SUB_MS_EXPECTED,
            "pages of {size}"
        );
    }
}

#[tokio::test]
async fn the_relay_drains_every_outbox_shard_fairly_and_the_unsharded_key() {
    use pos_shared::ids::EventId;
    use pos_shared::metrics::{Metrics, Sink};
    use pos_shared::outbox::{OutboxRelay, OutboxSource};
    use pos_shared::store::dynamodb::{OUTBOX_PENDING_SHARDS, outbox_pending_shard};
    let Some(moto) = Moto::start() else { return };
    let aws = setup(&moto).await;
    let shard_of = |sale: &str| {
        outbox_pending_shard(
            // The sales are sent by the dev Standard sender, which namespaces their ids.
            &EventId::parse(format!("evt:sale:dev-till:{sale}")).expect("id"),
            OUTBOX_PENDING_SHARDS,
        )
    };
    // Six sales in one shard (a hot shard), one in each of three others.
    let candidates: Vec<String> = (0..400).map(|n| format!("shard-{n}")).collect();
    let hot = shard_of(&candidates[0]);
    let mut sales: Vec<String> = candidates
        .iter()
        .filter(|c| shard_of(c) == hot)
        .take(6)
        .cloned()
        .collect();
    let mut cold = Vec::new();
    for c in &candidates {
        let shard = shard_of(c);
        if shard != hot && !cold.contains(&shard) && cold.len() < 3 {
            cold.push(shard);
            sales.push(c.clone());
        }
    }
    assert_eq!(sales.len(), 9);
    let clock = Arc::new(ManualClock::new(samples::sample_time()));
    let broken = aws.service(clock.clone(), chrono::Duration::seconds(30));
    for id in &sales {
        let d = samples::standard(
            &format!("msg_{id}"),
            &samples::standard_sale(id, "store-shard", None, 1),
            samples::sample_time(),
            None,
        );
        assert_eq!(
            broken
                .handle(&d.to_request("s"))
                .await
                .expect("captured")
                .status()
                .as_u16(),
            202
        );
    }
    let pending_keys: Vec<String> = aws
        .items()
        .await
        .iter()
        .filter_map(|i| i.get("outbox_pending").and_then(|v| v.as_s().ok()).cloned())
        .collect();
    assert_eq!(pending_keys.len(), 9);
    assert_eq!(
        pending_keys
            .iter()
            .filter(|k| **k == format!("PENDING#{hot}"))
            .count(),
        6,
        "written to the shard of its event id: {pending_keys:?}"
    );
    // One entry written by a release before sharding, under the single key.
    let legacy = "shard-legacy";
    let d = samples::standard(
        "msg_legacy",
        &samples::standard_sale(legacy, "store-shard", None, 1),
        samples::sample_time(),
        None,
    );
    broken.handle(&d.to_request("s")).await.expect("captured");
    aws.ddb
        .update_item()
        .table_name(&aws.table)
        .key(
            "pk",
            AttributeValue::S(format!("OUTBOX#evt:sale:dev-till:{legacy}")),
        )
        .key("sk", AttributeValue::S("OUTBOX".into()))
        .update_expression("SET outbox_pending = :p")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":p", AttributeValue::S("PENDING".into()))
        .send()
        .await
        .expect("UpdateItem");

    clock.advance(chrono::Duration::seconds(90));
    let store = Arc::new(DynamoStore::new(aws.ddb.clone(), &aws.table));
    let cutoff = clock.now() - chrono::Duration::seconds(60);
    // A budget of 5 for 5 non-empty keys: each gets one, the hot shard does not take them all.
    let first = store.pending_before(cutoff, 5).await.expect("pending");
    let mut ids: Vec<String> = first
        .iter()
        .map(|e| e.envelope.event_id.to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert!(
        ids.contains(&format!("evt:sale:dev-till:{legacy}")),
        "{ids:?}"
    );
    assert_eq!(
        ids.iter()
            .filter(|id| {
                id.strip_prefix("evt:sale:dev-till:")
                    .is_some_and(|s| s != legacy && shard_of(s) == hot)
            })
            .count(),
        1,
        "one from the hot shard: {ids:?}"
    );

    let relay = OutboxRelay::new(
        store.clone(),
        store,
        Arc::new(EventBridgePublisher::new(
            aws_sdk_eventbridge::Client::new(&aws.sdk),
            &aws.bus,
        )),
        clock.clone(),
        chrono::Duration::seconds(60),
        4,
        Arc::new(Metrics::new("outbox-relay", Sink::Off)),
    );
    let mut published = 0;
    for _ in 0..5 {
        let report = relay.run().await.expect("run");
        assert!(report.found <= 4, "bounded per run");
        published += report.published;
    }
    assert_eq!(published, 10, "every shard drained, each entry once");
    let mut observed: Vec<String> = aws
        .observed()
        .await
        .iter()
        .filter_map(|e| e["detail"]["event_id"].as_str().map(str::to_owned))
        .collect();
    observed.sort();
    let mut expected: Vec<String> = sales
        .iter()
        .map(String::as_str)
        .chain([legacy])
        .map(|s| format!("evt:sale:dev-till:{s}"))
        .collect();
    expected.sort();
    assert_eq!(observed, expected);
    assert!(
        aws.items()
            .await
            .iter()
            .all(|i| !i.contains_key("outbox_pending")),
        "nothing left pending"
    );
}

/// The quarantine on DynamoDB: a vendor's unmappable delivery is acknowledged and kept; after the fix
/// (here: the Lightspeed currency configured) the operator's reprocess captures and publishes it once,
/// and the scan of open deliveries is empty afterwards.
#[tokio::test]
async fn a_quarantined_delivery_is_reprocessed_once_on_dynamodb() {
    use pos_shared::capture::Captured;
    use pos_shared::model::Vendor;
    use pos_shared::ports::QuarantineStore;
    use pos_shared::quarantine::{Reprocessed, Reprocessor};
    let Some(moto) = Moto::start() else { return };
    let aws = setup(&moto).await;
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(samples::sample_time()));
    let store = Arc::new(DynamoStore::new(aws.ddb.clone(), &aws.table));
    let service = |currency: Option<&str>| {
        CaptureService::new(
            store.clone(),
            Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
            clock.clone(),
            CaptureSettings {
                mapping: MappingConfig {
                    lightspeed_currency: currency.map(|c| Currency::parse(c).expect("ccy")),
                    shopify_accept_test_orders: false,
                    ..MappingConfig::default()
                },
                ..CaptureSettings::default()
            },
        )
    };
    let d = samples::lightspeed(
        "sale.update",
        &samples::lightspeed_sale("ls-dq-1", 1, "CLOSED"),
        None,
    );
    let broken = service(None);
    assert_eq!(
        broken.handle(&d.to_request("q")).await.expect("ack"),
        Captured::Quarantined
    );
    let open = store.open_quarantine().await.expect("scan");
    assert_eq!(open.len(), 1);
    let key = open[0].delivery_key.clone();
    assert!(aws.observed().await.is_empty());

    let fixed = service(Some("NZD"));
    let reprocessor = Reprocessor::new(&fixed, store.as_ref(), clock.as_ref());
    let first = reprocessor
        .reprocess(Vendor::Lightspeed, &key)
        .await
        .expect("reprocess");
    assert!(matches!(first, Reprocessed::Accepted { .. }), "{first:?}");
    assert_eq!(
        reprocessor
            .reprocess(Vendor::Lightspeed, &key)
            .await
            .expect("again"),
        Reprocessed::AlreadyResolved
    );
    assert!(store.open_quarantine().await.expect("scan").is_empty());
    assert!(reprocessor.reprocess_all().await.expect("all").is_empty());
    assert!(
        aws.publish_stream(&aws.bus)
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(aws.observed().await.len(), 1, "published once");
}
