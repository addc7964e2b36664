//! pos-local (in process) configured by a connectors file with a `webhooks` section: a signed sale posted
//! to it reaches the subscribed receiver once, verified by the reference library (`standardwebhooks`),
//! and the delivery ledger served by the read API proves it. Then the operator's re-enable
//! (`POST /_local/webhooks/{id}/enable`): a disabled endpoint's `dead` records are replayed.

use pos_shared::samples;
use pos_tests::hooks::Receiver;
use pos_tests::local::Local;
use serde_json::{Value, json};
use std::time::Duration;

const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn connectors(dir: &std::path::Path, receiver: &str) -> std::path::PathBuf {
    let path = dir.join("connectors.json");
    std::fs::write(
        &path,
        json!({"webhooks": {"subscriptions": [
            {"id": "erp", "url": format!("{receiver}/hooks"), "secrets": KEY,
             "event_types": ["SaleCompleted"]}
        ]}})
        .to_string(),
    )
    .expect("connectors");
    path
}

async fn post_sale(local: &Local, id: &str) {
    let body = samples::standard_sale(id, "store-001", None, 2);
    let sale = samples::standard(&format!("msg_{id}"), &body, chrono::Utc::now(), None);
    assert_eq!(local.send(&sale).await, 202);
}

/// The sale's `webhooks:erp` entries once one of them says `want`.
async fn webhook_entries(local: &Local, sale: &str, want: &str) -> Vec<Value> {
    let erp = |entries: &[Value]| -> Vec<Value> {
        entries
            .iter()
            .filter(|e| e["destination"] == "webhooks:erp")
            .cloned()
            .collect()
    };
    let entries = local
        .ledger_until(sale, |entries| {
            erp(entries).iter().any(|e| e["status"] == want)
        })
        .await;
    erp(&entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_posted_locally_reaches_the_subscriber_once_verified_and_the_ledger_proves_it() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    receiver.configure(KEY, &[]).await;
    let dir = tempfile::tempdir().expect("dir");
    let local = Local::start(
        &connectors(dir.path(), &receiver.url),
        &dir.path().join("data"),
    )
    .await;
    post_sale(&local, "local-wh-1").await;

    let entries = webhook_entries(&local, "dev-till:local-wh-1", "delivered").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["status"], "delivered", "{entries:?}");
    // Give a duplicate a chance to arrive before counting.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got = receiver.received().await;
    assert_eq!(got.len(), 1, "once: {got:?}");
    assert!(got[0].verified, "{got:?}");
    assert_eq!(got[0].id.as_deref(), entries[0]["event_id"].as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabling_a_disabled_endpoint_replays_its_records_once() {
    use pos_shared::delivery::webhooks::{EndpointHealth, Verdict};
    let Some(receiver) = Receiver::start() else {
        return;
    };
    receiver.configure(KEY, &[]).await;
    let dir = tempfile::tempdir().expect("dir");
    let local = Local::start(
        &connectors(dir.path(), &receiver.url),
        &dir.path().join("data"),
    )
    .await;
    let http = reqwest::Client::new();
    let url = &local.url;
    // The endpoint failed for longer than its period: disabled, as the fan-out would have done.
    let health = EndpointHealth::new(
        local.platform.deliveries.clone(),
        EndpointHealth::DEFAULT_DISABLE_AFTER,
    );
    let t0 = chrono::Utc::now() - chrono::Duration::days(6);
    assert_eq!(health.record_failure("erp", t0).await, Ok(Verdict::Failing));
    assert_eq!(
        health.record_failure("erp", chrono::Utc::now()).await,
        Ok(Verdict::DisabledNow)
    );

    post_sale(&local, "local-wh-2").await;
    let entries = webhook_entries(&local, "dev-till:local-wh-2", "dead").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["status"], "dead", "{entries:?}");
    assert!(
        receiver.received().await.is_empty(),
        "no call while disabled"
    );

    let enable = |id: &str| {
        http.post(format!("{url}/_local/webhooks/{id}/enable"))
            .send()
    };
    assert_eq!(enable("ERP!").await.expect("bad id").status().as_u16(), 400);
    let reply = enable("erp").await.expect("enable");
    assert_eq!(reply.status().as_u16(), 200);
    let report: Value = reply.json().await.expect("report");
    assert_eq!(
        report["replayed"],
        json!([entries[0]["event_id"]]),
        "{report}"
    );
    assert!(!health.is_disabled("erp").await.expect("read"));

    let entries = webhook_entries(&local, "dev-till:local-wh-2", "delivered").await;
    assert_eq!(entries[0]["status"], "delivered", "{entries:?}");
    // Enabling again replays nothing: the record is delivered, no longer dead.
    let again: Value = enable("erp")
        .await
        .expect("again")
        .json()
        .await
        .expect("report");
    assert_eq!(again["replayed"], json!([]), "{again}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let got = receiver.received().await;
    assert_eq!(got.len(), 1, "once: {got:?}");
    assert!(got[0].verified, "{got:?}");
}
