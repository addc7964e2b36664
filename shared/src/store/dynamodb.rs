//! The DynamoDB adapter: one table, single-table design, one `TransactWriteItems` per capture.
//!
//! | item        | `pk`                           | `sk`         | other attributes                                       |
//! |-------------|--------------------------------|--------------|--------------------------------------------------------|
//! | delivery    | `DELIVERY#{vendor}#{key}`      | `DELIVERY`   | `data` (JSON), `payload_hash`, `expires_at` (epoch s, TTL) |
//! | record      | `RECORD#{record_key}`          | `RECORD`     | `data`, `gsi1pk` = `STORE#{store}`, `gsi1sk` = `{occurred_at}#{record_key}` (see [`gsi1_sort_key`]) |
//! | outbox      | `OUTBOX#{event_id}`            | `OUTBOX`     | `data`, `status`; while pending only: `outbox_pending` = `PENDING#{shard}`, `pending_since` (sparse GSI `outbox-pending`) |
//! | quarantine  | `QUARANTINE#{vendor}#{key}`    | `QUARANTINE` | `data`; once reprocessed `resolved_at`                 |
//! | lines       | `LINES#{record_key}`           | `CHUNK#{n:03}` | `data` (B: a piece of the lines' JSON, at most 256 KiB) |
//!
//! Lines items exist only for claim-checked facts ([`super::claim`]): written in the capture's
//! transaction (at most 10 per write, so with the other items it stays under 100 items and 4 MB), read
//! by the consumers and the sales read model with `GetItem` (their IAM grants only `LINES#` keys).
//!
//! Conditions make the transaction the arbiter of duplicates: the delivery put requires no live record
//! (`attribute_not_exists(pk) OR expires_at <= :now`), the record and outbox puts require absence. When
//! the transaction is cancelled, the cancellation reasons say which condition failed and one consistent
//! read settles duplicate vs conflict. Anything else (throttling, conflicts with a concurrent
//! transaction, network) is [`StoreError::Unavailable`]: the caller answers 5xx and the vendor retries.
//!
//! The `outbox-pending` index is write-sharded: one constant partition key would make every capture write
//! the same index partition, and a throttled GSI holds back the base table's writes. An entry's shard is a
//! stable hash of its event id ([`outbox_pending_shard`]) over [`OUTBOX_PENDING_SHARDS`] shards; the relay
//! reads every shard, plus the unsharded `PENDING` key of entries written before sharding.

use super::{
    CanonicalRecord, CaptureOutcome, CaptureWrite, DeliveryOutcome, DeliveryRecord, OutboxEntry,
    QuarantineRecord, QuarantineResolution, StoreError, delivery_store_key,
};
use crate::ids::EventId;
use crate::model::{LinesRef, Vendor};
use crate::ports::{CaptureStore, LinesSource, QuarantineStore};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Partition key attribute.
pub const PK: &str = "pk";
/// Sort key attribute.
pub const SK: &str = "sk";
/// GSI of records by store and time (read APIs).
pub const GSI_STORE: &str = "gsi1";
/// Sparse GSI of pending outbox entries (relay).
pub const GSI_OUTBOX_PENDING: &str = "outbox-pending";
/// Write shards of `outbox-pending` (partition keys `PENDING#0` … `PENDING#15`). Writers and the relay
/// must agree: raising it is safe (the relay reads every shard of the new count), lowering it strands the
/// entries of the dropped shards until a relay reads them.
pub const OUTBOX_PENDING_SHARDS: u16 = 16;
/// The `outbox-pending` partition key written before sharding; the relay still drains it.
const LEGACY_PENDING: &str = "PENDING";

/// The `outbox-pending` shard of an event's outbox entry: the first 8 bytes of the SHA-256 of the event
/// id, modulo `shards`. Stable across processes and releases (unlike `std`'s hasher), so every write of an
/// entry lands in the same shard, and spread evenly.
pub fn outbox_pending_shard(event_id: &EventId, shards: u16) -> u16 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(event_id.as_str().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let shards = u64::from(shards.max(1));
    // The remainder is below `shards`, itself a u16.
    u16::try_from(u64::from_be_bytes(first) % shards).unwrap_or(0)
}

