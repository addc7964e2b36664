//! The whole local topology delivering to Dynamics 365: pos-local (in process, on its embedded store
//! and durable queues) configured by the `dynamics` section of a connectors file to the D365 emulator.
//! A signed sale posted to the webhook becomes one sales order with its lines there, and the delivery
//! ledger served by the read API proves it.

use pos_local::server::{LocalOptions, Platform};
use pos_shared::capture::CaptureSettings;
use pos_shared::samples;
use pos_tests::d365::{CLIENT_ID, CLIENT_SECRET, D365, LEGAL_ENTITY, TENANT};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

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
    let url = start(&connectors, &dir.path().join("data")).await;
    let http = reqwest::Client::new();

    let body = samples::standard_sale("local-dx-1", "store-001", None, 2);
    let sale = samples::standard("msg_local_dx_1", &body, chrono::Utc::now(), None);
    let send = |d: &samples::SignedDelivery| {
        let mut req = http.post(format!("{url}/webhooks/standard"));
        for (name, value) in &d.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        req.body(d.body.clone()).send()
    };
    assert_eq!(send(&sale).await.expect("post").status().as_u16(), 202);
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
            .get(format!("{url}/v1/sales/dev-till:local-dx-1/deliveries"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("deliveries")
            .json()
            .await
            .unwrap_or(Value::Null);
        entries = reply["deliveries"].as_array().cloned().unwrap_or_default();
        if entries.iter().any(|e| e["status"] == "delivered") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
