//! GraphQL over HTTP in process: queries, per-field scopes, limits, introspection, errors.

use super::GraphqlConfig;
use crate::api::tests::{ALL, Fixture, Reply, call, token};
use crate::api::{ApiState, graphql};
use axum::body::Body;
use http::Request;
use serde_json::{Value, json};
use std::sync::Arc;

async fn post(state: &Arc<ApiState>, token: Option<&str>, body: &Value) -> Reply {
    let mut req = Request::post("/graphql").header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    call(
        state,
        req.body(Body::from(body.to_string())).expect("request"),
    )
    .await
}

pub(crate) async fn query(state: &Arc<ApiState>, token: &str, q: &str) -> Reply {
    post(state, Some(token), &json!({ "query": q })).await
}

fn codes(r: &Reply) -> Vec<String> {
    r.body["errors"]
        .as_array()
        .map(|errs| {
            errs.iter()
                .map(|e| {
                    e["extensions"]["code"]
                        .as_str()
                        .unwrap_or("none")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn sales_stock_and_loyalty_read_back_over_graphql() {
    let f = Fixture::new(Default::default()).await;
    let t = token(ALL);
    let r = query(
        &f.state,
        &t,
        r#"{
          sale(saleId: "dev-till:s-2") { saleId storeId occurredAt vendor total { minor currency amount }
                                lines { sku quantity unitPrice { amount } } }
          missing: sale(saleId: "nope") { saleId }
          storeSales(storeId: "store-a", first: 2) { items { saleId } nextCursor }
          stockLevel(storeId: "store-a", sku: "SKU-001") { onHand }
          storeStock(storeId: "store-a") { items { sku onHand } nextCursor }
          member(memberId: "m-1") { memberId balance ledger(first: 3) { items { eventId kind points saleId } nextCursor } }
        }"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("errors").is_none(), "{}", r.body);
    let d = &r.body["data"];
    assert_eq!(d["sale"]["saleId"], "dev-till:s-2");
    assert_eq!(d["sale"]["vendor"], "standard");
    assert_eq!(d["sale"]["total"]["minor"], 2500);
    assert_eq!(d["sale"]["total"]["amount"], "25.00");
    assert_eq!(d["sale"]["lines"][0]["unitPrice"]["amount"], "12.50");
    assert!(d["missing"].is_null(), "unknown id resolves to null");
    assert_eq!(d["storeSales"]["items"][0]["saleId"], "dev-till:s-1");
    assert_eq!(d["stockLevel"]["onHand"], -3);
    assert_eq!(d["storeStock"]["items"].as_array().map(Vec::len), Some(2));
    let ledger = &d["member"]["ledger"];
    assert_eq!(ledger["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(ledger["items"][0]["kind"], "earn");
    // The ledger's cursor leads to its last entry, as over REST.
    let r = post(
        &f.state,
        Some(&t),
        &json!({
            "query": "query($c: String) { member(memberId: \"m-1\") { ledger(first: 3, after: $c) { items { eventId } nextCursor } } }",
            "variables": { "c": ledger["nextCursor"].as_str().expect("more") }
        }),
    )
    .await;
    let last = &r.body["data"]["member"]["ledger"];
    assert_eq!(
        last["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.body
    );
    assert!(last["nextCursor"].is_null());
    assert!(ledger["items"][2]["eventId"].as_str() < last["items"][0]["eventId"].as_str());

    // The cursor of the first page leads to the last one, exactly as over REST.
    let cursor = d["storeSales"]["nextCursor"].as_str().expect("more");
    let r = post(
        &f.state,
        Some(&t),
        &json!({
            "query": "query($c: String) { storeSales(storeId: \"store-a\", first: 2, after: $c) { items { saleId } nextCursor } }",
            "variables": { "c": cursor }
        }),
    )
    .await;
    assert_eq!(
        r.body["data"]["storeSales"]["items"][0]["saleId"],
        "dev-till:s-3"
    );
    assert!(r.body["data"]["storeSales"]["nextCursor"].is_null());
}

#[tokio::test]
async fn a_sale_s_deliveries_read_back_over_graphql_behind_their_scope() {
    let f = Fixture::new(Default::default()).await;
    let r = query(
        &f.state,
        &token("deliveries:read"),
        r#"{
          deliveries(saleId: "dev-till:s-1") { eventId destination status attempts remoteId remoteVersion lastError updatedAt }
          none: deliveries(saleId: "dev-till:s-3") { destination }
          unknown: deliveries(saleId: "no-such-sale") { destination }
        }"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("errors").is_none(), "{}", r.body);
    assert_eq!(
        r.body["data"],
        json!({
            "deliveries": [
                {"eventId": "evt:sale:dev-till:s-1", "destination": "commercetools", "status": "delivered",
                 "attempts": 1, "remoteId": "order-1", "remoteVersion": "1", "lastError": null,
                 "updatedAt": "2026-01-15T10:00:00+00:00"},
                {"eventId": "evt:sale:dev-till:s-1", "destination": "dynamics", "status": "retrying",
                 "attempts": 3, "remoteId": null, "remoteVersion": null,
                 "lastError": "http 503 (retryable)", "updatedAt": "2026-01-15T10:00:00+00:00"}
            ],
            "none": [],
            "unknown": null
        })
    );
    // Another scope: FORBIDDEN for deliveries, the allowed field still answers.
    let r = query(
        &f.state,
        &token("stock:read"),
        r#"{ deliveries(saleId: "dev-till:s-1") { destination } stockLevel(storeId: "store-a", sku: "SKU-001") { onHand } }"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(codes(&r), ["FORBIDDEN"]);
    assert!(r.body["data"]["deliveries"].is_null());
    assert_eq!(r.body["data"]["stockLevel"]["onHand"], -3);
    let r = query(
        &f.state,
        &token(ALL),
        r#"{ deliveries(saleId: "bad id") { destination } }"#,
    )
    .await;
    assert_eq!(codes(&r), ["BAD_USER_INPUT"]);
    let r = query(
        &Fixture::broken(),
        &token(ALL),
        r#"{ deliveries(saleId: "dev-till:s-1") { destination } }"#,
    )
    .await;
    assert_eq!(codes(&r), ["UNAVAILABLE"]);
    assert!(!r.body.to_string().contains("secret-internal-detail"));
}

#[tokio::test]
async fn the_token_is_required_and_each_field_needs_its_scope() {
    let f = Fixture::new(Default::default()).await;
    let q = json!({ "query": "{ sale(saleId: \"dev-till:s-1\") { saleId } }" });
    let r = post(&f.state, None, &q).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.content_type, "application/problem+json");
    assert_eq!(r.www_authenticate.as_deref(), Some("Bearer"));
    let r = post(&f.state, Some("x.y.z"), &q).await;
    assert_eq!(r.status, 401);

    // Stock only: the sale is refused, the stock level is served.
    let r = query(
        &f.state,
        &token("stock:read"),
        r#"{ sale(saleId: "dev-till:s-1") { saleId } stockLevel(storeId: "store-a", sku: "SKU-001") { onHand } }"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(codes(&r), ["FORBIDDEN"]);
    assert!(r.body["data"]["sale"].is_null());
    assert_eq!(r.body["data"]["stockLevel"]["onHand"], -3);
    let r = query(
        &f.state,
        &token("sales:read"),
        r#"{ member(memberId: "m-1") { balance } }"#,
    )
    .await;
    assert_eq!(codes(&r), ["FORBIDDEN"]);
}

#[tokio::test]
async fn bad_input_is_a_client_error_never_a_server_error() {
    let f = Fixture::new(Default::default()).await;
    let t = token(ALL);
    for q in [
        r#"{ sale(saleId: "bad id") { saleId } }"#,
        r#"{ storeSales(storeId: "store-a", first: 0) { nextCursor } }"#,
        r#"{ storeSales(storeId: "store-a", from: "yesterday") { nextCursor } }"#,
        r#"{ storeSales(storeId: "store-a", after: "forged") { nextCursor } }"#,
        r#"{ storeStock(storeId: "store-a", first: 101) { nextCursor } }"#,
        r#"{ stockLevel(storeId: "store-a", sku: "bad\tsku") { onHand } }"#,
        r#"{ member(memberId: "bad member") { balance } }"#,
        r#"{ member(memberId: "m-1") { ledger(first: 0) { nextCursor } } }"#,
        r#"{ member(memberId: "m-1") { ledger(first: 101) { nextCursor } } }"#,
        r#"{ member(memberId: "m-1") { ledger(after: "forged") { nextCursor } } }"#,
    ] {
        let r = query(&f.state, &t, q).await;
        assert_eq!(r.status, 200, "{q}");
        assert_eq!(codes(&r), ["BAD_USER_INPUT"], "{q}: {}", r.body);
    }
    // Refused as a whole: 400.
    for q in [
        "{ sale(saleId: ",
        "{ noSuchField }",
        r#"{ sale(saleId: "dev-till:s-1") { noSuchField } }"#,
        "mutation { x }",
    ] {
        let r = query(&f.state, &t, q).await;
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(r.body["errors"].is_array(), "{q}");
    }
    let r = post(&f.state, Some(&t), &json!({ "nothing": true })).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.content_type, "application/problem+json");
    let bad_json = Request::post("/graphql")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {t}"))
        .body(Body::from("{not json"))
        .expect("request");
    assert_eq!(call(&f.state, bad_json).await.status, 400);
    let text = Request::post("/graphql")
        .header("content-type", "text/plain")
        .header("authorization", format!("Bearer {t}"))
        .body(Body::from("{ __typename }"))
        .expect("request");
    assert_eq!(call(&f.state, text).await.status, 415);
}

#[tokio::test]
async fn depth_and_complexity_are_limited() {
    let f = Fixture::new(GraphqlConfig {
        max_depth: 3,
        max_complexity: 60,
        introspection: false,
    })
    .await;
    let t = token(ALL);
    // Depth 4: storeSales > items > lines > unitPrice > amount.
    let r = query(
        &f.state,
        &t,
        r#"{ storeSales(storeId: "store-a", first: 1) { items { lines { unitPrice { amount } } } } }"#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.to_string().contains("nested too deep"), "{}", r.body);
    // Within depth, but 100 items × their fields is too costly.
    let r = query(
        &f.state,
        &t,
        r#"{ storeStock(storeId: "store-a", first: 100) { items { sku onHand } } }"#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.to_string().contains("too complex"), "{}", r.body);
    let r = query(
        &f.state,
        &t,
        r#"{ storeStock(storeId: "store-a", first: 10) { items { sku onHand } } }"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn introspection_only_when_configured() {
    let t = token(ALL);
    let off = Fixture::new(Default::default()).await;
    let r = query(&off.state, &t, "{ __schema { queryType { name } } }").await;
    // async-graphql answers disabled introspection with nulls: nothing of the schema is revealed.
    assert_eq!(r.body, json!({ "data": { "__schema": null } }));
    let r = query(
        &off.state,
        &t,
        r#"{ __type(name: "Sale") { fields { name } } }"#,
    )
    .await;
    assert_eq!(r.body, json!({ "data": { "__type": null } }));
    let on = Fixture::new(GraphqlConfig {
        introspection: true,
        ..Default::default()
    })
    .await;
    let r = query(&on.state, &t, "{ __schema { queryType { name } } }").await;
    assert_eq!(r.body["data"]["__schema"]["queryType"]["name"], "QueryRoot");
}

#[tokio::test]
async fn a_store_that_is_down_is_unavailable_without_internals() {
    let s = Fixture::broken();
    let r = query(
        &s,
        &token(ALL),
        r#"{ sale(saleId: "dev-till:s-1") { saleId } stockLevel(storeId: "a", sku: "b") { onHand } }"#,
    )
    .await;
    assert_eq!(codes(&r), ["UNAVAILABLE", "UNAVAILABLE"]);
    assert!(!r.body.to_string().contains("secret-internal-detail"));
}

#[test]
fn docs_schema_graphql_is_up_to_date() {
    let generated = graphql::sdl();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema.graphql");
    if std::env::var("UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write docs/schema.graphql");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/schema.graphql is out of date: run `UPDATE_OPENAPI=1 cargo test -p pos-shared graphql`"
    );
}
