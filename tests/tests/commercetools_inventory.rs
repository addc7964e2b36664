//! commercetools inventory against commercetools' own emulator: stock movements of sales, returns and
//! adjustments applied once per (event, line) under the entries' version checks, and the fence that
//! tells, after a lost answer, whether an update applied.

use pos_shared::delivery::breaker::{BreakerConfig, CircuitBreaker, MemoryBreakerStore};
use pos_shared::delivery::client::DestinationClient;
use pos_shared::delivery::commercetools::CommercetoolsConfig;
use pos_shared::delivery::engine::{Deliverer, Outcome};
use pos_shared::delivery::inventory::{CommercetoolsInventory, NAME};
use pos_shared::delivery::ledger::{
    DeliveryEntry, DeliveryLedger, DeliveryStatus, MemoryDeliveryLedger,
};
use pos_shared::delivery::retry::RetryPolicy;
use pos_shared::model::EventEnvelope;
use pos_shared::ports::{Clock, SystemClock};
use pos_shared::samples;
use pos_tests::ctp::Emulator;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const PROJECT: &str = "pos-inv";

struct Rig {
    emulator: Emulator,
    http: DestinationClient,
    ledger: Arc<MemoryDeliveryLedger>,
    engine: Deliverer,
}

fn rig(emulator: Emulator) -> Rig {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let http = emulator.client(PROJECT);
    let ledger = Arc::new(MemoryDeliveryLedger::default());
    let inventory = CommercetoolsInventory::new(
        http.clone(),
        CommercetoolsConfig {
            project_key: PROJECT.into(),
            api_url: emulator.url.clone(),
            auth_url: emulator.url.clone(),
        },
        ledger.clone(),
        clock.clone(),
    );
    let engine = Deliverer::new(
        Arc::new(inventory),
        ledger.clone(),
        CircuitBreaker::new(
            Arc::new(MemoryBreakerStore::default()),
            clock.clone(),
            BreakerConfig::default(),
        ),
        RetryPolicy {
            in_process: pos_shared::backoff::Backoff {
                attempts: 3,
                base: Duration::from_millis(5),
                cap: Duration::from_millis(20),
            },
            ..RetryPolicy::default()
        },
        clock,
    );
    Rig {
        emulator,
        http,
        ledger,
        engine,
    }
}

impl Rig {
    /// The entry of `sku` in `store`'s channel, asserting there is at most one.
    async fn entry(&self, store: &str, sku: &str) -> Option<Value> {
        let url = format!("{}/{PROJECT}/channels", self.emulator.url);
        let channels = self
            .http
            .send(|h| h.get(&url))
            .await
            .expect("channels")
            .json()
            .expect("json");
        let channel = channels["results"]
            .as_array()?
            .iter()
            .find(|c| c["key"] == store)?["id"]
            .clone();
        let predicate = format!("sku=\"{sku}\" and supplyChannel(id={channel})");
        let url = reqwest::Url::parse_with_params(
            &format!("{}/{PROJECT}/inventory", self.emulator.url),
            [("where", predicate)],
        )
        .expect("url");
        let entries = self
            .http
            .send(|h| h.get(url.clone()))
            .await
            .expect("inventory")
            .json()
            .expect("json");
        let found: Vec<Value> = entries["results"]
            .as_array()?
            .iter()
            .filter(|e| e["sku"] == sku && e["supplyChannel"]["id"] == channel)
            .cloned()
            .collect();
        assert!(found.len() <= 1, "one entry per SKU and channel: {found:?}");
        found.into_iter().next()
    }

    async fn on_hand(&self, store: &str, sku: &str) -> i64 {
        self.entry(store, sku)
            .await
            .and_then(|e| e["quantityOnStock"].as_i64())
            .expect("an entry")
    }

    /// An update sent by someone else (or ours whose answer was lost).
    async fn update(&self, entry: &Value, action: Value) {
        let url = format!(
            "{}/{PROJECT}/inventory/{}",
            self.emulator.url,
            entry["id"].as_str().unwrap_or_default()
        );
        let body = json!({"version": entry["version"], "actions": [action]});
        let reply = self
            .http
            .send(|h| h.post(&url).json(&body))
            .await
            .expect("update");
        assert!(reply.status.is_success(), "{:?}", reply.status);
    }

    /// Records the fence an earlier attempt wrote before its answer was lost.
    async fn fence(&self, event: &EventEnvelope, line: &str, entry: &Value) {
        let mut marker = DeliveryEntry::pending(
            event.event_id.clone(),
            None,
            format!("{NAME}/{line}"),
            samples::sample_time(),
        );
        marker.status = DeliveryStatus::Retrying;
        marker.attempts = 1;
        marker.version = 1;
        marker.remote_id = entry["id"].as_str().map(str::to_owned);
        marker.remote_version = Some(format!(
            "{}@{}",
            entry["version"].as_u64().unwrap_or_default(),
            entry["quantityOnStock"].as_i64().unwrap_or_default()
        ));
        assert!(self.ledger.put(&marker, None).await.expect("marker"));
    }
}

fn event(msg: &str, body: &Value) -> EventEnvelope {
    samples::envelope_of(&samples::standard(msg, body, samples::sample_time(), None))
        .expect("an event")
}

fn sale(id: &str, store: &str, lines: &[(&str, u32)]) -> EventEnvelope {
    let mut body = samples::standard_sale(id, store, None, lines.len());
    for (i, (sku, qty)) in lines.iter().enumerate() {
        body["data"]["lines"][i]["sku"] = json!(sku);
        body["data"]["lines"][i]["quantity"] = json!(qty);
    }
    // Totals do not matter to inventory; keep the sale valid: one unit price per line, no discounts.
    let total: u32 = lines.iter().map(|(_, q)| q * 1250).sum();
    body["data"]["total"] = json!(format!("{}.{:02}", total / 100, total % 100));
    event(&format!("m-{id}"), &body)
}