/// Partition key of the lines of a claim-checked fact.
pub fn lines_pk(record_key: &str) -> String {
    format!("LINES#{record_key}")
}

/// Sort key of chunk `n` (zero-padded: chunks sort in order).
pub fn chunk_sk(n: u32) -> String {
    format!("CHUNK#{n:03}")
}

fn pending_key(shard: u16) -> String {
    format!("{LEGACY_PENDING}#{shard}")
}

/// The DynamoDB sale store.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    outbox_shards: u16,
    /// Rotates the shard the relay reads first, so a limit below the shard count reaches every shard.
    relay_turn: Arc<AtomicUsize>,
}

/// The `gsi1` sort key of a record: `{occurred_at}#{record_key}`, the time in RFC 3339 UTC with exactly
/// nine fractional digits. Fixed width makes the keys sort exactly as the read model's `(occurred_at,
/// record key)` positions compare, down to the nanosecond, with ties broken by the record key.
///
/// Releases before issue 9 wrote milliseconds (`…:00.123Z#…`), which sorts after every nanosecond key of
/// the same millisecond; `read::dynamodb` reads both (it never splits a millisecond across pages).
pub fn gsi1_sort_key(occurred_at: DateTime<Utc>, record_key: &str) -> String {
    format!("{}#{record_key}", gsi1_time(occurred_at))
}

