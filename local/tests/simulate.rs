//! `pos-local simulate` against a real `pos-local serve`: a small seeded day (every vendor, returns,
//! exchanges, members, a 0-decimal currency) reconciles with 0 differences, deliveries to a webhook
//! receiver included; the same seed generates the same deliveries; a sale sent behind the generator's
//! back, a perturbed expectation and a replayed day are all caught (the CLI exits non-zero); `--out`
//! writes API Gateway events that replay to the same result.

use pos_local::simulate::{self, Generated, RunOptions, SimConfig};
use pos_shared::loyalty::rules::LoyaltyRules;
use pos_shared::money::Currency;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

mod common;
use common::spawn;

fn config(seed: u64) -> SimConfig {
    SimConfig {
        stores: 4,
        sales_per_store: 20,
        open_hour: 9,
        close_hour: 21,
        days: 3,
        seed,
        currencies: ["EUR", "JPY", "GBP"]
            .iter()
            .map(|c| Currency::parse(c).expect("currency"))
            .collect(),
        member_share: 0.5,
        return_share: 0.4,
        date: chrono::NaiveDate::from_ymd_opt(2026, 1, 15).expect("date"),
    }
}

fn day(seed: u64) -> Generated {
    simulate::generate(&config(seed), &LoyaltyRules::default_rules()).expect("generate")
}

fn options(url: &str) -> RunOptions {
    RunOptions {
        url: url.to_owned(),
        concurrency: 8,
        idle_timeout: Duration::from_secs(120),
        all_rows: false,
        progress: false,
    }
}

/// A webhook receiver that acknowledges everything; its loopback URL.
async fn receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/hook")
}

