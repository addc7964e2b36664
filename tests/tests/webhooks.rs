//! Signed webhooks out against a receiver that verifies every request with the Standard Webhooks
//! reference library (`standardwebhooks`, Python): signatures with one secret and across a rotation, a
//! tampered body refused, no second POST for a delivered event, retries on the spec's schedule, an
//! endpoint disabled after failing for its period, event filters; and the endpoint health on DynamoDB
//! (moto).

use pos_shared::delivery::breaker::{BreakerConfig, MemoryBreakerStore};
use pos_shared::delivery::client::DestinationClient;
use pos_shared::delivery::dynamodb::DynamoDeliveries;
use pos_shared::delivery::engine::Outcome;
use pos_shared::delivery::ledger::{DeliveryLedger, DeliveryStatus, MemoryDeliveryLedger};
use pos_shared::delivery::webhooks::{
    ENDPOINT_DISABLED, EndpointHealth, FanoutParts, HealthStore, MemoryHealthStore, Verdict,
    WebhookFanout, http_client, signature_header, subscriptions_from_json,
};
use pos_shared::metrics::{Metrics, Sink};
use pos_shared::model::EventEnvelope;
use pos_shared::ports::{Clock, ManualClock, SystemClock};
use pos_shared::samples;
use pos_tests::hooks::Receiver;
use pos_tests::moto::{Moto, create_table_from_infra};
use secrecy::SecretString;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW: &str = "whsec_ZGV2LXN0YW5kYXJkLXdlYmhvb2tzLWtleS0wMQ==";

struct Setup {
    fanout: WebhookFanout,
    ledger: Arc<MemoryDeliveryLedger>,
    health: EndpointHealth,
    metrics: Arc<Metrics>,
}

fn setup(subscriptions: serde_json::Value, clock: Arc<dyn Clock>) -> Setup {
    let subs = subscriptions_from_json(&json!({ "subscriptions": subscriptions })).expect("valid");
    let ledger = Arc::new(MemoryDeliveryLedger::default());
    let health = EndpointHealth::new(
        Arc::new(MemoryHealthStore::default()),
        EndpointHealth::DEFAULT_DISABLE_AFTER,
    );
    let metrics = Arc::new(Metrics::new(
        "webhooks-sync",
        Sink::Memory(Mutex::new(Vec::new())),
    ));
    let parts = FanoutParts {
        client: DestinationClient::unauthenticated(
            http_client().expect("client"),
            clock.clone(),
            Duration::from_secs(1),
        ),
        ledger: ledger.clone(),
        breakers: Arc::new(MemoryBreakerStore::default()),
        // Failures here come faster than any schedule: keep the breaker (tested on its own) out of the way.
        breaker_config: BreakerConfig {
            failure_threshold: 100,
            ..BreakerConfig::default()
        },
        health: health.clone(),
        clock,
        metrics: metrics.clone(),
    };
    Setup {
        fanout: WebhookFanout::new(subs, parts),
        ledger,
        health,
        metrics,
    }
}

fn sale(id: &str) -> EventEnvelope {
    let body = samples::standard_sale(id, "store-1", None, 2);
    samples::envelope_of(&samples::standard(id, &body, samples::sample_time(), None))
        .expect("a sale")
}

fn a_return(id: &str) -> EventEnvelope {
    let body = samples::standard_return(id, "s-1", "store-1");
    samples::envelope_of(&samples::standard(id, &body, samples::sample_time(), None))
        .expect("a return")
}

fn sub(id: &str, url: &str, secrets: &[&str]) -> serde_json::Value {
    json!({"id": id, "url": format!("{url}/hooks/{id}"), "secrets": secrets})
}