/// The time part of a `gsi1` sort key (see [`gsi1_sort_key`]).
pub fn gsi1_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn unavailable<E: std::error::Error>(op: &str, e: E) -> StoreError {
    StoreError::Unavailable(format!("{op}: {}", DisplayErrorContext(e)))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The outbox item a capture writes for `entry` (string attributes only), as the stream's new image
/// shows it: what `events/outbox-publisher/` samples are made of.
pub fn outbox_image(entry: &OutboxEntry) -> Result<HashMap<String, String>, StoreError> {
    let shard = outbox_pending_shard(&entry.envelope.event_id, OUTBOX_PENDING_SHARDS);
    Ok(HashMap::from([
        (PK.into(), format!("OUTBOX#{}", entry.envelope.event_id)),
        (SK.into(), "OUTBOX".into()),
        ("data".into(), to_json(entry)?),
        ("status".into(), "PENDING".into()),
        ("outbox_pending".into(), pending_key(shard)),
        (
            "pending_since".into(),
            entry
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
    ]))
}

/// The outbox entry of a stream record's new image (DynamoDB Streams, `NEW_IMAGE`): `None` for any
/// other item of the table, an error for an outbox item that does not decode.
pub fn outbox_entry_from_image(
    image: &HashMap<String, serde_dynamo::AttributeValue>,
) -> Result<Option<OutboxEntry>, StoreError> {
    let text = |name: &str| match image.get(name) {
        Some(serde_dynamo::AttributeValue::S(v)) => Some(v.as_str()),
        _ => None,
    };
    if text(SK) != Some("OUTBOX") || !text(PK).is_some_and(|pk| pk.starts_with("OUTBOX#")) {
        return Ok(None);
    }
    let data = text("data")
        .ok_or_else(|| StoreError::Corrupt("outbox image has no data attribute".into()))?;
    serde_json::from_str(data)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Decodes the `data` attribute of an item (read models share the item layout).
pub(crate) fn decode_data<T: serde::de::DeserializeOwned>(
    item: &HashMap<String, AttributeValue>,
) -> Result<T, StoreError> {
    data_of(item)
}

fn data_of<T: serde::de::DeserializeOwned>(
    item: &HashMap<String, AttributeValue>,
) -> Result<T, StoreError> {
    let text = item
        .get("data")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Corrupt("item has no data attribute".into()))?;
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn build_put(
    table: &str,
    item: HashMap<String, AttributeValue>,
    condition: &str,
    now: Option<i64>,
) -> Result<Put, StoreError> {
    let mut put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition);
    if let Some(now) = now {
        // The delivery put: when its condition fails, the live record comes back in the cancellation
        // reason, so a duplicate costs the one failed write and no read.
        put = put
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    }
    put.build()
        .map_err(|e| StoreError::Unavailable(e.to_string()))
}

impl DynamoStore {
    /// A store on `table`, with [`OUTBOX_PENDING_SHARDS`] shards.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            outbox_shards: OUTBOX_PENDING_SHARDS,
            relay_turn: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Another shard count for `outbox-pending` (at least 1; every writer and the relay must agree).
    pub fn with_outbox_shards(mut self, shards: u16) -> Self {
        self.outbox_shards = shards.max(1);
        self
    }

    fn delivery_item(d: &DeliveryRecord) -> Result<HashMap<String, AttributeValue>, StoreError> {
        Ok(HashMap::from([
            (PK.into(), s(format!("DELIVERY#{}", d.key()))),
            (SK.into(), s("DELIVERY")),
            ("data".into(), s(to_json(d)?)),
            ("payload_hash".into(), s(d.payload_hash.clone())),
            (
                "expires_at".into(),
                AttributeValue::N(d.expires_at.timestamp().to_string()),
            ),
        ]))
    }

    fn record_item(r: &CanonicalRecord) -> Result<HashMap<String, AttributeValue>, StoreError> {
        Ok(HashMap::from([
            (PK.into(), s(format!("RECORD#{}", r.record_key))),
            (SK.into(), s("RECORD")),
            ("data".into(), s(to_json(r)?)),
            ("gsi1pk".into(), s(format!("STORE#{}", r.event.store_id()))),
            (
                "gsi1sk".into(),
                s(gsi1_sort_key(r.event.occurred_at(), &r.record_key)),
            ),
        ]))
    }

    fn outbox_item(&self, e: &OutboxEntry) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let mut item = outbox_image(e)?;
        let shard = outbox_pending_shard(&e.envelope.event_id, self.outbox_shards);
        item.insert("outbox_pending".into(), pending_key(shard));
        Ok(item.into_iter().map(|(k, v)| (k, s(v))).collect())
    }

    fn lines_item(key: &str, n: u32, chunk: &[u8]) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (PK.into(), s(lines_pk(key))),
            (SK.into(), s(chunk_sk(n))),
            (
                "data".into(),
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(chunk)),
            ),
        ])
    }

    async fn get(
        &self,
        pk: String,
        sk: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        Ok(out.item)
    }

    /// The SDK client (read models query the same table).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The table name.
    pub(crate) fn table(&self) -> &str {
        &self.table
    }

    /// Reads a delivery record (whether live or not).
    pub async fn delivery(&self, key: &str) -> Result<Option<DeliveryRecord>, StoreError> {
        self.get(format!("DELIVERY#{key}"), "DELIVERY")
            .await?
            .map(|i| data_of(&i))
            .transpose()
    }

    /// Reads a canonical record.
    pub async fn record(&self, record_key: &str) -> Result<Option<CanonicalRecord>, StoreError> {
        self.get(format!("RECORD#{record_key}"), "RECORD")
            .await?
            .map(|i| data_of(&i))
            .transpose()
    }

    /// Reads a quarantined delivery.
    pub async fn quarantined(&self, key: &str) -> Result<Option<QuarantineRecord>, StoreError> {
        self.get(format!("QUARANTINE#{key}"), "QUARANTINE")
            .await?
            .map(|i| data_of(&i))
            .transpose()
    }

    async fn put_delivery_only(
        &self,
        delivery: &DeliveryRecord,
        now: i64,
    ) -> Result<bool, StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::delivery_item(delivery)?))
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(unavailable("PutItem", e)),
        }
    }

    /// Settles an existing delivery record as duplicate or conflict: the record the failed condition
    /// returned, or one consistent read when it did not return one.
    async fn existing_delivery_outcome(
        &self,
        write: &CaptureWrite,
        returned: Option<&HashMap<String, AttributeValue>>,
    ) -> Result<CaptureOutcome, StoreError> {
        let existing = match returned {
            Some(item) => Some(data_of::<DeliveryRecord>(item)?),
            None => self.delivery(&write.delivery.key()).await?,
        };
        let existing = existing.ok_or_else(|| {
            StoreError::Unavailable("delivery record vanished during capture; retry".into())
        })?;
        Ok(if existing.payload_hash == write.delivery.payload_hash {
            CaptureOutcome::Duplicate(existing)
        } else {
            CaptureOutcome::Conflict(existing)
        })
    }
}

