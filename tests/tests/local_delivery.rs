//! The whole local topology delivering to commercetools: pos-local (in process, on its embedded store and
//! durable queues) configured by a connectors file to commercetools' own emulator. A signed sale posted
//! to the webhook becomes one order and one stock movement per line there, and the delivery ledger
//! served by the read API proves it.

use pos_local::server::{LocalOptions, Platform};
use pos_shared::capture::CaptureSettings;
use pos_shared::samples;
use pos_tests::ctp::Emulator;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const PROJECT: &str = "pos-local";

async fn start(connectors: &std::path::Path, dir: &std::path::Path) -> String {
    let platform = Arc::new(
        Platform::open(&LocalOptions {
            data_dir: dir.to_owned(),
            secrets_file: None,
            settings: CaptureSettings::default(),
            visibility_timeout: Some(Duration::from_millis(300)),
            low_stock_threshold: 5,
            loyalty_rules: None,
            relay_interval: Duration::from_millis(500),
            jwks_file: None,
            jwt_issuer: pos_shared::auth::DEV_ISSUER.into(),
            jwt_audience: pos_shared::auth::API_AUDIENCE.into(),
            connectors_file: Some(connectors.to_owned()),
        })
        .await
        .expect("platform"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(pos_local::server::serve(
        listener,
        platform,
        std::future::pending(),
    ));
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_posted_locally_reaches_commercetools_once_and_the_ledger_proves_it() {
    let Some(emulator) = Emulator::start() else {
        return;
    };
    emulator
        .seed_products(PROJECT, &["SKU-001", "SKU-002"])
        .await;
    let dir = tempfile::tempdir().expect("dir");
    let connectors = dir.path().join("connectors.json");
    std::fs::write(
        &connectors,
        json!({"commercetools": {
            "project_key": PROJECT, "client_id": "pos-platform", "client_secret": "emulator-secret",
            "auth_url": emulator.url, "api_url": emulator.url,
            "scopes": format!("manage_orders:{PROJECT}")
        }})
        .to_string(),
    )
    .expect("connectors");
    let url = start(&connectors, &dir.path().join("data")).await;
    let http = reqwest::Client::new();

    let body = samples::standard_sale("local-ct-1", "store-001", None, 2);
    let sale = samples::standard("msg_local_ct_1", &body, chrono::Utc::now(), None);
    let send = |d: &samples::SignedDelivery| {
        let mut req = http.post(format!("{url}/webhooks/standard"));
        for (name, value) in &d.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        req.body(d.body.clone()).send()
    };
    let status = send(&sale).await.expect("post").status();
    assert_eq!(status.as_u16(), 202);
    // The vendor redelivers: a duplicate, nothing more downstream.
    assert_eq!(send(&sale).await.expect("again").status().as_u16(), 200);

    let token = pos_shared::auth::dev_token(
        pos_shared::auth::DEV_ISSUER,
        pos_shared::auth::API_AUDIENCE,
        "test",
        "deliveries:read",
        chrono::Utc::now(),
        chrono::Duration::minutes(10),
    )
    .expect("token");
    let mut entries = Vec::new();
    for _ in 0..100 {
        let reply: Value = http
            .get(format!("{url}/v1/sales/dev-till:local-ct-1/deliveries"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("deliveries")
            .json()
            .await
            .unwrap_or(Value::Null);
        entries = reply["deliveries"].as_array().cloned().unwrap_or_default();
        let delivered = entries
            .iter()
            .filter(|e| e["status"] == "delivered")
            .count();
        if delivered == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut destinations: Vec<&str> = entries
        .iter()
        .filter(|e| e["status"] == "delivered")
        .filter_map(|e| e["destination"].as_str())
        .collect();
    destinations.sort_unstable();
    assert_eq!(
        destinations,
        vec!["commercetools", "commercetools-inventory"],
        "{entries:?}"
    );
    let orders = emulator
        .orders_numbered(PROJECT, "dev-till:local-ct-1")
        .await;
    assert_eq!(orders.len(), 1, "one order");
    assert_eq!(orders[0]["lineItems"].as_array().map(Vec::len), Some(2));
}