#[tokio::test]
async fn the_reference_library_verifies_our_signatures_with_one_secret_and_across_a_rotation() {
    let Some(rx) = Receiver::start() else { return };
    let s = setup(
        json!([
            sub("single", &rx.url, &[OLD]),
            sub("rotating", &rx.url, &[NEW, OLD])
        ]),
        Arc::new(SystemClock),
    );
    rx.configure(OLD, &[]).await;
    let first = sale("r-1");
    let out = s.fanout.deliver(&first, 1).await.expect("deliver");
    assert!(matches!(out.record, Outcome::Delivered(_)), "{out:?}");
    // The receiver moves to the new secret: only the rotating subscription still verifies.
    rx.configure(NEW, &[]).await;
    let second = sale("r-2");
    let out = s.fanout.deliver(&second, 1).await.expect("deliver");
    assert!(matches!(out.record, Outcome::Requeue(_)), "{out:?}");
    assert!(
        matches!(out.subscriptions[1].1, Outcome::Delivered(_)),
        "{out:?}"
    );
    let got = rx.received().await;
    let verified: Vec<(Option<String>, bool)> =
        got.iter().map(|r| (r.id.clone(), r.verified)).collect();
    let first_id = Some(first.event_id.to_string());
    let second_id = Some(second.event_id.to_string());
    assert_eq!(
        verified,
        vec![
            (first_id.clone(), true),
            (first_id, true),
            (second_id.clone(), false),
            (second_id, true)
        ],
        "webhook-id is our event id; the old secret alone no longer verifies: {got:?}"
    );
}

#[tokio::test]
async fn a_tampered_body_is_refused_by_the_reference_library() {
    let Some(rx) = Receiver::start() else { return };
    rx.configure(OLD, &[]).await;
    let now = chrono::Utc::now().timestamp();
    let body = serde_json::to_vec(&sale("t-1")).expect("json");
    let signature = signature_header(&[SecretString::from(OLD)], "evt-1", now, &body);
    let send = |body: Vec<u8>| {
        reqwest::Client::new()
            .post(format!("{}/hooks/x", rx.url))
            .header("webhook-id", "evt-1")
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", &signature)
            .body(body)
            .send()
    };
    let mut tampered = body.clone();
    if let Some(b) = tampered.iter_mut().find(|b| b.is_ascii_digit()) {
        *b = if *b == b'9' { b'1' } else { *b + 1 };
    }
    assert_eq!(send(tampered).await.expect("sent").status().as_u16(), 401);
    assert_eq!(
        send(body).await.expect("sent").status().as_u16(),
        200,
        "the original verifies"
    );
    let got = rx.received().await;
    assert!(
        !got[0].verified
            && got[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("No matching signature")),
        "{got:?}"
    );
    assert!(got[1].verified);
}

#[tokio::test]
async fn a_delivered_event_is_not_posted_again_and_failures_follow_the_schedule() {
    let Some(rx) = Receiver::start() else { return };
    rx.configure(OLD, &["500", "500", "timeout"]).await;
    let s = setup(json!([sub("erp", &rx.url, &[OLD])]), Arc::new(SystemClock));
    let event = sale("s-1");
    let out = s.fanout.deliver(&event, 1).await.expect("deliver");
    assert_eq!(
        out.record,
        Outcome::Requeue(Duration::from_secs(5)),
        "after the 1st failure"
    );
    let out = s.fanout.deliver(&event, 2).await.expect("deliver");
    assert_eq!(
        out.record,
        Outcome::Requeue(Duration::from_secs(300)),
        "after the 2nd"
    );
    // A timeout (the receiver got it, we do not know): sent again later with the same webhook-id.
    let out = s.fanout.deliver(&event, 3).await.expect("deliver");
    assert_eq!(
        out.record,
        Outcome::Requeue(Duration::from_secs(1800)),
        "after the 3rd"
    );
    let entry = s
        .ledger
        .get(&event.event_id, "webhooks:erp")
        .await
        .expect("get")
        .expect("entry");
    assert_eq!(
        (entry.status, entry.attempts),
        (DeliveryStatus::Retrying, 3)
    );
    assert_eq!(entry.last_error.as_deref(), Some("timeout"));
    let out = s.fanout.deliver(&event, 4).await.expect("deliver");
    assert!(matches!(out.record, Outcome::Delivered(_)), "{out:?}");
    // The SQS redelivery of a delivered record: no POST.
    let out = s.fanout.deliver(&event, 5).await.expect("deliver");
    assert_eq!(out.record, Outcome::Skipped);
    let got = rx.received().await;
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(
        got.iter()
            .all(|r| r.verified && r.id == Some(event.event_id.to_string()))
    );
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![500, 500, 200, 200]
    );
    let entry = s
        .ledger
        .get(&event.event_id, "webhooks:erp")
        .await
        .expect("get")
        .expect("entry");
    assert_eq!(
        (entry.status, entry.attempts),
        (DeliveryStatus::Delivered, 4)
    );
}