#[async_trait]
impl CaptureStore for DynamoStore {
    async fn capture(&self, write: CaptureWrite) -> Result<CaptureOutcome, StoreError> {
        let now = write.delivery.received_at.timestamp();
        let Some((record, outbox)) = &write.fact else {
            return if self.put_delivery_only(&write.delivery, now).await? {
                Ok(CaptureOutcome::Stored)
            } else {
                self.existing_delivery_outcome(&write, None).await
            };
        };
        // Item 0 the delivery, then a record and an outbox entry per fact, then the requirement's check.
        let mut items = vec![
            TransactWriteItem::builder()
                .put(build_put(
                    &self.table,
                    Self::delivery_item(&write.delivery)?,
                    "attribute_not_exists(pk) OR expires_at <= :now",
                    Some(now),
                )?)
                .build(),
        ];
        let lines_items = write.lines.iter().flat_map(|claimed| {
            (0u32..)
                .zip(&claimed.chunks)
                .map(|(n, chunk)| Self::lines_item(&claimed.reference.key, n, chunk))
        });
        for (rec, entry) in write.facts() {
            for item in [Self::record_item(rec)?, self.outbox_item(entry)?] {
                items.push(
                    TransactWriteItem::builder()
                        .put(build_put(
                            &self.table,
                            item,
                            "attribute_not_exists(pk)",
                            None,
                        )?)
                        .build(),
                );
            }
        }
        // The lines' keys derive from the records' keys: they are new exactly when the records are.
        for item in lines_items {
            items.push(
                TransactWriteItem::builder()
                    .put(build_put(
                        &self.table,
                        item,
                        "attribute_not_exists(pk)",
                        None,
                    )?)
                    .build(),
            );
        }
        let fact_items = items.len();
        if let Some(req) = &write.requires {
            let check = ConditionCheck::builder()
                .table_name(&self.table)
                .key(PK, s(format!("RECORD#{}", req.record_key)))
                .key(SK, s("RECORD"))
                .condition_expression("attribute_exists(pk)")
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            items.push(TransactWriteItem::builder().condition_check(check).build());
        }
        let res = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let err = match res {
            Ok(_) => return Ok(CaptureOutcome::Stored),
            Err(e) => e,
        };
        let (reasons, returned): (Vec<String>, Option<&HashMap<String, AttributeValue>>) =
            match &err {
                SdkError::ServiceError(se) => match se.err() {
                    TransactWriteItemsError::TransactionCanceledException(c) => (
                        c.cancellation_reasons()
                            .iter()
                            .map(|r| r.code().unwrap_or("None").to_owned())
                            .collect(),
                        c.cancellation_reasons().first().and_then(|r| r.item()),
                    ),
                    _ => return Err(unavailable("TransactWriteItems", err)),
                },
                _ => return Err(unavailable("TransactWriteItems", err)),
            };
        let failed = |i: usize| {
            reasons
                .get(i)
                .is_some_and(|c| c == "ConditionalCheckFailed")
        };
        let other = reasons
            .iter()
            .any(|c| c != "None" && c != "ConditionalCheckFailed");
        if other {
            // Throttling or a conflicting concurrent transaction: nothing was written, retry later.
            return Err(StoreError::Unavailable(format!(
                "transaction cancelled: {}",
                reasons.join(",")
            )));
        }
        if failed(0) {
            return self.existing_delivery_outcome(&write, returned).await;
        }
        if (1..fact_items).any(failed) {
            let mut delivery = write.delivery.clone();
            delivery.outcome = DeliveryOutcome::DuplicateOf {
                record_key: record.record_key.clone(),
                event_id: outbox.envelope.event_id.clone(),
            };
            return if self.put_delivery_only(&delivery, now).await? {
                Ok(CaptureOutcome::FactAlreadyCaptured { delivery })
            } else {
                self.existing_delivery_outcome(&write, None).await
            };
        }
        if let Some(req) = write.requires.as_ref().filter(|_| failed(fact_items)) {
            let delivery = super::ignored_delivery(&write, req);
            return if self.put_delivery_only(&delivery, now).await? {
                Ok(CaptureOutcome::RequirementMissing { delivery })
            } else {
                self.existing_delivery_outcome(&write, None).await
            };
        }
        Err(StoreError::Unavailable(format!(
            "transaction cancelled without a reason: {}",
            reasons.join(",")
        )))
    }