fn adjustment(id: &str, sku: &str, field: &str, units: i64) -> EventEnvelope {
    event(
        &format!("m-{id}"),
        &json!({"type": "stock.adjusted", "timestamp": "2026-01-15T10:00:00Z", "data": {
            "adjustment_id": id, "store_id": "inv-store", "sku": sku,
            "occurred_at": "2026-01-15T09:00:00Z", field: units}}),
    )
}

async fn delivered(rig: &Rig, e: &EventEnvelope) {
    let out = rig.engine.deliver(e, 1).await.expect("deliver");
    let why = rig
        .ledger
        .get(&e.event_id, NAME)
        .await
        .expect("ledger")
        .and_then(|entry| entry.last_error);
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}: {why:?}");
}

#[tokio::test]
async fn movements_apply_once_per_line_and_a_lost_answer_is_told_by_its_fence() {
    let Some(emulator) = Emulator::start() else {
        return;
    };
    let rig = rig(emulator);

    // A sale: the store's channel and the entries are created, each line removed once.
    let first = sale("inv-1", "inv-store", &[("INV-A", 1), ("INV-B", 3)]);
    delivered(&rig, &first).await;
    assert_eq!(rig.on_hand("inv-store", "INV-A").await, -1);
    assert_eq!(rig.on_hand("inv-store", "INV-B").await, -3);
    assert_eq!(
        rig.engine.deliver(&first, 2).await.expect("again"),
        Outcome::Skipped
    );
    assert_eq!(
        rig.on_hand("inv-store", "INV-B").await,
        -3,
        "redelivery: nothing"
    );

    // A restocked return puts back; a count sets; a delta after it moves from there.
    let mut ret = samples::standard_return("inv-r1", "inv-1", "inv-store");
    ret["data"]["lines"][0]["sku"] = json!("INV-A");
    delivered(&rig, &event("m-inv-r1", &ret)).await;
    assert_eq!(rig.on_hand("inv-store", "INV-A").await, 0);
    delivered(&rig, &adjustment("inv-c1", "INV-A", "on_hand", 20)).await;
    delivered(&rig, &adjustment("inv-d1", "INV-A", "delta", -2)).await;
    assert_eq!(rig.on_hand("inv-store", "INV-A").await, 18);

    // An earlier attempt's update landed but its answer was lost: the fence shows it applied.
    let lost = sale("inv-2", "inv-store", &[("INV-A", 5)]);
    let entry = rig.entry("inv-store", "INV-A").await.expect("entry");
    rig.fence(&lost, "line:1", &entry).await;
    rig.update(&entry, json!({"action": "removeQuantity", "quantity": 5}))
        .await;
    delivered(&rig, &lost).await;
    assert_eq!(
        rig.on_hand("inv-store", "INV-A").await,
        13,
        "removed once, not twice"
    );

    // An earlier attempt fenced but its update never arrived: sent now, once.
    let never = sale("inv-3", "inv-store", &[("INV-A", 1)]);
    let entry = rig.entry("inv-store", "INV-A").await.expect("entry");
    rig.fence(&never, "line:1", &entry).await;
    delivered(&rig, &never).await;
    assert_eq!(rig.on_hand("inv-store", "INV-A").await, 12);

    // The answer was lost and another writer changed the entry too: it cannot be told whether ours
    // applied, so nothing is sent and the record is refused for an operator to reconcile.
    let unsure = sale("inv-4", "inv-store", &[("INV-B", 1)]);
    let entry = rig.entry("inv-store", "INV-B").await.expect("entry");
    rig.fence(&unsure, "line:1", &entry).await;
    rig.update(&entry, json!({"action": "removeQuantity", "quantity": 1}))
        .await;
    let moved = rig.entry("inv-store", "INV-B").await.expect("entry");
    rig.update(&moved, json!({"action": "addQuantity", "quantity": 10}))
        .await;
    let out = rig.engine.deliver(&unsure, 1).await.expect("deliver");
    let Outcome::Dead(reason) = out else {
        panic!("{out:?}");
    };
    assert!(reason.contains("reconcile"), "{reason}");
    assert_eq!(rig.on_hand("inv-store", "INV-B").await, 6);

    // Concurrent sales of one SKU race on its version: 409s are re-read, every unit is removed once.
    let sales: Vec<EventEnvelope> = (0..5)
        .map(|i| sale(&format!("inv-c{i}"), "inv-store", &[("INV-C", 1)]))
        .collect();
    delivered(&rig, &sales[0]).await;
    let (a, b, c, d) = tokio::join!(
        rig.engine.deliver(&sales[1], 1),
        rig.engine.deliver(&sales[2], 1),
        rig.engine.deliver(&sales[3], 1),
        rig.engine.deliver(&sales[4], 1)
    );
    for r in [a, b, c, d] {
        let out = r.expect("deliver");
        if let Outcome::Requeue(_) = out {
            continue;
        }
        assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    }
    // Whatever was requeued by persistent conflicts is delivered on its next receive.
    for s in &sales {
        let out = rig.engine.deliver(s, 2).await.expect("deliver");
        assert!(
            matches!(out, Outcome::Delivered(_) | Outcome::Skipped),
            "{out:?}"
        );
    }
    assert_eq!(rig.on_hand("inv-store", "INV-C").await, -5);
}
