//! The whole local topology delivering to Dynamics 365: pos-local (in process, on its embedded store
//! and durable queues) configured by the `dynamics` section of a connectors file to the D365 emulator.
//! A signed sale posted to the webhook becomes one sales order with its lines there, and the delivery
//! ledger served by the read API proves it.

use pos_shared::samples;
use pos_tests::d365::{CLIENT_ID, CLIENT_SECRET, D365, LEGAL_ENTITY, TENANT};
use pos_tests::local::Local;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_posted_locally_is_one_sales_order_in_dynamics_and_the_ledger_proves_it() {
    let d365 = D365::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let connectors = dir.path().join("connectors.json");
    std::fs::write(
        &connectors,
        json!({"dynamics": {
            "tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "environment_url": d365.url, "auth_url": d365.url, "legal_entity": LEGAL_ENTITY,
            "customer_account": "US-RETAIL", "warehouses": "store-001=WH-01"
        }})
        .to_string(),
    )
    .expect("connectors");
    let local = Local::start(&connectors, &dir.path().join("data")).await;

    let body = samples::standard_sale("local-dx-1", "store-001", None, 2);
    let sale = samples::standard("msg_local_dx_1", &body, chrono::Utc::now(), None);
    assert_eq!(local.send(&sale).await, 202);
    // The vendor redelivers: a duplicate, nothing more downstream.
    assert_eq!(local.send(&sale).await, 200);
    let entries = local.delivered("dev-till:local-dx-1", &["dynamics"]).await;
    let delivered: Vec<&str> = entries
        .iter()
        .filter(|e| e["status"] == "delivered")
        .filter_map(|e| e["destination"].as_str())
        .collect();
    assert_eq!(delivered, vec!["dynamics"], "{entries:?}");
    let headers = d365.entities("SalesOrderHeadersV2");
    assert_eq!(headers.len(), 1, "one sales order");
    assert_eq!(headers[0]["SalesOrderNumber"], "dev-till:local-dx-1");
    assert_eq!(headers[0]["DefaultShippingWarehouseId"], "WH-01");
    let lines = d365.entities("SalesOrderLines");
    assert_eq!(lines.len(), 2, "its lines, once");
    assert!(
        lines
            .iter()
            .all(|l| l["SalesOrderNumber"] == "dev-till:local-dx-1")
    );
}