    async fn outbox_entry(&self, event_id: &EventId) -> Result<Option<OutboxEntry>, StoreError> {
        self.get(format!("OUTBOX#{event_id}"), "OUTBOX")
            .await?
            .map(|i| outbox_of(&i))
            .transpose()
    }

    async fn mark_published(
        &self,
        event_id: &EventId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.settle_outbox(event_id, super::OutboxStatus::Published { at }, "PUBLISHED")
            .await
    }

    async fn quarantine(&self, record: QuarantineRecord) -> Result<(), StoreError> {
        let item = HashMap::from([
            (PK.into(), s(format!("QUARANTINE#{}", record.key()))),
            (SK.into(), s("QUARANTINE")),
            ("data".into(), s(to_json(&record)?)),
        ]);
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            // Already quarantined by an earlier delivery of the same key: keep the first copy.
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(e) => Err(unavailable("PutItem", e)),
        }
    }
}

/// The quarantine is small and read only by an operator's reprocess, so listing it scans the table with a
/// filter (paginated) instead of keeping an index every capture would pay for. On a big table, reprocess
/// one delivery by its key (the alarm's log line names it) rather than `--all`.
#[async_trait]
impl QuarantineStore for DynamoStore {
    async fn quarantined_delivery(
        &self,
        vendor: Vendor,
        delivery_key: &str,
    ) -> Result<Option<QuarantineRecord>, StoreError> {
        self.quarantined(&delivery_store_key(vendor, delivery_key))
            .await
    }

    async fn open_quarantine(&self) -> Result<Vec<QuarantineRecord>, StoreError> {
        let mut open = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk = :q AND attribute_not_exists(resolved_at)")
                .expression_attribute_values(":q", s("QUARANTINE"))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("Scan", e))?;
            for item in page.items() {
                open.push(data_of::<QuarantineRecord>(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        open.sort_by_key(|q| q.received_at);
        Ok(open)
    }

    async fn resolve_quarantine(
        &self,
        vendor: Vendor,
        delivery_key: &str,
        resolution: QuarantineResolution,
    ) -> Result<bool, StoreError> {
        let key = delivery_store_key(vendor, delivery_key);
        let Some(mut record) = self.quarantined(&key).await? else {
            return Ok(false);
        };
        if record.resolution.is_some() {
            return Ok(false);
        }
        let at = resolution.at.to_rfc3339();
        record.resolution = Some(resolution);
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(format!("QUARANTINE#{key}")))
            .key(SK, s("QUARANTINE"))
            .update_expression("SET #data = :data, resolved_at = :at")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(resolved_at)")
            .expression_attribute_names("#data", "data")
            .expression_attribute_values(":data", s(to_json(&record)?))
            .expression_attribute_values(":at", s(at))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            // Another reprocess settled it first.
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(unavailable("UpdateItem", e)),
        }
    }
}

