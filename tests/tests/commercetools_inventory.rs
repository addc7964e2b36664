//! commercetools inventory against commercetools' own emulator: stock movements of sales, returns and
//! adjustments applied once per (event, line) under the entries' version checks, and the marker in the
//! entry itself that tells, after a lost answer, whether an update applied.

use pos_shared::delivery::breaker::{BreakerConfig, CircuitBreaker, MemoryBreakerStore};
use pos_shared::delivery::client::DestinationClient;
use pos_shared::delivery::commercetools::CommercetoolsConfig;
use pos_shared::delivery::engine::{Deliverer, Outcome};
use pos_shared::delivery::inventory::{
    CommercetoolsInventory, MARKER_FIELD, MARKER_TYPE, MARKERS_KEPT, NAME,
};
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
    async fn entry(&self, store: &str, sku: &str) -> Option<Value> {
        self.emulator.inventory_entry(PROJECT, store, sku).await
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

    /// Records what an earlier attempt wrote before its update left (the version it was sent against).
    async fn sent(&self, event: &EventEnvelope, line: &str, entry: &Value) {
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
        marker.remote_version = Some(entry["version"].as_u64().unwrap_or_default().to_string());
        assert!(self.ledger.put(&marker, None).await.expect("marker"));
    }

    /// The update our earlier attempt sent (movement and marker together), landed but unanswered.
    async fn lost_update(&self, event: &EventEnvelope, line: &str, entry: &Value, movement: Value) {
        let mut applied: Vec<Value> = entry["custom"]["fields"][MARKER_FIELD]
            .as_array()
            .cloned()
            .unwrap_or_default();
        applied.push(json!(format!("{}/{line}", event.event_id)));
        let url = format!(
            "{}/{PROJECT}/inventory/{}",
            self.emulator.url,
            entry["id"].as_str().unwrap_or_default()
        );
        let body = json!({"version": entry["version"], "actions": [movement, {
            "action": "setCustomType", "type": {"typeId": "type", "key": MARKER_TYPE},
            "fields": {MARKER_FIELD: applied}}]});
        let reply = self
            .http
            .send(|h| h.post(&url).json(&body))
            .await
            .expect("update");
        assert!(reply.status.is_success(), "{:?}", reply.status);
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
async fn movements_apply_once_per_line_and_a_lost_answer_is_told_by_the_entrys_marker() {
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

    // An earlier attempt's update landed but its answer was lost: the entry's marker shows it applied.
    let lost = sale("inv-2", "inv-store", &[("INV-A", 5)]);
    let entry = rig.entry("inv-store", "INV-A").await.expect("entry");
    rig.sent(&lost, "line:1", &entry).await;
    rig.lost_update(
        &lost,
        "line:1",
        &entry,
        json!({"action": "removeQuantity", "quantity": 5}),
    )
    .await;
    // Another writer moves the same SKU by the same amount after it: no guessing from quantities.
    let moved = rig.entry("inv-store", "INV-A").await.expect("entry");
    rig.update(&moved, json!({"action": "removeQuantity", "quantity": 5}))
        .await;
    delivered(&rig, &lost).await;
    assert_eq!(
        rig.on_hand("inv-store", "INV-A").await,
        8,
        "ours removed once, not twice, beside the other writer's"
    );

    // An earlier attempt's update never arrived, and another writer changed the entry meanwhile: no
    // marker, so it did not apply: sent now, once.
    let never = sale("inv-3", "inv-store", &[("INV-A", 1)]);
    let entry = rig.entry("inv-store", "INV-A").await.expect("entry");
    rig.sent(&never, "line:1", &entry).await;
    rig.update(&entry, json!({"action": "addQuantity", "quantity": 10}))
        .await;
    delivered(&rig, &never).await;
    assert_eq!(rig.on_hand("inv-store", "INV-A").await, 17);

    // More updates than the entry keeps markers for came after a lost answer: it cannot be told, so
    // nothing is sent and the record is refused for an operator to reconcile.
    let unsure = sale("inv-4", "inv-store", &[("INV-B", 1)]);
    let entry = rig.entry("inv-store", "INV-B").await.expect("entry");
    rig.sent(&unsure, "line:1", &entry).await;
    for _ in 0..=MARKERS_KEPT {
        let current = rig.entry("inv-store", "INV-B").await.expect("entry");
        rig.update(&current, json!({"action": "addQuantity", "quantity": 1}))
            .await;
    }
    let before = rig.on_hand("inv-store", "INV-B").await;
    let out = rig.engine.deliver(&unsure, 1).await.expect("deliver");
    let Outcome::Dead(reason) = out else {
        panic!("{out:?}");
    };
    assert!(reason.contains("reconcile"), "{reason}");
    assert_eq!(
        rig.on_hand("inv-store", "INV-B").await,
        before,
        "nothing sent"
    );

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
