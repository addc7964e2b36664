//! commercetools inventory as a destination: every stock movement changes the inventory entry of its SKU
//! and supply channel (the store), exactly once.
//!
//! - **Movements.** A sale removes each SKU line's quantity (`removeQuantity`), a return puts back what
//!   is restocked (`addQuantity`), a `stock.adjusted` delta adds or removes, a count sets the level
//!   (`changeQuantity`). Lines without a SKU move nothing.
//! - **The store as a supply channel**, found by key (created with the `InventorySupply` role when the
//!   store is new) and cached per process. An entry missing for a SKU and channel is created at 0 first.
//! - **Optimistic concurrency.** Every update carries the entry's `version`; a 409 re-reads and tries
//!   again (a few times, then later through the queue).
//! - **Exactly once, per (event, line), proved by the entry itself.** The update that moves the stock
//!   also adds `{event id}/{line}` to the entry's custom field `posApplied` (our custom type
//!   `pos-inventory-markers`, created in the project when missing; an entry that already has another
//!   custom type gets the field set alone, so that type must declare it). Both actions are one update
//!   under one version check: applied together or not at all. So after a lost answer (timeout, 5xx, a
//!   crash) the entry is read again and the marker tells: there → applied, marked done; absent → not
//!   applied, sent again, whatever other writers did meanwhile. The entry keeps the last
//!   [`MARKERS_KEPT`] markers; our ledger also keeps, per line, the entry version the update was sent
//!   against, so when more updates than that came since a lost answer, the movement is refused for good
//!   (the DLQ, the alarm, an operator reconciles with a count) instead of guessed. Never a second
//!   decrement, never a silent loss.
//! - **Counts** set the level when they are delivered: a movement that happened before a count but is
//!   delivered after it is applied on top (stock-sync orders them by time; commercetools has no such
//!   history). Send counts when the store is quiet, or reconcile after.
//!
//! Entries are found with the predicate `sku="…" and supplyChannel(id="…")`: one entry, no paging.
//!
//! The emulator's gaps met here (ARCHITECTURE.md): `limit` and `offset` answer 500 (not sent); a
//! predicate on `supplyChannel` answers 500 once any entry without a channel exists (ours always have
//! one); a channel reference by key is not resolved (ids are sent); a second entry for the same SKU and
//! channel is accepted (the real API answers `DuplicateField`; a duplicate here is re-read and the
//! oldest entry used).

use super::client::DestinationClient;
use super::commercetools::CommercetoolsConfig;
use super::engine::{Destination, Failure, Landed};
use super::ledger::{DeliveryEntry, DeliveryLedger, DeliveryStatus};
use crate::model::{CanonicalEvent, EventEnvelope, StockChange};
use crate::ports::Clock;
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The destination's name in the ledger, the breaker and the metrics.
pub const NAME: &str = "commercetools-inventory";

/// How a movement changes an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `addQuantity`.
    Add(i64),
    /// `removeQuantity`.
    Remove(i64),
    /// `changeQuantity` (a count).
    Set(i64),
}

impl Change {
    /// The update action.
    pub fn action(self) -> Value {
        match self {
            Change::Add(q) => json!({"action": "addQuantity", "quantity": q}),
            Change::Remove(q) => json!({"action": "removeQuantity", "quantity": q}),
            Change::Set(q) => json!({"action": "changeQuantity", "quantity": q}),
        }
    }

    /// The quantity on stock after it, from `before`.
    pub fn after(self, before: i64) -> i64 {
        match self {
            Change::Add(q) => before.saturating_add(q),
            Change::Remove(q) => before.saturating_sub(q),
            Change::Set(q) => q,
        }
    }
}

/// One movement of one SKU in one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    /// The marker's key within the event (`line:{id}`, `adjustment`).
    pub key: String,
    /// The store (supply channel key).
    pub store: String,
    /// The SKU.
    pub sku: String,
    /// The change.
    pub change: Change,
}

