//! The OpenAPI document is generated from the code; the checked-in copy must match it.

#[test]
fn docs_openapi_json_is_up_to_date() {
    let generated = pos_shared::api::openapi_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if std::env::var("UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
        return;
    }
    assert!(
        on_disk == generated,
        "docs/openapi.json is out of date: run `UPDATE_OPENAPI=1 cargo test -p pos-shared --test openapi`"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).expect("JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1"
    );
    for path in [
        "/v1/health",
        "/v1/sales/{sale_id}",
        "/v1/sales/{sale_id}/deliveries",
        "/v1/stores/{store_id}/sales",
        "/v1/stores/{store_id}/stock/{sku}",
        "/v1/members/{member_id}/loyalty",
        "/v1/members/{member_id}/loyalty/ledger",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
}
