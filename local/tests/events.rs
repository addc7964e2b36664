//! Every file under `events/` is loaded, parsed exactly as the Lambda runtime parses it, and replayed
//! through the real handler; the answer must be the one the manifest states. The generator's output must
//! also match the files, so the samples cannot drift from the code.

use pos_local::events::{ManifestEntry, rendered};
use pos_shared::bus::memory::RecordingBus;
use pos_shared::capture::{CaptureService, CaptureSettings};
use pos_shared::money::Currency;
use pos_shared::ports::ManualClock;
use pos_shared::samples::sample_time;
use pos_shared::secrets::{StaticSecrets, dev_secrets};
use pos_shared::store::StoreInspect;
use pos_shared::store::embedded::EmbeddedStore;
use pos_shared::vendors::MappingConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("events/ is readable")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            // query-api/ is written and replayed by shared/src/api/tests.rs (`UPDATE_EVENTS=1`): its
            // samples carry ES256 tokens, whose signatures differ on every write.
            if path
                .file_name()
                .is_some_and(|n| n != "schemas" && n != "query-api")
            {
                json_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

#[test]
fn events_dir_is_what_the_generator_writes() {
    let dir = events_dir();
    let expected = rendered().expect("render");
    for (rel, content) in &expected {
        let on_disk = std::fs::read_to_string(dir.join(rel)).unwrap_or_default();
        assert!(
            on_disk == *content,
            "events/{rel} is out of date: run `cargo run -p pos-local -- gen-events`"
        );
    }
    let mut files = Vec::new();
    json_files(&dir, &mut files);
    let known: Vec<PathBuf> = expected.iter().map(|(rel, _)| dir.join(rel)).collect();
    for f in files {
        assert!(
            known.contains(&f),
            "{} is not produced by the generator (add it to local/src/events.rs)",
            f.display()
        );
    }
}

#[tokio::test]
async fn every_event_file_gets_the_answer_the_manifest_states() {
    let dir = events_dir();
    let manifest: Vec<ManifestEntry> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest json");
    assert!(manifest.len() >= 25, "the manifest lists every case");
    let store = EmbeddedStore::in_memory().expect("store");
    let bus = Arc::new(pos_shared::outbox::feed::Announced::new(&store));
    let settings = CaptureSettings {
        mapping: MappingConfig {
            lightspeed_currency: Some(Currency::parse("NZD").expect("nzd")),
            shopify_accept_test_orders: false,
            ..MappingConfig::default()
        },
        ..CaptureSettings::default()
    };
    let service = CaptureService::new(
        Arc::new(store.clone()),
        Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
        Arc::new(ManualClock::new(sample_time())),
        settings,
    );
    let mut accepted = 0;
    for entry in &manifest {
        let text = std::fs::read_to_string(dir.join(&entry.file)).expect("event file");
        let req = pos_shared::http::request_from_event_json(&text)
            .unwrap_or_else(|e| panic!("{}: not an API Gateway v2 event: {e}", entry.file));
        let resp = pos_shared::http::handle(&service, req).await;
        assert_eq!(
            resp.status().as_u16(),
            entry.status,
            "{} ({})",
            entry.file,
            entry.case
        );
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if entry.status >= 400 {
            assert_eq!(content_type, "application/problem+json", "{}", entry.file);
        }
        if entry.status == 202 {
            accepted += 1;
        }
    }
    // One event per fact; a Lightspeed exchange is one accepted delivery carrying two facts.
    let multi_fact = manifest
        .iter()
        .filter(|e| e.file == "lightspeed/sale-exchange.json")
        .count();
    assert_eq!(
        bus.events().len(),
        accepted + multi_fact,
        "one event per captured fact, none for duplicates"
    );
    assert_eq!(
        store.records().await.expect("records").len(),
        accepted + multi_fact
    );
    assert_eq!(
        store.quarantined().await.expect("quarantine").len(),
        manifest.iter().filter(|e| e.quarantined).count()
    );
    assert!(
        manifest
            .iter()
            .any(|e| e.quarantined && (200..300).contains(&e.status)),
        "a vendor's unmappable delivery is acknowledged"
    );
}

#[tokio::test]
async fn every_consumer_event_file_reports_the_failures_the_manifest_states() {
    use aws_lambda_events::event::sqs::SqsEvent;
    use pos_local::events::ConsumerEntry;
    use pos_shared::ids::{MemberId, Sku, StoreId};
    use pos_shared::loyalty::embedded::EmbeddedLoyaltyLedger;
    use pos_shared::loyalty::rules::LoyaltyRules;
    use pos_shared::loyalty::{LoyaltyAccrual, LoyaltyLedger};
    use pos_shared::metrics::{Metrics, Sink};
    use pos_shared::stock::embedded::EmbeddedStockLedger;
    use pos_shared::stock::{StockLedger, StockSync};

    let dir = events_dir();
    let manifest: Vec<ConsumerEntry> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("consumers-manifest.json")).expect("manifest"),
    )
    .expect("json");
    let clock = Arc::new(ManualClock::new(sample_time()));
    let stock = Arc::new(EmbeddedStockLedger::in_memory().expect("ledger"));
    let loyalty = Arc::new(EmbeddedLoyaltyLedger::in_memory().expect("ledger"));
    let sync = StockSync::new(
        stock.clone(),
        Arc::new(RecordingBus::new()),
        clock.clone(),
        5,
        Arc::new(Metrics::new("s", Sink::Off)),
    );
    let accrual = LoyaltyAccrual::new(
        loyalty.clone(),
        LoyaltyRules::default_rules(),
        Arc::new(Metrics::new("l", Sink::Off)),
    );
    for entry in &manifest {
        let text = std::fs::read_to_string(dir.join(&entry.file)).expect("file");
        let event: SqsEvent = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not a Lambda SQS event: {e}", entry.file));
        let response = match entry.consumer.as_str() {
            "stock-sync" => sync.handle_batch(&event).await,
            "loyalty-accrual" => accrual.handle_batch(&event).await,
            other => panic!("unknown consumer {other}"),
        };
        let failures: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(failures, entry.failures, "{} ({})", entry.file, entry.case);
    }
    let store = StoreId::parse("store-001").expect("id");
    let level = |sku: &str| {
        let (stock, store) = (stock.clone(), store.clone());
        let sku = Sku::parse(sku).expect("sku");
        async move { stock.on_hand(&store, &sku).await.expect("level") }
    };
    assert_eq!(
        (
            level("SKU-001").await,
            level("SKU-002").await,
            level("SKU-003").await
        ),
        (0, -1, -1),
        "sold once, one returned"
    );
    assert_eq!(
        level("SKU-010").await,
        25,
        "a count plus the deltas after it, whatever the arrival order"
    );
    let member = MemberId::parse("member-42").expect("member");
    assert_eq!(
        loyalty.balance(&member).await.expect("balance"),
        37 - 12,
        "37.50 EUR earns 37, returning 12.50 takes 12"
    );
}