/// The movements of an event (pure).
pub fn movements(event: &CanonicalEvent) -> Vec<Movement> {
    let movement = |key: String, store: &str, sku: &str, change| Movement {
        key,
        store: store.to_owned(),
        sku: sku.to_owned(),
        change,
    };
    match event {
        CanonicalEvent::SaleCompleted(sale) => sale
            .lines
            .iter()
            .filter_map(|l| {
                let sku = l.sku.as_ref()?;
                Some(movement(
                    format!("line:{}", l.line_id),
                    sale.store_id.as_str(),
                    sku.as_str(),
                    Change::Remove(i64::from(l.quantity.get())),
                ))
            })
            .collect(),
        CanonicalEvent::ReturnCompleted(ret) => ret
            .lines
            .iter()
            .filter(|l| l.restock)
            .filter_map(|l| {
                let sku = l.sku.as_ref()?;
                Some(movement(
                    format!("line:{}", l.line_id),
                    ret.store_id.as_str(),
                    sku.as_str(),
                    Change::Add(i64::from(l.quantity.get())),
                ))
            })
            .collect(),
        CanonicalEvent::StockAdjusted(adj) => {
            let change = match adj.change {
                StockChange::Set { on_hand } => Change::Set(on_hand),
                StockChange::Delta { delta } if delta > 0 => Change::Add(delta),
                StockChange::Delta { delta } if delta < 0 => Change::Remove(-delta),
                StockChange::Delta { .. } => return Vec::new(),
            };
            vec![movement(
                "adjustment".into(),
                adj.store_id.as_str(),
                adj.sku.as_str(),
                change,
            )]
        }
        _ => Vec::new(),
    }
}

/// The custom type (ours) whose field records, on each inventory entry, the movements applied to it.
pub const MARKER_TYPE: &str = "pos-inventory-markers";
/// The field: a set of `{event id}/{line key}`.
pub const MARKER_FIELD: &str = "posApplied";
/// Markers kept per entry: the most recent ones. A read-back after more than this many other updates of
/// the entry cannot tell (the record is refused for reconciliation).
pub const MARKERS_KEPT: usize = 100;

/// An inventory entry as read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    id: String,
    version: u64,
    /// The movements applied to it, oldest first (our custom field).
    applied: Vec<String>,
    /// Its custom type, if it has one.
    custom_type: Option<String>,
}

impl Entry {
    fn of(v: &Value) -> Option<Entry> {
        Some(Entry {
            id: v["id"].as_str()?.to_owned(),
            version: v["version"].as_u64()?,
            applied: v["custom"]["fields"][MARKER_FIELD]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|m| m.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            custom_type: v["custom"]["type"]["id"].as_str().map(str::to_owned),
        })
    }

    fn has(&self, marker: &str) -> bool {
        self.applied.iter().any(|m| m == marker)
    }

    /// The update action recording `marker` beside the movement, in the same atomic update: our type's
    /// field set (the type with it, when the entry has none or ours), or the field alone on an entry
    /// whose own custom type must then declare it.
    fn marker_action(&self, marker: &str, our_type: &str) -> Value {
        let mut kept: Vec<&str> = self.applied.iter().map(String::as_str).collect();
        let skip = (kept.len() + 1).saturating_sub(MARKERS_KEPT);
        kept.drain(..skip);
        kept.push(marker);
        match &self.custom_type {
            Some(id) if id != our_type => {
                json!({"action": "setCustomField", "name": MARKER_FIELD, "value": kept})
            }
            _ => json!({
                "action": "setCustomType",
                "type": {"typeId": "type", "key": MARKER_TYPE},
                "fields": {MARKER_FIELD: kept},
            }),
        }
    }
}

/// Tries of one movement when the entry keeps changing under it (409).
const CONFLICT_TRIES: u32 = 3;

