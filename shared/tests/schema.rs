//! The published JSON Schema of the Standard Webhooks body (`events/schemas/`) names exactly the fields
//! the parser accepts (the parser refuses unknown fields, so a drift would reject valid tills' data).

use pos_shared::vendors::standard::{
    StandardReturn, StandardReturnLine, StandardSale, StandardSaleLine, StandardStockAdjustment,
};
use serde_json::Value;
use std::collections::BTreeSet;

fn schema() -> Value {
    let text = include_str!("../../events/schemas/standard-webhook.schema.json");
    serde_json::from_str(text).expect("schema is JSON")
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn parse<T: serde::de::DeserializeOwned + serde::Serialize>(v: Value) -> Value {
    let typed: T = serde_json::from_value(v).expect("example parses");
    serde_json::to_value(typed).expect("serialises")
}

#[test]
fn schema_properties_match_the_parser_fields() {
    let s = schema();
    let defs = &s["$defs"];
    let sale_line = parse::<StandardSaleLine>(
        serde_json::json!({"line_id": "1", "sku": "A", "quantity": 1, "unit_price": "1.00", "discount": "0"}),
    );
    let sale = parse::<StandardSale>(serde_json::json!({
        "sale_id": "s", "store_id": "st", "occurred_at": "2026-01-01T00:00:00Z", "member_id": "m", "currency": "EUR",
        "channel": "c", "lines": [sale_line.clone()], "total": "1.00", "tax": "0"
    }));
    assert_eq!(keys(&sale), keys(&defs["sale"]["properties"]));
    assert_eq!(
        keys(&sale_line),
        keys(&defs["sale"]["properties"]["lines"]["items"]["properties"])
    );
    let ret_line = parse::<StandardReturnLine>(
        serde_json::json!({"line_id": "1", "sku": "A", "quantity": 1, "restock": true, "refund": "1.00"}),
    );
    let ret = parse::<StandardReturn>(serde_json::json!({
        "return_id": "r", "sale_id": "s", "store_id": "st", "occurred_at": "2026-01-01T00:00:00Z", "member_id": "m",
        "currency": "EUR", "channel": "c", "lines": [ret_line.clone()], "total_refund": "1.00"
    }));
    assert_eq!(keys(&ret), keys(&defs["return"]["properties"]));
    assert_eq!(
        keys(&ret_line),
        keys(&defs["return"]["properties"]["lines"]["items"]["properties"])
    );
    let adj = parse::<StandardStockAdjustment>(serde_json::json!({
        "adjustment_id": "a", "store_id": "st", "sku": "A", "occurred_at": "2026-01-01T00:00:00Z", "on_hand": 1, "delta": 1
    }));
    assert_eq!(keys(&adj), keys(&defs["stock_adjustment"]["properties"]));
    assert_eq!(
        s["properties"]["type"]["enum"],
        serde_json::json!(["sale.completed", "return.completed", "stock.adjusted"])
    );
}
