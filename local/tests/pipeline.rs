//! The whole pipeline through the `pos-local` binary: a burst of signed webhooks with duplicates,
//! out-of-order returns and a poison message ends with stock and points exactly as the rules say, the
//! poison message in the DLQ, and nothing else lost; `pos-local redrive` brings dead letters back.

use pos_shared::samples;
use serde_json::Value;
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

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

/// Waits until no queue has a visible or in-flight message, then returns the queues.
async fn drained(url: &str) -> Value {
    let client = reqwest::Client::new();
    let done = pos_local::client::wait_drained(&client, url, Duration::from_secs(60))
        .await
        .expect("queues readable");
    let queues = get(&format!("{url}/_local/queues")).await;
    assert!(done, "pipeline did not drain: {queues}");
    queues
}

#[tokio::test]
async fn a_burst_with_duplicates_reorders_and_poison_ends_exactly_as_the_rules_say() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = spawn(dir.path(), &["--visibility-timeout-ms", "200"]);
    let client = reqwest::Client::new();
    let now = chrono::Utc::now();
    let post = |d: pos_shared::samples::SignedDelivery| {
        let (client, url) = (client.clone(), server.url.clone());
        async move {
            pos_local::client::post(&client, &url, &d)
                .await
                .expect("post")
                .0
        }
    };
    let sale = |i: usize| {
        let body = samples::standard_sale(
            &format!("e2e-s{i}"),
            "store-001",
            Some(&format!("m-{}", i % 3)),
            1 + i % 3,
        );
        samples::standard(&format!("msg_s{i}"), &body, now, None)
    };
    let ret = |i: usize| {
        samples::standard(
            &format!("msg_r{i}"),
            &samples::standard_return(&format!("e2e-r{i}"), &format!("e2e-s{i}"), "store-001"),
            now,
            None,
        )
    };

    // Returns 0 and 1 arrive before their sales (out of order).
    assert_eq!(post(ret(0)).await, 202);
    assert_eq!(post(ret(1)).await, 202);
    // Sales in a shuffled order, each delivered twice.
    let order = [
        7, 3, 19, 0, 12, 5, 1, 16, 9, 2, 14, 10, 4, 18, 6, 11, 8, 15, 13, 17,
    ];
    for i in order {
        assert_eq!(post(sale(i)).await, 202, "sale {i}");
        assert_eq!(post(sale(i)).await, 200, "duplicate of sale {i}");
    }
    for i in 2..5 {
        assert_eq!(post(ret(i)).await, 202);
    }
    assert_eq!(post(ret(4)).await, 200, "duplicate return");
    // A poison message on the stock-sync queue.
    let resp = client
        .post(format!("{}/_local/queues/stock-sync/messages", server.url))
        .body("{poison")
        .send()
        .await
        .expect("inject");
    assert_eq!(resp.status().as_u16(), 202);

    let queues = drained(&server.url).await;
    let dlq = |name: &str| -> Vec<Value> {
        queues
            .as_array()
            .expect("queues")
            .iter()
            .find(|q| q["name"] == name)
            .expect("queue")["dlq"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        dlq("stock-sync").len(),
        1,
        "the poison message waits in the DLQ"
    );
    assert_eq!(dlq("stock-sync")[0]["body"], "{poison");
    assert!(
        dlq("loyalty-accrual").is_empty(),
        "out-of-order returns were retried, not dead-lettered"
    );

    // Stock: every sale takes one unit of SKU-001..SKU-00n (n = 1 + i % 3); returns restock SKU-001.
    let stock: HashMap<String, i64> = get(&format!("{}/_local/stock", server.url))
        .await
        .as_array()
        .expect("stock")
        .iter()
        .map(|l| {
            (
                l["sku"].as_str().unwrap_or_default().to_owned(),
                l["on_hand"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(stock.get("SKU-001"), Some(&(-20 + 5)));
    assert_eq!(stock.get("SKU-002"), Some(&-13));
    assert_eq!(stock.get("SKU-003"), Some(&-6));

    // Points: 1 per EUR, floored per sale (12.50 -> 12, 25.00 -> 25, 37.50 -> 37); each return of 12.50
    // reverses floor(points x 12.50 / sale amount) = 12.
    let balances: HashMap<String, i64> = get(&format!("{}/_local/loyalty", server.url))
        .await
        .as_array()
        .expect("balances")
        .iter()
        .map(|b| {
            (
                b["member_id"].as_str().unwrap_or_default().to_owned(),
                b["balance"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(balances.get("m-0"), Some(&(7 * 12 - 2 * 12)));
    assert_eq!(balances.get("m-1"), Some(&(7 * 25 - 2 * 12)));
    assert_eq!(balances.get("m-2"), Some(&(6 * 37 - 12)));
    let ledger = get(&format!("{}/_local/loyalty/m-0", server.url)).await;
    assert_eq!(
        ledger["entries"].as_array().map(Vec::len),
        Some(9),
        "7 sales + 2 returns, one entry each"
    );

    // Everything captured was published; nothing is pending in the outbox.
    assert_eq!(
        get(&format!("{}/_local/outbox", server.url))
            .await
            .as_array()
            .map(Vec::len),
        Some(0)
    );

    // The operator redrives the DLQ: the poison fails again and returns to the DLQ; nothing else changes.
    let out = Command::new(env!("CARGO_BIN_EXE_pos-local"))
        .args(["redrive", "stock-sync", "--url", &server.url])
        .output()
        .expect("redrive runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"redriven\":1"));
    let queues = drained(&server.url).await;
    let back = queues
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["name"] == "stock-sync")
        .expect("queue")["dlq"]
        .clone();
    assert_eq!(back.as_array().map(Vec::len), Some(1));
    let unknown = client
        .post(format!("{}/_local/queues/nope/redrive", server.url))
        .send()
        .await
        .expect("post");
    assert_eq!(unknown.status().as_u16(), 404);
}

#[tokio::test]
async fn stock_adjustments_reach_the_ledger_counts_and_deltas_in_any_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = spawn(dir.path(), &["--visibility-timeout-ms", "200"]);
    let client = reqwest::Client::new();
    let now = chrono::Utc::now();
    // Minutes after an hour ago (counts older than the move retention are refused as stale).
    let at =
        |m: i64| (now - chrono::Duration::hours(1) + chrono::Duration::minutes(m)).to_rfc3339();
    let adjust = |id: &str, at: &str, change: serde_json::Value| {
        let mut data = serde_json::json!({
            "adjustment_id": id, "store_id": "store-adj", "sku": "TEE RED M", "occurred_at": at
        });
        if let (Some(d), Some(c)) = (data.as_object_mut(), change.as_object()) {
            d.extend(c.clone());
        }
        let body = serde_json::json!({"type": "stock.adjusted", "timestamp": at, "data": data});
        samples::standard(&format!("msg_{id}"), &body, now, None)
    };
    let mut sale = samples::standard_sale("adj-s1", "store-adj", None, 1);
    sale["data"]["lines"][0]["sku"] = "TEE RED M".into();
    sale["data"]["occurred_at"] = at(20).into();
    // Arrival order: a delta after the count, a goods receipt before it, a sale after it, then the count
    // taken at :15, then a sale from before the count (already inside the count).
    let mut early_sale = samples::standard_sale("adj-s0", "store-adj", None, 1);
    early_sale["data"]["lines"][0]["sku"] = "TEE RED M".into();
    early_sale["data"]["occurred_at"] = at(5).into();
    for d in [
        adjust("adj-2", &at(30), serde_json::json!({"delta": 12})),
        adjust("adj-1", &at(0), serde_json::json!({"delta": 100})),
        samples::standard("msg_adj_s1", &sale, now, None),
        adjust("adj-count", &at(15), serde_json::json!({"on_hand": 40})),
        samples::standard("msg_adj_s0", &early_sale, now, None),
    ] {
        let status = pos_local::client::post(&client, &server.url, &d)
            .await
            .expect("post")
            .0;
        assert_eq!(status, 202);
    }
    drained(&server.url).await;
    let level = get(&format!("{}/_local/stock", server.url))
        .await
        .as_array()
        .expect("stock")
        .iter()
        .find(|l| l["sku"] == "TEE RED M")
        .map(|l| l["on_hand"].clone());
    // The count (40) plus what happened after it: the :20 sale (-1) and the :30 receipt (+12).
    assert_eq!(level, Some(serde_json::json!(51)));
}