/// A string literal of the query predicate language (SKUs are the merchant's free text).
fn literal(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn transient(reason: impl Into<String>) -> Failure {
    Failure::Transient {
        reason: reason.into(),
        retry_after: None,
    }
}

/// The inventory destination.
pub struct CommercetoolsInventory {
    client: DestinationClient,
    config: CommercetoolsConfig,
    markers: Arc<dyn DeliveryLedger>,
    clock: Arc<dyn Clock>,
    channels: Mutex<HashMap<String, String>>,
    marker_type: Mutex<Option<String>>,
}

impl CommercetoolsInventory {
    /// The destination over `client`, its per-line markers in `markers`.
    pub fn new(
        client: DestinationClient,
        config: CommercetoolsConfig,
        markers: Arc<dyn DeliveryLedger>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            config,
            markers,
            clock,
            channels: Mutex::new(HashMap::new()),
            marker_type: Mutex::new(None),
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/{}/{}",
            self.config.api_url.trim_end_matches('/'),
            self.config.project_key,
            path
        )
    }

    fn marker_name(movement: &Movement) -> String {
        format!("{NAME}/{}", movement.key)
    }

    async fn get_json(&self, url: &str) -> Result<Value, Failure> {
        let reply = self.client.send(|http| http.get(url)).await?;
        if !reply.status.is_success() {
            return Err(transient(format!(
                "inventory read answered HTTP {}",
                reply.status.as_u16()
            )));
        }
        reply.json()
    }

    async fn post_json(&self, url: &str, body: &Value) -> Result<super::client::Reply, Failure> {
        self.client.send(|http| http.post(url).json(body)).await
    }

    /// The supply channel of `store`, created when the store is new.
    async fn channel(&self, store: &str) -> Result<String, Failure> {
        if let Some(id) = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(store)
        {
            return Ok(id.clone());
        }
        let find = || async {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("where", &format!("key={}", literal(store)))
                .finish();
            let found = self
                .get_json(&format!("{}?{query}", self.url("channels")))
                .await?;
            Ok::<_, Failure>(found["results"][0]["id"].as_str().map(str::to_owned))
        };
        let id =
            match find().await? {
                Some(id) => id,
                None => {
                    let reply = self
                        .post_json(
                            &self.url("channels"),
                            &json!({"key": store, "roles": ["InventorySupply"]}),
                        )
                        .await;
                    match reply {
                        Ok(r) if r.status.is_success() => r.json()?["id"]
                            .as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| transient("a channel without id"))?,
                        // Created meanwhile by another instance (DuplicateField): read it.
                        _ => find()
                            .await?
                            .ok_or_else(|| transient("the store's channel could not be created"))?,
                    }
                }
            };
        self.channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(store.to_owned(), id.clone());
        Ok(id)
    }

    /// The entry of `sku` in `channel`, if there is one (the oldest, should the server hold duplicates).
    async fn find_entry(&self, sku: &str, channel: &str) -> Result<Option<Entry>, Failure> {
        // One entry per SKU and channel: the predicate selects it, no paging needed.
        let predicate = format!(
            "sku={} and supplyChannel(id={})",
            literal(sku),
            literal(channel)
        );
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("where", &predicate)
            .finish();
        let page = self
            .get_json(&format!("{}?{query}", self.url("inventory")))
            .await?;
        let mut found: Vec<&Value> = page["results"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter(|e| e["sku"] == sku && e["supplyChannel"]["id"] == channel)
            .collect();
        found.sort_by_key(|e| e["createdAt"].as_str().unwrap_or_default().to_owned());
        match found.first() {
            None => Ok(None),
            Some(entry) => Entry::of(entry)
                .map(Some)
                .ok_or_else(|| transient("an inventory entry without id, version or quantity")),
        }
    }

    /// The entry of `sku` in `channel`, created at 0 when missing.
    async fn entry(&self, sku: &str, channel: &str) -> Result<Entry, Failure> {
        if let Some(entry) = self.find_entry(sku, channel).await? {
            return Ok(entry);
        }
        let draft = json!({
            "sku": sku,
            "quantityOnStock": 0,
            "supplyChannel": {"typeId": "channel", "id": channel},
        });
        let created = self.post_json(&self.url("inventory"), &draft).await;
        // Whether ours or another instance's (DuplicateField), the first entry is the one.
        if let Err(Failure::Permanent { reason }) = &created
            && !reason.ends_with("DuplicateField")
        {
            return Err(Failure::Permanent {
                reason: reason.clone(),
            });
        }
        self.find_entry(sku, channel)
            .await?
            .ok_or_else(|| transient("the inventory entry could not be created"))
    }

    async fn save_marker(&self, marker: &mut DeliveryEntry) -> Result<(), Failure> {
        let expected = (marker.version > 0).then_some(marker.version);
        marker.version += 1;
        marker.updated_at = self.clock.now();
        match self.markers.put(marker, expected).await {
            Ok(true) => Ok(()),
            // Another instance works on the same line: let the record come back later.
            Ok(false) => Err(transient("another delivery of this line is in progress")),
            Err(e) => Err(transient(e.to_string())),
        }
    }

    /// Applies one movement exactly once.
    async fn apply(&self, event: &EventEnvelope, movement: &Movement) -> Result<(), Failure> {
        let name = Self::marker_name(movement);
        let mut marker = match self.markers.get(&event.event_id, &name).await {
            Ok(Some(m)) if m.status == DeliveryStatus::Delivered => return Ok(()),
            Ok(Some(m)) => m,
            Ok(None) => {
                DeliveryEntry::pending(event.event_id.clone(), None, &name, self.clock.now())
            }
            Err(e) => return Err(transient(e.to_string())),
        };
        let our_type = self.marker_type().await?;
        let channel = self.channel(&movement.store).await?;
        let mut entry = self.entry(&movement.sku, &channel).await?;
        // The entry says whether the movement applied: its marker is written in the same update.
        let key = format!("{}/{}", event.event_id, movement.key);
        if entry.has(&key) {
            return self.done(&mut marker, &entry).await;
        }
        // An update left before (version `sent_at`) and its answer was lost. Not in the markers, so it
        // did not apply, unless more updates than the entry keeps markers for came since.
        if let Some(sent_at) = marker
            .remote_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
            && marker.status != DeliveryStatus::Delivered
            && marker.remote_id.as_deref() == Some(entry.id.as_str())
            && entry.version > sent_at + MARKERS_KEPT as u64
        {
            return Err(Failure::Permanent {
                reason: format!(
                    "inventory of SKU {} in store {} changed more than {MARKERS_KEPT} times after a lost answer; whether {} applied cannot be told: reconcile with a count",
                    movement.sku, movement.store, movement.key
                ),
            });
        }
        for _ in 0..CONFLICT_TRIES {
            // Recorded before the update leaves: the version it is sent against.
            marker.remote_id = Some(entry.id.clone());
            marker.remote_version = Some(entry.version.to_string());
            marker.status = DeliveryStatus::Retrying;
            marker.attempts += 1;
            self.save_marker(&mut marker).await?;
            let body = json!({
                "version": entry.version,
                "actions": [movement.change.action(), entry.marker_action(&key, &our_type)],
            });
            let reply = self
                .post_json(&self.url(&format!("inventory/{}", entry.id)), &body)
                .await?;
            if reply.status.is_success() {
                let updated = Entry::of(&reply.json()?)
                    .ok_or_else(|| transient("an updated entry without version"))?;
                return self.done(&mut marker, &updated).await;
            }
            if reply.status != http::StatusCode::CONFLICT {
                return Err(transient(format!(
                    "inventory update answered HTTP {}",
                    reply.status.as_u16()
                )));
            }
            // Someone changed the entry first: ours did not apply (409). Re-read and go again.
            entry = self.entry(&movement.sku, &channel).await?;
            if entry.has(&key) {
                return self.done(&mut marker, &entry).await;
            }
        }
        Err(transient("the inventory entry kept changing (409)"))
    }

    /// The id of our marker type, created in the project when missing (once per process).
    async fn marker_type(&self) -> Result<String, Failure> {
        if let Some(id) = self
            .marker_type
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        {
            return Ok(id);
        }
        let by_key = self.url(&format!("types/key={MARKER_TYPE}"));
        let found = self.client.send(|http| http.get(&by_key)).await?;
        let id = if found.status.is_success() {
            found.json()?["id"].as_str().map(str::to_owned)
        } else {
            let draft = json!({
                "key": MARKER_TYPE,
                "name": {"en": "POS platform: stock movements applied"},
                "resourceTypeIds": ["inventory-entry"],
                "fieldDefinitions": [{
                    "name": MARKER_FIELD,
                    "label": {"en": "Movements applied (event/line)"},
                    "required": false,
                    "inputHint": "SingleLine",
                    "type": {"name": "Set", "elementType": {"name": "String"}},
                }],
            });
            let created = self.post_json(&self.url("types"), &draft).await;
            match created {
                Ok(r) if r.status.is_success() => r.json()?["id"].as_str().map(str::to_owned),
                // Created meanwhile by another instance (DuplicateField): read it.
                _ => {
                    let again = self.client.send(|http| http.get(&by_key)).await?;
                    if again.status.is_success() {
                        again.json()?["id"].as_str().map(str::to_owned)
                    } else {
                        None
                    }
                }
            }
        }
        .ok_or_else(|| transient("the marker type could not be created"))?;
        self.marker_type
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(id.clone());
        Ok(id)
    }

    async fn done(&self, marker: &mut DeliveryEntry, entry: &Entry) -> Result<(), Failure> {
        marker.status = DeliveryStatus::Delivered;
        marker.remote_id = Some(entry.id.clone());
        marker.remote_version = Some(entry.version.to_string());
        marker.last_error = None;
        self.save_marker(marker).await
    }
}