#[tokio::test]
async fn the_eighth_failed_attempt_ends_the_schedule() {
    let Some(rx) = Receiver::start() else { return };
    rx.configure(OLD, &["500"; 8]).await;
    let s = setup(json!([sub("erp", &rx.url, &[OLD])]), Arc::new(SystemClock));
    let event = sale("x-1");
    for receive in 1..=7 {
        let out = s.fanout.deliver(&event, receive).await.expect("deliver");
        assert!(
            matches!(out.record, Outcome::Requeue(_)),
            "{receive}: {out:?}"
        );
    }
    let out = s.fanout.deliver(&event, 8).await.expect("deliver");
    assert_eq!(
        out.record,
        Outcome::Dead("webhooks:erp: retry schedule exhausted after 8 attempts".into())
    );
    let entry = s
        .ledger
        .get(&event.event_id, "webhooks:erp")
        .await
        .expect("get")
        .expect("entry");
    assert_eq!(entry.status, DeliveryStatus::Dead);
    assert_eq!(rx.received().await.len(), 8);
}

#[tokio::test]
async fn an_endpoint_failing_past_its_period_is_disabled_and_its_events_kept() {
    let Some(rx) = Receiver::start() else { return };
    rx.configure(OLD, &["500"]).await;
    let start = chrono::Utc::now();
    let clock = Arc::new(ManualClock::new(start));
    let s = setup(json!([sub("erp", &rx.url, &[OLD])]), clock.clone());
    let first = sale("d-1");
    let out = s.fanout.deliver(&first, 1).await.expect("deliver");
    assert!(matches!(out.record, Outcome::Requeue(_)), "{out:?}");
    assert!(s.metrics.recorded().is_empty());
    // Five days and a second later it still fails (the receiver now refuses our timestamp: 401).
    clock.advance(EndpointHealth::DEFAULT_DISABLE_AFTER + chrono::Duration::seconds(1));
    let out = s.fanout.deliver(&first, 2).await.expect("deliver");
    assert_eq!(out.record, Outcome::Skipped, "acknowledged: {out:?}");
    assert_eq!(
        out.subscriptions[0].1,
        Outcome::Dead(ENDPOINT_DISABLED.into())
    );
    let metrics = s.metrics.recorded();
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    assert_eq!(metrics[0]["WebhookEndpointDisabled"], 1.0);
    assert_eq!(metrics[0]["subscription"], "erp");
    // A later event is kept as dead without a call.
    let second = sale("d-2");
    let out = s.fanout.deliver(&second, 1).await.expect("deliver");
    assert_eq!(
        out.subscriptions[0].1,
        Outcome::Dead(ENDPOINT_DISABLED.into())
    );
    assert_eq!(rx.received().await.len(), 2, "no call once disabled");
    for e in [&first, &second] {
        let entry = s
            .ledger
            .get(&e.event_id, "webhooks:erp")
            .await
            .expect("get")
            .expect("entry");
        assert_eq!(entry.status, DeliveryStatus::Dead);
        assert_eq!(entry.last_error.as_deref(), Some(ENDPOINT_DISABLED));
        assert!(entry.sale_id.is_some(), "listed with its sale");
    }
    assert_eq!(s.metrics.recorded().len(), 1, "the alarm fires once");
    // Re-enabled by an operator, the kept events are replayed and delivered.
    s.health.enable("erp").await.expect("enable");
    clock.set(chrono::Utc::now());
    for e in [&first, &second] {
        let out = s.fanout.deliver(e, 1).await.expect("replay");
        assert!(matches!(out.record, Outcome::Delivered(_)), "{out:?}");
    }
    let got = rx.received().await;
    assert_eq!(got.len(), 4);
    assert!(got[2].verified && got[3].verified);
}