impl DynamoStore {
    /// Sets an outbox entry's state (`status` is the attribute's value); removing `outbox_pending` takes
    /// the entry out of the relay's sparse index.
    /// Settles a pending entry (published, or failed for good) in one conditional `UpdateItem`: the
    /// outcome goes in attributes beside `data` (which keeps the entry as captured; [`outbox_of`] reads
    /// them together) and the entry leaves the sparse pending index. An entry that is not pending (settled
    /// already, or absent) is left as it is.
    pub(crate) async fn settle_outbox(
        &self,
        event_id: &EventId,
        state: super::OutboxStatus,
        status: &str,
    ) -> Result<(), StoreError> {
        let (at, reason) = match &state {
            super::OutboxStatus::Pending => return Ok(()),
            super::OutboxStatus::Published { at } => (*at, None),
            super::OutboxStatus::Failed { at, reason } => (*at, Some(reason.clone())),
        };
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(format!("OUTBOX#{event_id}")))
            .key(SK, s("OUTBOX"))
            .condition_expression("attribute_exists(pk) AND #status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(status))
            .expression_attribute_values(":pending", s("PENDING"))
            .expression_attribute_values(
                ":at",
                s(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            );
        update = match reason {
            Some(reason) => update
                .update_expression(
                    "SET #status = :status, settled_at = :at, settled_reason = :reason REMOVE outbox_pending, pending_since",
                )
                .expression_attribute_values(":reason", s(reason)),
            None => update.update_expression(
                "SET #status = :status, settled_at = :at REMOVE outbox_pending, pending_since",
            ),
        };
        match update.send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(e) => Err(unavailable("UpdateItem", e)),
        }
    }
}

/// An outbox entry from its item: `data` as captured, with the settled status from the attributes
/// [`DynamoStore::settle_outbox`] writes (entries settled before those existed carry it in `data`).
fn outbox_of(item: &HashMap<String, AttributeValue>) -> Result<OutboxEntry, StoreError> {
    let mut entry: OutboxEntry = data_of(item)?;
    let attr = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    };
    let settled_at = attr("settled_at")
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| StoreError::Corrupt(format!("settled_at: {e}")))
        })
        .transpose()?;
    if let Some(at) = settled_at {
        entry.status = match attr("status") {
            Some("PUBLISHED") => super::OutboxStatus::Published { at },
            Some("FAILED") => super::OutboxStatus::Failed {
                at,
                reason: attr("settled_reason").unwrap_or_default().to_owned(),
            },
            other => {
                return Err(StoreError::Corrupt(format!(
                    "outbox entry settled with status {other:?}"
                )));
            }
        };
    }
    Ok(entry)
}

#[async_trait]
impl LinesSource for DynamoStore {
    /// One consistent `GetItem` per chunk (a chunk is up to 256 KiB; the lines are written in the same
    /// transaction as the record, so a reader that saw the reference finds them).
    async fn line_chunks(&self, reference: &LinesRef) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let mut out = Vec::with_capacity(reference.chunks as usize);
        for n in 0..reference.chunks {
            let Some(item) = self.get(lines_pk(&reference.key), &chunk_sk(n)).await? else {
                return Ok(None);
            };
            let bytes = item
                .get("data")
                .and_then(|v| v.as_b().ok())
                .ok_or_else(|| StoreError::Corrupt("lines chunk has no data".into()))?;
            out.push(bytes.as_ref().to_vec());
        }
        Ok(Some(out))
    }
}

/// One `outbox-pending` partition the relay is reading.
struct PendingShard {
    key: String,
    start: Option<HashMap<String, AttributeValue>>,
}

