//! End to end over HTTP: the real `pos-local` binary, signed deliveries, inspection endpoints, and a
//! restart on the same data directory (the embedded store is durable).

use pos_shared::samples;
use serde_json::Value;
use std::process::Command;

mod common;
use common::spawn;

async fn get(url: &str) -> Value {
    reqwest::get(url)
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test]
async fn sales_posted_to_pos_local_are_stored_published_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let now = chrono::Utc::now();
    let sale = samples::standard(
        "msg_e2e_1",
        &samples::standard_sale("till-1:e2e-1", "store-001", Some("member-1"), 2),
        now,
        None,
    );
    let shopify = samples::shopify(
        "orders/create",
        "e2e-shopify-1",
        &samples::shopify_order(77, 2),
        None,
    );
    let mut bad = samples::shopify_order(78, 1);
    bad["currency"] = Value::String("XXX".into());
    let unmappable = samples::shopify("orders/create", "e2e-shopify-2", &bad, None);
    {
        let server = spawn(dir.path(), &[]);
        let post = |d| pos_local::client::post(&client, &server.url, d);
        assert_eq!(post(&sale).await.expect("post").0, 202);
        assert_eq!(post(&sale).await.expect("post").0, 200, "duplicate");
        assert_eq!(post(&shopify).await.expect("post").0, 202);
        let (status, body) = post(&unmappable).await.expect("post");
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"status":"quarantined"}"#),
            "a vendor's unmappable delivery is acknowledged"
        );
        let tampered = sale.clone().with_body(b"{}".to_vec());
        let (status, body) = post(&tampered).await.expect("post");
        assert_eq!(status, 401);
        assert!(!body.contains("whsec_"), "no secret in error bodies");

        let sales = get(&format!("{}/_local/sales", server.url)).await;
        let keys: Vec<&str> = sales
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|r| r["record_key"].as_str())
            .collect();
        assert_eq!(keys.len(), 2);
        assert!(
            keys.contains(&"sale#dev-till:till-1:e2e-1") && keys.contains(&"sale#shopify:77"),
            "{keys:?}"
        );
        let events = get(&format!("{}/_local/events", server.url)).await;
        let sales: Vec<&Value> = events
            .as_array()
            .expect("array")
            .iter()
            .filter(|e| e["type"] == "SaleCompleted")
            .collect();
        assert_eq!(sales.len(), 2);
        let quarantine = get(&format!("{}/_local/quarantine", server.url)).await;
        assert_eq!(quarantine[0]["delivery_key"], "e2e-shopify-2");
        assert_eq!(
            get(&format!("{}/_local/outbox", server.url))
                .await
                .as_array()
                .map(Vec::len),
            Some(0)
        );
        let unknown = client
            .get(format!("{}/nope", server.url))
            .send()
            .await
            .expect("GET");
        assert_eq!(unknown.status().as_u16(), 404);
    }
    // Restart on the same directory: the sales are still there and still deduplicate.
    let server = spawn(dir.path(), &[]);
    let sales = get(&format!("{}/_local/sales", server.url)).await;
    assert_eq!(
        sales.as_array().map(Vec::len),
        Some(2),
        "data survives a restart"
    );
    assert_eq!(
        pos_local::client::post(&client, &server.url, &sale)
            .await
            .expect("post")
            .0,
        200
    );
    assert_eq!(
        get(&format!("{}/_local/events", server.url))
            .await
            .as_array()
            .map(Vec::len),
        Some(0),
        "no republication"
    );
}

#[tokio::test]
async fn a_secrets_file_replaces_the_dev_secrets_and_supports_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets.json");
    std::fs::write(
        &secrets,
        r#"{"standard": {"secrets": ["whsec_bmV3LWtleQ==", "whsec_ZGV2LXN0YW5kYXJkLXdlYmhvb2tzLWtleS0wMQ=="]}}"#,
    )
    .expect("write");
    let server = spawn(
        &dir.path().join("data"),
        &["--secrets", secrets.to_str().expect("utf8")],
    );
    let client = reqwest::Client::new();
    let now = chrono::Utc::now();
    let old_key = samples::standard(
        "msg_rot_1",
        &samples::standard_sale("r-1", "s-1", None, 1),
        now,
        None,
    );
    let new_key = samples::standard(
        "msg_rot_2",
        &samples::standard_sale("r-2", "s-1", None, 1),
        now,
        Some("whsec_bmV3LWtleQ=="),
    );
    assert_eq!(
        pos_local::client::post(&client, &server.url, &old_key)
            .await
            .expect("post")
            .0,
        202
    );
    assert_eq!(
        pos_local::client::post(&client, &server.url, &new_key)
            .await
            .expect("post")
            .0,
        202
    );
    let shopify = samples::shopify("orders/create", "e", &samples::shopify_order(1, 1), None);
    assert_eq!(
        pos_local::client::post(&client, &server.url, &shopify)
            .await
            .expect("post")
            .0,
        503,
        "vendor not configured in this file"
    );
}