#[tokio::test]
async fn a_seeded_day_reconciles_with_zero_differences_deliveries_included() {
    let generated = day(11);
    let kinds: BTreeMap<&str, usize> =
        generated
            .deliveries
            .iter()
            .fold(BTreeMap::new(), |mut m, p| {
                *m.entry(p.kind).or_default() += 1;
                m
            });
    assert!(
        kinds.contains_key("return") && kinds.contains_key("exchange"),
        "{kinds:?}"
    );
    let vendors: std::collections::BTreeSet<_> = generated
        .deliveries
        .iter()
        .map(|p| p.vendor().as_str())
        .collect();
    assert_eq!(vendors.len(), 4, "every vendor's wire format");
    assert!(
        generated.deliveries.iter().any(|p| p.day > 0),
        "returns land on later days"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let hook = receiver().await;
    let connectors = dir.path().join("connectors.json");
    std::fs::write(
        &connectors,
        serde_json::json!({"webhooks": {"subscriptions": [{
            "id": "sim", "url": hook,
            "secrets": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        }]}})
        .to_string(),
    )
    .expect("connectors");
    let data = dir.path().join("data");
    let server = spawn(&data, &["--connectors", connectors.to_str().expect("path")]);
    let report = simulate::run(&generated, &options(&server.url))
        .await
        .expect("run");
    assert!(report.ok(), "{report}");
    assert_eq!(report.sent, generated.deliveries.len());
    assert_eq!(
        report.statuses,
        BTreeMap::from([(202, generated.deliveries.len())])
    );
    assert!(
        report.table.contains("delivered to webhooks:sim"),
        "{}",
        report.table
    );
    assert!(generated.expected.points.values().any(|p| *p > 0));
    // GET /_local/deliveries: the receiver took everything (stock alerts too), nothing is stuck.
    let rows: serde_json::Value = reqwest::get(format!("{}/_local/deliveries", server.url))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let row = &rows[0];
    assert_eq!(row["destination"], "webhooks:sim", "{rows}");
    assert_eq!(
        (
            row["pending"].as_u64(),
            row["retrying"].as_u64(),
            row["dead"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    assert!(
        row["delivered"].as_u64() >= row["delivered_for_sales"].as_u64(),
        "{rows}"
    );
}

#[test]
fn the_same_seed_generates_the_same_deliveries_and_another_seed_does_not() {
    let at = chrono::DateTime::from_timestamp(1_768_471_200, 0).expect("time");
    let signed = |g: &Generated| -> Vec<_> { g.deliveries.iter().map(|p| p.signed(at)).collect() };
    let (a, b) = (day(5), day(5));
    assert_eq!(signed(&a), signed(&b));
    assert_eq!(
        serde_json::to_value(&a.expected).expect("json"),
        serde_json::to_value(&b.expected).expect("json")
    );
    assert_ne!(signed(&a), signed(&day(6)));
}

#[tokio::test]
async fn a_sale_behind_its_back_and_a_perturbed_expectation_are_differences() {
    let generated = day(21);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = spawn(dir.path(), &[]);
    let client = reqwest::Client::new();
    let before = simulate::snapshot(&client, &server.url)
        .await
        .expect("snapshot");
    let report = simulate::run(&generated, &options(&server.url))
        .await
        .expect("run");
    assert!(report.ok(), "{report}");

    // One more sale in a simulated Standard store, of a SKU the day moved: not in the model.
    let (store, sku) = generated
        .expected
        .stock
        .iter()
        .find(|(s, _)| s.contains("-store-"))
        .and_then(|(s, skus)| skus.keys().next().map(|k| (s.clone(), k.clone())))
        .expect("a Standard store with stock");
    let body = serde_json::json!({"type": "sale.completed", "timestamp": "2026-01-15T12:00:00Z", "data": {
        "sale_id": "behind-its-back", "store_id": store, "occurred_at": "2026-01-15T12:00:00Z",
        "currency": "EUR", "lines": [{"line_id": "1", "sku": sku, "quantity": 2, "unit_price": "1.00"}],
        "total": "2.00"
    }});
    let extra = pos_shared::samples::standard("msg_behind", &body, chrono::Utc::now(), None);
    let (status, _) = pos_local::client::post(&client, &server.url, &extra)
        .await
        .expect("post");
    assert_eq!(status, 202);
    assert!(
        simulate::wait_idle(&client, &server.url, Duration::from_secs(60))
            .await
            .expect("idle")
    );
    let after = simulate::snapshot(&client, &server.url)
        .await
        .expect("snapshot");
    let statuses = report.statuses.clone();
    let caught = simulate::reconcile(&generated.expected, &before, &after, &statuses, false);
    assert_eq!(
        caught.differences,
        vec![format!(
            "stock {store} {sku}: expected {:+}, actual {:+}",
            generated.expected.stock[&store][&sku],
            generated.expected.stock[&store][&sku] - 2
        )],
        "{caught}"
    );

    // The model off by one point for one member.
    let mut perturbed = generated.expected.clone();
    let (member, points) = perturbed
        .points
        .iter_mut()
        .find(|(_, p)| **p > 0)
        .expect("a member with points");
    *points += 1;
    let member = member.clone();
    let caught = simulate::reconcile(&perturbed, &before, &after, &statuses, false);
    assert!(
        caught
            .differences
            .iter()
            .any(|d| d.starts_with(&format!("points {member}:"))),
        "{caught}"
    );
}

#[tokio::test]
async fn the_cli_reconciles_a_day_and_exits_non_zero_when_the_same_day_is_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = spawn(dir.path(), &[]);
    let url = server.url.clone();
    let sim = move || {
        Command::new(env!("CARGO_BIN_EXE_pos-local"))
            .args(["simulate", "--stores", "4", "--sales-per-store", "10"])
            .args(["--seed", "3", "--return-share", "0.3", "--url", &url])
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("simulate runs")
    };
    let first = tokio::task::spawn_blocking(sim.clone())
        .await
        .expect("join");
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{out}");
    assert!(out.contains("reconciliation: 0 differences"), "{out}");
    // The same day again: every delivery a duplicate (200), nothing moves, so nothing reconciles.
    let again = tokio::task::spawn_blocking(sim).await.expect("join");
    let out = String::from_utf8_lossy(&again.stdout);
    assert!(!again.status.success(), "{out}");
    assert!(out.contains("deliveries answered 200"), "{out}");
}

#[tokio::test]
async fn out_writes_events_that_replay_to_the_expected_state() {
    let generated = day(31);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("events");
    let n = simulate::write_out(&generated, &out).expect("write");
    assert_eq!(n, generated.deliveries.len());
    let manifest: Vec<pos_local::events::ManifestEntry> = serde_json::from_str(
        &std::fs::read_to_string(out.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest JSON");
    assert_eq!(manifest.len(), n);

    let server = spawn(&dir.path().join("data"), &[]);
    let client = reqwest::Client::new();
    let before = simulate::snapshot(&client, &server.url)
        .await
        .expect("snapshot");
    let mut statuses = BTreeMap::new();
    let mut day = None;
    for (entry, planned) in manifest.iter().zip(generated.deliveries.iter()) {
        // Days in order, each after the pipeline went idle (as `simulate` sends them).
        if day != Some(planned.day) {
            assert!(
                simulate::wait_idle(&client, &server.url, Duration::from_secs(60))
                    .await
                    .expect("idle")
            );
            day = Some(planned.day);
        }
        let (status, body) = pos_local::client::send(&server.url, &out.join(&entry.file), false)
            .await
            .expect("send");
        assert_eq!(status, entry.status, "{}: {body}", entry.file);
        *statuses.entry(status).or_default() += 1;
    }
    assert!(
        simulate::wait_idle(&client, &server.url, Duration::from_secs(60))
            .await
            .expect("idle")
    );
    let after = simulate::snapshot(&client, &server.url)
        .await
        .expect("snapshot");
    let report = simulate::reconcile(&generated.expected, &before, &after, &statuses, false);
    assert!(report.ok(), "{report}");
}