impl DynamoStore {
    /// Up to `limit` entries of one shard pending since before `cutoff`, oldest first, from `shard.start`;
    /// moves `shard.start` on and says whether the shard may hold more.
    async fn pending_page(
        &self,
        shard: &mut PendingShard,
        cutoff: &str,
        limit: usize,
        out: &mut Vec<OutboxEntry>,
    ) -> Result<bool, StoreError> {
        let resp = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI_OUTBOX_PENDING)
            .key_condition_expression("outbox_pending = :p AND pending_since < :cutoff")
            .expression_attribute_values(":p", s(shard.key.clone()))
            .expression_attribute_values(":cutoff", s(cutoff))
            .limit(i32::try_from(limit.min(1000)).unwrap_or(1000))
            .set_exclusive_start_key(shard.start.take())
            .send()
            .await
            .map_err(|e| unavailable("Query", e))?;
        for item in resp.items() {
            out.push(data_of(item)?);
        }
        shard.start = resp.last_evaluated_key;
        Ok(shard.start.is_some())
    }
}

#[async_trait]
impl crate::outbox::OutboxSource for DynamoStore {
    /// Reads every shard (and the legacy unsharded key) in rounds: each round gives every shard that may
    /// still hold entries an equal share of what is left of `limit`, so one full shard cannot starve the
    /// others; the first shard rotates per run for when `limit` is below the number of shards.
    async fn pending_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let cutoff = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut shards: Vec<PendingShard> = (0..self.outbox_shards)
            .map(pending_key)
            .chain(std::iter::once(LEGACY_PENDING.to_owned()))
            .map(|key| PendingShard { key, start: None })
            .collect();
        let turn = self.relay_turn.fetch_add(1, Ordering::Relaxed) % shards.len();
        shards.rotate_left(turn);
        let mut out = Vec::new();
        while out.len() < limit && !shards.is_empty() {
            let share = ((limit - out.len()) / shards.len()).max(1);
            let mut more = Vec::with_capacity(shards.len());
            for mut shard in shards {
                let room = limit.saturating_sub(out.len());
                if room == 0 {
                    break;
                }
                if self
                    .pending_page(&mut shard, &cutoff, share.min(room), &mut out)
                    .await?
                {
                    more.push(shard);
                }
            }
            shards = more;
        }
        out.sort_by_key(|e| e.created_at);
        Ok(out)
    }

    async fn mark_failed(
        &self,
        event_id: &EventId,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        let failed = super::OutboxStatus::Failed {
            at,
            reason: reason.to_owned(),
        };
        self.settle_outbox(event_id, failed, "FAILED").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> EventId {
        EventId::parse(format!("evt:sale:shopify:{n}")).expect("event id")
    }

    #[test]
    fn the_pending_shard_is_a_stable_hash_of_the_event_id() {
        for n in 0..200 {
            let shard = outbox_pending_shard(&event(n), OUTBOX_PENDING_SHARDS);
            assert!(shard < OUTBOX_PENDING_SHARDS);
            assert_eq!(
                outbox_pending_shard(&EventId::parse(event(n).as_str()).expect("id"), 16),
                shard,
                "the same id, parsed again, lands in the same shard"
            );
        }
        // Pinned values, computed independently (Python: int.from_bytes(sha256(id)[:8]) % 16): a change
        // of hash would move pending entries between releases.
        for (id, shard) in [("evt:sale:shopify:450789469", 2), ("evt:sale:relay-9", 4)] {
            assert_eq!(
                outbox_pending_shard(&EventId::parse(id).expect("id"), 16),
                shard,
                "{id}"
            );
        }
        assert_eq!(outbox_pending_shard(&event(1), 1), 0);
        assert_eq!(outbox_pending_shard(&event(1), 0), 0, "0 shards means one");
    }

    #[test]
    fn pending_shards_spread_evenly() {
        let mut counts = [0usize; OUTBOX_PENDING_SHARDS as usize];
        for n in 0..16_000 {
            counts[usize::from(outbox_pending_shard(&event(n), OUTBOX_PENDING_SHARDS))] += 1;
        }
        // 1 000 expected per shard; a fair hash stays well within ±15 %.
        for (shard, count) in counts.iter().enumerate() {
            assert!((850..=1150).contains(count), "shard {shard}: {count}");
        }
    }
}
