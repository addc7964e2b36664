//! The whole local topology delivering to commercetools: pos-local (in process, on its embedded store and
//! durable queues) configured by a connectors file to commercetools' own emulator. A signed sale posted
//! to the webhook becomes one order and one stock movement per line there, and the delivery ledger
//! served by the read API proves it.

use pos_shared::samples;
use pos_tests::ctp::Emulator;
use pos_tests::local::Local;
use serde_json::json;

const PROJECT: &str = "pos-local";

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
    let local = Local::start(&connectors, &dir.path().join("data")).await;

    let body = samples::standard_sale("local-ct-1", "store-001", None, 2);
    let sale = samples::standard("msg_local_ct_1", &body, chrono::Utc::now(), None);
    assert_eq!(local.send(&sale).await, 202);
    // The vendor redelivers: a duplicate, nothing more downstream.
    assert_eq!(local.send(&sale).await, 200);
    let entries = local
        .delivered(
            "dev-till:local-ct-1",
            &["commercetools", "commercetools-inventory"],
        )
        .await;
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