#[async_trait]
impl Destination for CommercetoolsInventory {
    fn name(&self) -> &str {
        NAME
    }

    fn wants(&self, event: &EventEnvelope) -> bool {
        !movements(&event.event).is_empty()
    }

    async fn read_back(&self, event: &EventEnvelope) -> Result<Option<Landed>, Failure> {
        // Delivered when every movement's marker says so; otherwise `send` resumes line by line.
        for movement in movements(&event.event) {
            let marker = self
                .markers
                .get(&event.event_id, &Self::marker_name(&movement))
                .await
                .map_err(|e| transient(e.to_string()))?;
            if marker.is_none_or(|m| m.status != DeliveryStatus::Delivered) {
                return Ok(None);
            }
        }
        Ok(Some(Landed::default()))
    }

    async fn send(&self, event: &EventEnvelope) -> Result<Landed, Failure> {
        let moves = movements(&event.event);
        for movement in &moves {
            self.apply(event, movement).await?;
        }
        Ok(Landed {
            remote_id: None,
            remote_version: Some(format!("{} movements", moves.len())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: &Value) -> CanonicalEvent {
        crate::samples::envelope_of(&crate::samples::standard(
            "i",
            body,
            crate::samples::sample_time(),
            None,
        ))
        .expect("an event")
        .event
    }

    #[test]
    fn sales_remove_restocked_returns_add_adjustments_add_remove_or_set() {
        let mut sale = crate::samples::standard_sale("i-1", "store-001", None, 2);
        sale["data"]["lines"][1]["quantity"] = json!(3);
        let moves = movements(&event(&sale));
        assert_eq!(
            moves
                .iter()
                .map(|m| (m.key.as_str(), m.sku.as_str(), m.change))
                .collect::<Vec<_>>(),
            vec![
                ("line:1", "SKU-001", Change::Remove(1)),
                ("line:2", "SKU-002", Change::Remove(3))
            ]
        );
        assert!(moves.iter().all(|m| m.store == "store-001"));
        let mut ret = crate::samples::standard_return("i-r", "i-1", "store-002");
        ret["data"]["lines"] = json!([
            {"line_id": "1", "sku": "SKU-001", "quantity": 1, "restock": true, "refund": "1.00"},
            {"line_id": "2", "sku": "SKU-002", "quantity": 1, "restock": false, "refund": "1.00"},
            {"line_id": "3", "sku": null, "quantity": 1, "restock": true, "refund": "1.00"}
        ]);
        ret["data"]["total_refund"] = json!("3.00");
        let moves = movements(&event(&ret));
        assert_eq!(moves.len(), 1, "only restocked SKU lines: {moves:?}");
        assert_eq!(moves[0].change, Change::Add(1));
        for (field, units, change) in [
            ("delta", 4, Some(Change::Add(4))),
            ("delta", -2, Some(Change::Remove(2))),
            ("delta", 0, None),
            ("on_hand", 7, Some(Change::Set(7))),
        ] {
            let adj = json!({"type": "stock.adjusted", "timestamp": "2026-01-15T10:00:00Z", "data": {
                "adjustment_id": "a-1", "store_id": "store-001", "sku": "SKU-9",
                "occurred_at": "2026-01-15T09:00:00Z", field: units}});
            assert_eq!(
                movements(&event(&adj)).first().map(|m| m.change),
                change,
                "{field} {units}"
            );
        }
    }

    #[test]
    fn changes_know_their_action_and_result() {
        assert_eq!(
            Change::Remove(2).action(),
            json!({"action": "removeQuantity", "quantity": 2})
        );
        assert_eq!(Change::Remove(2).after(1), -1);
        assert_eq!(Change::Add(2).after(1), 3);
        assert_eq!(Change::Set(9).after(1), 9);
        let fresh = Entry {
            id: "e".into(),
            version: 3,
            applied: Vec::new(),
            custom_type: None,
        };
        assert_eq!(
            fresh.marker_action("ev/line:1", "our-id"),
            json!({"action": "setCustomType", "type": {"typeId": "type", "key": MARKER_TYPE},
                   "fields": {MARKER_FIELD: ["ev/line:1"]}})
        );
        let full = Entry {
            applied: (0..MARKERS_KEPT).map(|i| format!("m{i}")).collect(),
            custom_type: Some("our-id".into()),
            ..fresh.clone()
        };
        let action = full.marker_action("new", "our-id");
        let kept = action["fields"][MARKER_FIELD].as_array().expect("set");
        assert_eq!(kept.len(), MARKERS_KEPT, "the oldest marker makes room");
        assert_eq!(
            (kept[0].as_str(), kept[MARKERS_KEPT - 1].as_str()),
            (Some("m1"), Some("new"))
        );
        let theirs = Entry {
            custom_type: Some("their-type".into()),
            ..fresh
        };
        assert_eq!(
            theirs.marker_action("k", "our-id")["action"],
            "setCustomField",
            "an entry with its own type keeps it"
        );
        assert_eq!(literal(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