#[tokio::test]
async fn subscriptions_get_only_the_event_types_they_filter_on() {
    let Some(rx) = Receiver::start() else { return };
    rx.configure(OLD, &[]).await;
    let mut sales_only = sub("sales", &rx.url, &[OLD]);
    sales_only["event_types"] = json!(["SaleCompleted"]);
    let mut off = sub("off", &rx.url, &[OLD]);
    off["enabled"] = json!(false);
    let s = setup(
        json!([sales_only, sub("all", &rx.url, &[OLD]), off]),
        Arc::new(SystemClock),
    );
    let ret = a_return("f-1");
    let out = s.fanout.deliver(&ret, 1).await.expect("deliver");
    assert_eq!(
        out.subscriptions
            .iter()
            .map(|(n, o)| (n.as_str(), matches!(o, Outcome::Delivered(_))))
            .collect::<Vec<_>>(),
        vec![
            ("webhooks:sales", false),
            ("webhooks:all", true),
            ("webhooks:off", false)
        ]
    );
    let out = s.fanout.deliver(&sale("f-2"), 1).await.expect("deliver");
    assert!(matches!(out.subscriptions[0].1, Outcome::Delivered(_)));
    assert_eq!(out.subscriptions[2].1, Outcome::Skipped);
    assert_eq!(rx.received().await.len(), 3);
    assert!(
        s.ledger
            .get(&ret.event_id, "webhooks:sales")
            .await
            .expect("get")
            .is_none()
    );
}

#[tokio::test]
async fn endpoint_health_lives_beside_the_ledger_on_dynamodb() {
    let Some(moto) = Moto::start() else { return };
    let sdk = moto.sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    create_table_from_infra(&ddb, "pos-test-deliveries", "deliveries").await;
    let store = Arc::new(DynamoDeliveries::new(ddb.clone(), "pos-test-deliveries"));
    // Two instances of the function over one table.
    let a = EndpointHealth::new(store.clone(), chrono::Duration::days(5));
    let b = EndpointHealth::new(store.clone(), chrono::Duration::days(5));
    let t0 = samples::sample_time();
    assert_eq!(a.record_failure("erp", t0).await, Ok(Verdict::Failing));
    let later = t0 + chrono::Duration::days(5) + chrono::Duration::seconds(1);
    let (x, y) = tokio::join!(
        b.record_failure("erp", later),
        a.record_failure("erp", later)
    );
    let mut verdicts = [x.expect("x"), y.expect("y")];
    verdicts.sort_by_key(|v| format!("{v:?}"));
    assert_eq!(
        verdicts,
        [Verdict::Disabled, Verdict::DisabledNow],
        "one instance disables it"
    );
    assert!(b.is_disabled("erp").await.expect("read"));
    assert!(!b.is_disabled("oms").await.expect("read"));
    let item = ddb
        .get_item()
        .table_name("pos-test-deliveries")
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("ENDPOINT#erp".into()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("health".into()),
        )
        .send()
        .await
        .expect("get")
        .item;
    assert!(item.is_some_and(|i| i.contains_key("data") && i.contains_key("version")));
    let record = store.load("erp").await.expect("load").expect("record");
    assert_eq!(record.disabled_at, Some(later));
    assert_eq!(
        store
            .compare_and_set("erp", Some(record.version - 1), &record)
            .await,
        Ok(false),
        "a stale version is refused"
    );
    a.enable("erp").await.expect("enable");
    assert!(!b.is_disabled("erp").await.expect("read"));
}