/// `events/outbox-publisher/stream.json` through the publisher on the embedded store: both entries
/// reach the bus once, in order, and a replay of the same batch (Lambda retrying it) is harmless.
#[tokio::test]
async fn the_outbox_publisher_sample_publishes_its_entries() {
    use pos_shared::bus::memory::RecordingBus;
    let text =
        std::fs::read_to_string(events_dir().join("outbox-publisher/stream.json")).expect("sample");
    let event: aws_lambda_events::dynamodb::Event =
        serde_json::from_str(&text).expect("a DynamoDB stream event");
    let store = EmbeddedStore::in_memory().expect("store");
    let bus = Arc::new(RecordingBus::new());
    let publisher = pos_shared::outbox::OutboxRelay::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        bus.clone(),
        Arc::new(ManualClock::new(sample_time())),
        chrono::Duration::seconds(60),
        0,
        Arc::new(pos_shared::metrics::Metrics::new(
            "outbox-publisher",
            pos_shared::metrics::Sink::Off,
        )),
    );
    let response = publisher.publish_stream(&event).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let kinds: Vec<&str> = bus.events().iter().map(|e| e.detail_type()).collect();
    assert_eq!(kinds, ["SaleCompleted", "ReturnCompleted"]);
    publisher.publish_stream(&event).await;
    let ids: std::collections::BTreeSet<_> = bus.events().into_iter().map(|e| e.event_id).collect();
    assert_eq!(
        ids.len(),
        2,
        "the same stable ids when Lambda retries the batch"
    );
}

#[test]
fn the_outbox_relay_sample_is_the_scheduled_input_it_accepts() {
    let text =
        std::fs::read_to_string(events_dir().join("outbox-relay/scheduled.json")).expect("sample");
    let job: pos_shared::outbox::ScheduledJob = serde_json::from_str(&text).expect("parses");
    assert_eq!(job.job, "outbox-relay");
}