#[test]
fn a_bad_secrets_file_fails_at_start_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets.json");
    std::fs::write(
        &secrets,
        r#"{"shopify": {"webhook_secret": "super-secret-value", "typo": 1}}"#,
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_pos-local"))
        .args(["serve", "--addr", "127.0.0.1:0", "--secrets"])
        .arg(&secrets)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("secrets file"), "{stderr}");
    assert!(
        !stderr.contains("super-secret-value"),
        "never echo secret values"
    );
}

#[tokio::test]
async fn pos_local_token_prints_a_dev_token_the_dev_jwks_verifies() {
    use pos_shared::auth::{
        API_AUDIENCE, AuthConfig, Authenticator, DEV_ISSUER, DEV_JWKS_JSON, StaticJwks,
    };
    let out = Command::new(env!("CARGO_BIN_EXE_pos-local"))
        .args(["token", "--scopes", "sales:read stock:read"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let auth = Authenticator::new(
        std::sync::Arc::new(StaticJwks::parse(DEV_JWKS_JSON).expect("jwks")),
        std::sync::Arc::new(pos_shared::ports::SystemClock),
        AuthConfig {
            issuer: DEV_ISSUER.into(),
            audience: API_AUDIENCE.into(),
            leeway_seconds: 30,
            jwks_ttl: chrono::Duration::minutes(10),
            min_refetch: chrono::Duration::seconds(60),
            jwks_max_stale: chrono::Duration::hours(24),
        },
    );
    let principal = auth
        .authenticate(Some(&format!("Bearer {token}")))
        .await
        .expect("valid dev token");
    assert!(principal.require("stock:read").is_ok());
    assert!(principal.require("loyalty:read").is_err());
}

fn token(scopes: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pos-local"))
        .args(["token", "--scopes", scopes])
        .output()
        .expect("runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn sales_stock_and_points_read_back_over_rest_and_graphql_with_dev_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = spawn(dir.path(), &["--visibility-timeout-ms", "200"]);
    let client = reqwest::Client::new();
    let now = chrono::Utc::now();
    for (i, at) in [
        "2026-01-15T09:00:00Z",
        "2026-01-15T09:05:00Z",
        "2026-01-15T09:10:00Z",
    ]
    .iter()
    .enumerate()
    {
        let mut body = samples::standard_sale(&format!("q-{i}"), "store-q", Some("m-q"), 1);
        body["data"]["occurred_at"] = serde_json::json!(at);
        let d = samples::standard(&format!("msg_q{i}"), &body, now, None);
        assert_eq!(
            pos_local::client::post(&client, &server.url, &d)
                .await
                .expect("post")
                .0,
            202
        );
    }
    assert!(
        pos_local::client::wait_drained(&client, &server.url, std::time::Duration::from_secs(30))
            .await
            .expect("queues")
    );
    let all = token("sales:read stock:read loyalty:read deliveries:read");
    let sales_only = token("sales:read");
    let get_with = |path: &str, token: Option<&str>| {
        let mut req = client.get(format!("{}{path}", server.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };

    assert_eq!(
        get_with("/v1/health", None)
            .await
            .expect("GET")
            .status()
            .as_u16(),
        200
    );
    let openapi: Value = get_with("/v1/openapi.json", None)
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(openapi["openapi"], "3.1.0");

    let no_token = get_with("/v1/sales/dev-till:q-0", None).await.expect("GET");
    assert_eq!(no_token.status().as_u16(), 401);
    assert_eq!(
        no_token
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    assert_eq!(
        no_token
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let garbage = get_with("/v1/sales/dev-till:q-0", Some("not-a-jwt"))
        .await
        .expect("GET");
    assert_eq!(garbage.status().as_u16(), 401);
    let sale: Value = get_with("/v1/sales/dev-till:q-0", Some(&sales_only))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(sale["sale_id"], "dev-till:q-0");
    assert_eq!(sale["total"]["minor"], 1250);
    assert_eq!(
        get_with("/v1/sales/nope", Some(&sales_only))
            .await
            .expect("GET")
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        get_with("/v1/sales/bad%20id", Some(&sales_only))
            .await
            .expect("GET")
            .status()
            .as_u16(),
        400
    );

    // The delivery ledger (deliveries.redb): no destination is configured, so a known sale has none.
    assert!(dir.path().join("deliveries.redb").exists());
    let deliveries: Value = get_with("/v1/sales/dev-till:q-0/deliveries", Some(&all))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        deliveries,
        serde_json::json!({"sale_id": "dev-till:q-0", "deliveries": []})
    );
    for (path, token, status) in [
        ("/v1/sales/nope/deliveries", &all, 404),
        ("/v1/sales/dev-till:q-0/deliveries", &sales_only, 403),
    ] {
        let resp = get_with(path, Some(token)).await.expect("GET");
        assert_eq!(resp.status().as_u16(), status, "{path}");
    }

    let forbidden = get_with("/v1/stores/store-q/stock/SKU-001", Some(&sales_only))
        .await
        .expect("GET");
    assert_eq!(forbidden.status().as_u16(), 403);
    assert!(
        forbidden
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("insufficient_scope"))
    );
    let level: Value = get_with("/v1/stores/store-q/stock/SKU-001", Some(&all))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(level["on_hand"], -3);
    let stock: Value = get_with("/v1/stores/store-q/stock?limit=1", Some(&all))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(stock["items"][0]["sku"], "SKU-001");
    assert!(stock["next_cursor"].is_null(), "one SKU in this store");
    assert_eq!(
        get_with("/v1/stores/store-q/stock?cursor=x", Some(&all))
            .await
            .expect("GET")
            .status()
            .as_u16(),
        400
    );

    let page1: Value = get_with("/v1/stores/store-q/sales?limit=2", Some(&all))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(page1["items"].as_array().map(Vec::len), Some(2));
    let cursor = page1["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let page2: Value = get_with(
        &format!("/v1/stores/store-q/sales?limit=2&cursor={cursor}"),
        Some(&all),
    )
    .await
    .expect("GET")
    .json()
    .await
    .expect("JSON");
    assert_eq!(page2["items"][0]["sale_id"], "dev-till:q-2");
    assert!(page2["next_cursor"].is_null());
    let other_filter =
        format!("/v1/stores/store-q/sales?limit=2&from=2026-01-15T09:01:00Z&cursor={cursor}");
    assert_eq!(
        get_with(&other_filter, Some(&all))
            .await
            .expect("GET")
            .status()
            .as_u16(),
        400,
        "cursor bound to its query"
    );
    for bad in [
        "limit=0",
        "limit=1000",
        "from=yesterday",
        "from=2026-01-16T00:00:00Z&to=2026-01-15T00:00:00Z",
        "cursor=forged",
    ] {
        let resp = get_with(&format!("/v1/stores/store-q/sales?{bad}"), Some(&all))
            .await
            .expect("GET");
        assert_eq!(resp.status().as_u16(), 400, "{bad}");
    }

    let balance: Value = get_with("/v1/members/m-q/loyalty", Some(&all))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        balance["balance"], 36,
        "3 sales of 12.50 EUR earn 12 points each"
    );
    let ledger: Value = get_with("/v1/members/m-q/loyalty/ledger", Some(&all))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(ledger["entries"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        get_with("/v1/nowhere", Some(&all))
            .await
            .expect("GET")
            .status()
            .as_u16(),
        404
    );

    // The same data over GraphQL, with the same tokens.
    let graphql = |token: Option<&str>, query: &str| {
        let mut req = client
            .post(format!("{}/graphql", server.url))
            .json(&serde_json::json!({ "query": query }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let q = r#"{ sale(saleId: "dev-till:q-1") { saleId total { minor currency } }
                 storeSales(storeId: "store-q", first: 2) { items { saleId } nextCursor }
                 stockLevel(storeId: "store-q", sku: "SKU-001") { onHand }
                 member(memberId: "m-q") { balance ledger { items { points } } } }"#;
    let resp = graphql(Some(&all), q).await.expect("POST");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.expect("JSON");
    assert!(body.get("errors").is_none(), "{body}");
    let d = &body["data"];
    assert_eq!(d["sale"]["saleId"], "dev-till:q-1");
    assert_eq!(d["sale"]["total"]["minor"], 1250);
    assert_eq!(d["storeSales"]["items"][0]["saleId"], "dev-till:q-0");
    assert!(d["storeSales"]["nextCursor"].is_string());
    assert_eq!(d["stockLevel"]["onHand"], -3);
    assert_eq!(d["member"]["balance"], 36);
    assert_eq!(
        d["member"]["ledger"]["items"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(graphql(None, q).await.expect("POST").status().as_u16(), 401);
    let partial: Value = graphql(Some(&sales_only), q)
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        partial["data"]["sale"]["saleId"], "dev-till:q-1",
        "{partial}"
    );
    let codes: Vec<&str> = partial["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["extensions"]["code"].as_str())
        .collect();
    assert!(
        !codes.is_empty() && codes.iter().all(|c| *c == "FORBIDDEN"),
        "{partial}"
    );
}

#[tokio::test]
async fn serve_trusts_the_configured_issuer_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = spawn(
        dir.path(),
        &[
            "--jwt-issuer",
            "https://idp.example/realm",
            "--jwt-audience",
            "erp",
        ],
    );
    let client = reqwest::Client::new();
    let dev = token("sales:read");
    let resp = client
        .get(format!("{}/v1/sales/any", server.url))
        .bearer_auth(&dev)
        .send()
        .await
        .expect("GET");
    assert_eq!(
        resp.status().as_u16(),
        401,
        "a dev-issuer token is refused when another issuer is configured"
    );
    let health = client
        .get(format!("{}/v1/health", server.url))
        .send()
        .await
        .expect("GET");
    assert_eq!(health.status().as_u16(), 200);
}

/// The quarantine over HTTP and the `reprocess` command: a Lightspeed sale arriving before the retailer's
/// currency is configured is acknowledged and kept; after the fix (a restart with the currency) one
/// `pos-local reprocess` captures it, it reaches the stock ledger once, and a second run finds nothing.
#[tokio::test]
async fn a_quarantined_delivery_is_reprocessed_once_after_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let sale = samples::lightspeed(
        "sale.update",
        &samples::lightspeed_sale("ls-e2e-q", 1, "CLOSED"),
        None,
    );
    {
        let server = spawn(dir.path(), &["--lightspeed-currency", "none"]);
        let (status, body) = pos_local::client::post(&client, &server.url, &sale)
            .await
            .expect("post");
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"status":"quarantined"}"#)
        );
        let q = get(&format!("{}/_local/quarantine", server.url)).await;
        assert_eq!(q.as_array().map(Vec::len), Some(1), "{q}");
        assert!(q[0]["resolution"].is_null());
    }
    let server = spawn(dir.path(), &[]);
    let reprocess = || {
        Command::new(env!("CARGO_BIN_EXE_pos-local"))
            .args(["reprocess", "--url", &server.url])
            .output()
            .expect("reprocess runs")
    };
    let out = reprocess();
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON line per delivery"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["outcome"], "accepted", "{lines:?}");
    let out = reprocess();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing left open");
    let q = get(&format!("{}/_local/quarantine", server.url)).await;
    assert_eq!(q[0]["resolution"]["outcome"], "accepted", "{q}");
    // One sale captured, applied once by stock-sync.
    pos_local::client::wait_drained(&client, &server.url, std::time::Duration::from_secs(20))
        .await
        .expect("drained");
    let sales = get(&format!("{}/_local/sales", server.url)).await;
    assert_eq!(sales.as_array().map(Vec::len), Some(1), "{sales}");
    let events = get(&format!("{}/_local/events", server.url)).await;
    let published: Vec<&str> = events
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .filter(|id| id.starts_with("evt:sale:lightspeed:"))
        .collect();
    assert_eq!(published.len(), 1, "{events}");
    // stock-sync applied it once: every sold unit is off the shelf, once.
    let sold: i64 = sales[0]["event"]["data"]["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter(|l| l["sku"].is_string())
        .filter_map(|l| l["quantity"].as_i64())
        .sum();
    let stock = get(&format!("{}/_local/stock", server.url)).await;
    let on_hand: i64 = stock
        .as_array()
        .expect("stock")
        .iter()
        .filter_map(|row| row["on_hand"].as_i64())
        .sum();
    assert!(sold > 0, "{sales}");
    assert_eq!(on_hand, -sold, "{stock}");
}
