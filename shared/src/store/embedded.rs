//! The embedded store: [redb](https://docs.rs/redb), an ACID key-value file, for local runs (data
//! survives a restart: every commit is fsynced) and, backed by memory, as the fake in unit tests.
//!
//! One redb write transaction covers the whole capture, so the atomicity is the same as DynamoDB's
//! `TransactWriteItems`. redb is synchronous: calls run on Tokio's blocking pool.
//!
//! Two ways to open the file:
//! - [`EmbeddedStore::open`]: this process alone (redb's `ExclusiveWriter`, the fastest; `pos-local`).
//! - [`EmbeddedStore::open_shared`]: several processes at once, each writing in turn (redb's
//!   `MultiWriter` mode, byte-range locks): what the Lambda binaries use under `cargo lambda watch`,
//!   where `sale-capture` and `outbox-relay` are separate processes on one outbox.
//!
//! Other local adapters may keep their own tables in the same file ([`EmbeddedStore::write`]), so that
//! a change of theirs and an outbox mark ([`mark_published_in`]) commit together: `pos-local`'s durable
//! queues do ("publish" = enqueue + mark, one transaction).

use super::{
    CanonicalRecord, CaptureOutcome, CaptureWrite, Decision, DeliveryRecord, OutboxEntry,
    OutboxStatus, QuarantineRecord, QuarantineResolution, StoreError, StoreInspect, decide,
    delivery_store_key,
};
use crate::ids::EventId;
use crate::model::LinesRef;
use crate::model::Vendor;
use crate::ports::{CaptureStore, LinesSource, QuarantineStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{
    ConcurrencyMode, Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::Arc;

const DELIVERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("deliveries");
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
const QUARANTINE: TableDefinition<&str, &[u8]> = TableDefinition::new("quarantine");
const ALL_TABLES: [TableDefinition<&str, &[u8]>; 4] = [DELIVERIES, RECORDS, OUTBOX, QUARANTINE];

/// A redb-backed store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    feed: Arc<FeedSender>,
}

/// The store's change feed of new outbox entries: what DynamoDB Streams is to the table
/// ([`crate::outbox::feed`]). One subscriber per process; entries are announced after their commit.
type FeedSender = std::sync::Mutex<Option<tokio::sync::mpsc::Sender<OutboxEntry>>>;

/// How many announced entries may wait for the subscriber; beyond that they are left to the relay's
/// sweep (they are pending in the store either way), so a stalled publisher cannot grow memory.
pub const FEED_CAPACITY: usize = 10_000;

fn io<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// What [`mark_published_in`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxMark {
    /// The entry was pending and is now marked published (in the caller's transaction).
    Marked,
    /// The entry was already published: whatever publishing means was done before.
    AlreadyPublished,
    /// No outbox entry has this event id (an event no capture stored, e.g. `StockLow`).
    NotInOutbox,
}

/// Marks the outbox entry of `event_id` published at `at` inside `txn`, so the caller's own writes and
/// the mark commit together or not at all.
pub fn mark_published_in(
    txn: &WriteTransaction,
    event_id: &str,
    at: DateTime<Utc>,
) -> Result<OutboxMark, StoreError> {
    settle_in(txn, event_id, OutboxStatus::Published { at })
}

/// Moves a pending outbox entry to `status` inside `txn`; an entry already settled is left as it is.
fn settle_in(
    txn: &WriteTransaction,
    event_id: &str,
    status: OutboxStatus,
) -> Result<OutboxMark, StoreError> {
    let mut t = txn.open_table(OUTBOX).map_err(io)?;
    let current: Option<OutboxEntry> = match t.get(event_id).map_err(io)? {
        Some(v) => Some(decode(v.value())?),
        None => None,
    };
    match current {
        None => Ok(OutboxMark::NotInOutbox),
        Some(entry) if entry.status != OutboxStatus::Pending => Ok(OutboxMark::AlreadyPublished),
        Some(mut entry) => {
            entry.status = status;
            t.insert(event_id, encode(&entry)?.as_slice()).map_err(io)?;
            Ok(OutboxMark::Marked)
        }
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir` (file `pos.redb`) for this process alone: another process
    /// opening the file gets "Database already open".
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        let db = Database::create(dir.join("pos.redb")).map_err(io)?;
        Self::init(db)
    }

    /// Opens (or creates) the store in `dir` so that other processes may open it the same way at the
    /// same time (redb `MultiWriter`: one write transaction at a time across them, each sees the
    /// others' commits). An [`open`](Self::open) elsewhere excludes them, and they exclude it.
    pub fn open_shared(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        let db = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .create(dir.join("pos.redb"))
            .map_err(io)?;
        Self::init(db)
    }

    /// Opens (or creates) another redb file of the data directory (`stock.redb`, `loyalty.redb`) the way
    /// [`open_shared`](Self::open_shared) opens `pos.redb`: every function under `cargo lambda watch`
    /// keeps it open at once, write transactions take turns.
    pub fn open_shared_file(path: &Path) -> Result<Database, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        Database::builder()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .create(path)
            .map_err(io)
    }

    /// Runs `f` in one write transaction on this store's file, on the blocking pool. `f` returns its
    /// result and whether it changed anything: the transaction is committed (durably) only then, and
    /// aborted otherwise, so a look that finds nothing to do costs no fsync.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<(T, bool), StoreError> + Send + 'static,
    {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(io)?;
            let (value, changed) = f(&txn)?;
            if changed {
                txn.commit().map_err(io)?;
            } else {
                txn.abort().map_err(io)?;
            }
            Ok(value)
        })
        .await
    }

    /// Runs `f` in one read transaction on this store's file, on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(io)?;
            f(&txn)
        })
        .await
    }

    /// A store that lives in memory only (the unit-test fake).
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(io)?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, StoreError> {
        let txn = db.begin_write().map_err(io)?;
        for table in ALL_TABLES {
            txn.open_table(table).map_err(io)?;
        }
        txn.open_table(LINES).map_err(io)?;
        txn.commit().map_err(io)?;
        Ok(Self {
            db: Arc::new(db),
            feed: Arc::new(std::sync::Mutex::new(None)),
        })
    }

    /// Subscribes to the outbox entries captured from now on by this process (replacing an earlier
    /// subscriber): the local stand-in for the table's stream. Entries already pending are not replayed
    /// here: the relay's sweep ([`crate::outbox::OutboxRelay::run`]) publishes those.
    pub fn subscribe_outbox(&self) -> tokio::sync::mpsc::Receiver<OutboxEntry> {
        let (tx, rx) = tokio::sync::mpsc::channel(FEED_CAPACITY);
        *self
            .feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tx);
        rx
    }

    /// Announces committed outbox entries to the subscriber, if any. A full or closed feed drops the
    /// announcement: the entry stays pending in the store, for the sweep.
    fn announce(&self, entries: Vec<OutboxEntry>) {
        let feed = self
            .feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(tx) = feed.as_ref() else { return };
        for entry in entries {
            if let Err(e) = tx.try_send(entry) {
                tracing::warn!(error = %e, "outbox feed full or closed; the relay's sweep will publish the entry");
            }
        }
    }

    fn has_subscriber(&self) -> bool {
        self.feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_some_and(|tx| !tx.is_closed())
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(io)?
    }

    fn scan<T: DeserializeOwned>(
        db: &Database,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        let txn = db.begin_read().map_err(io)?;
        let t = txn.open_table(table).map_err(io)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(io)? {
            let (_, v) = row.map_err(io)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }
}

impl EmbeddedStore {
    /// The capture's one write transaction (committed, so fsynced on a file, before it returns).
    async fn capture_committed(&self, write: CaptureWrite) -> Result<CaptureOutcome, StoreError> {
        self.blocking(move |db| {
            let now = write.delivery.received_at;
            let txn = db.begin_write().map_err(io)?;
            let outcome = {
                let mut deliveries = txn.open_table(DELIVERIES).map_err(io)?;
                let mut records = txn.open_table(RECORDS).map_err(io)?;
                let mut outbox = txn.open_table(OUTBOX).map_err(io)?;
                let key = write.delivery.key();
                let existing: Option<DeliveryRecord> =
                    match deliveries.get(key.as_str()).map_err(io)? {
                        Some(v) => Some(decode(v.value())?),
                        None => None,
                    };
                let mut fact_exists = false;
                for (record, _) in write.facts() {
                    fact_exists |= records
                        .get(record.record_key.as_str())
                        .map_err(io)?
                        .is_some();
                }
                let requirement_met = match &write.requires {
                    Some(req) => records.get(req.record_key.as_str()).map_err(io)?.is_some(),
                    None => true,
                };
                match decide(existing.as_ref(), fact_exists, requirement_met, &write, now) {
                    Decision::Nothing(outcome) => outcome,
                    Decision::WriteDeliveryOnly(delivery) => {
                        deliveries
                            .insert(key.as_str(), encode(&delivery)?.as_slice())
                            .map_err(io)?;
                        CaptureOutcome::FactAlreadyCaptured { delivery }
                    }
                    Decision::WriteIgnored(delivery) => {
                        deliveries
                            .insert(key.as_str(), encode(&delivery)?.as_slice())
                            .map_err(io)?;
                        CaptureOutcome::RequirementMissing { delivery }
                    }
                    Decision::WriteAll => {
                        deliveries
                            .insert(key.as_str(), encode(&write.delivery)?.as_slice())
                            .map_err(io)?;
                        for (record, entry) in write.facts() {
                            records
                                .insert(record.record_key.as_str(), encode(record)?.as_slice())
                                .map_err(io)?;
                            outbox
                                .insert(entry.envelope.event_id.as_str(), encode(entry)?.as_slice())
                                .map_err(io)?;
                        }
                        put_lines(&txn, &write.lines)?;
                        CaptureOutcome::Stored
                    }
                }
            };
            txn.commit().map_err(io)?;
            Ok(outcome)
        })
        .await
    }
}

#[async_trait]
impl CaptureStore for EmbeddedStore {
    async fn capture(&self, write: CaptureWrite) -> Result<CaptureOutcome, StoreError> {
        let announced: Vec<OutboxEntry> = if self.has_subscriber() {
            write.facts().map(|(_, e)| e.clone()).collect()
        } else {
            Vec::new()
        };
        let outcome = self.capture_committed(write).await?;
        if outcome == CaptureOutcome::Stored {
            self.announce(announced);
        }
        Ok(outcome)
    }

    async fn outbox_entry(&self, event_id: &EventId) -> Result<Option<OutboxEntry>, StoreError> {
        let id = event_id.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(io)?;
            let t = txn.open_table(OUTBOX).map_err(io)?;
            let v = t.get(id.as_str()).map_err(io)?;
            v.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn mark_published(
        &self,
        event_id: &EventId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let id = event_id.clone();
        // Nothing to commit (no fsync) when a publish that enqueues durably has marked it already.
        self.write(move |txn| {
            let mark = mark_published_in(txn, id.as_str(), at)?;
            Ok(((), mark == OutboxMark::Marked))
        })
        .await
    }

    async fn quarantine(&self, record: QuarantineRecord) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(io)?;
            {
                let mut t = txn.open_table(QUARANTINE).map_err(io)?;
                let key = record.key();
                // Keep the first copy: a vendor retry of the same delivery adds nothing.
                if t.get(key.as_str()).map_err(io)?.is_none() {
                    t.insert(key.as_str(), encode(&record)?.as_slice())
                        .map_err(io)?;
                }
            }
            txn.commit().map_err(io)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl QuarantineStore for EmbeddedStore {
    async fn quarantined_delivery(
        &self,
        vendor: Vendor,
        delivery_key: &str,
    ) -> Result<Option<QuarantineRecord>, StoreError> {
        let key = delivery_store_key(vendor, delivery_key);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(io)?;
            let t = txn.open_table(QUARANTINE).map_err(io)?;
            t.get(key.as_str())
                .map_err(io)?
                .map(|v| decode(v.value()))
                .transpose()
        })
        .await
    }

    async fn open_quarantine(&self) -> Result<Vec<QuarantineRecord>, StoreError> {
        let mut open: Vec<QuarantineRecord> = self
            .quarantined()
            .await?
            .into_iter()
            .filter(|q| q.resolution.is_none())
            .collect();
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
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(io)?;
            let recorded = {
                let mut t = txn.open_table(QUARANTINE).map_err(io)?;
                let current: Option<QuarantineRecord> = t
                    .get(key.as_str())
                    .map_err(io)?
                    .map(|v| decode(v.value()))
                    .transpose()?;
                match current {
                    Some(mut record) if record.resolution.is_none() => {
                        record.resolution = Some(resolution);
                        t.insert(key.as_str(), encode(&record)?.as_slice())
                            .map_err(io)?;
                        true
                    }
                    _ => false,
                }
            };
            txn.commit().map_err(io)?;
            Ok(recorded)
        })
        .await
    }
}

#[async_trait]
impl StoreInspect for EmbeddedStore {
    async fn records(&self) -> Result<Vec<CanonicalRecord>, StoreError> {
        let mut records: Vec<CanonicalRecord> = self.blocking(|db| Self::scan(db, RECORDS)).await?;
        records.sort_by(|a, b| (a.captured_at, &a.record_key).cmp(&(b.captured_at, &b.record_key)));
        Ok(records)
    }

    async fn quarantined(&self) -> Result<Vec<QuarantineRecord>, StoreError> {
        let mut q: Vec<QuarantineRecord> = self.blocking(|db| Self::scan(db, QUARANTINE)).await?;
        q.sort_by_key(|a| a.received_at);
        Ok(q)
    }

    async fn pending_outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        let all: Vec<OutboxEntry> = self.blocking(|db| Self::scan(db, OUTBOX)).await?;
        Ok(all
            .into_iter()
            .filter(|e| e.status == OutboxStatus::Pending)
            .collect())
    }
}

impl EmbeddedStore {
    /// Moves a pending outbox entry to `status` (published, or failed for good); any other state is kept.
    pub(crate) async fn settle_outbox(
        &self,
        event_id: &EventId,
        status: OutboxStatus,
    ) -> Result<(), StoreError> {
        let id = event_id.clone();
        self.write(move |txn| {
            let mark = settle_in(txn, id.as_str(), status)?;
            Ok(((), mark == OutboxMark::Marked))
        })
        .await
    }
}

/// Claim-checked lines ([`super::claim`]): (record key, chunk number) -> bytes of the lines' JSON.
const LINES: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("lines");

/// Writes the chunks of claim-checked lines inside the capture's transaction.
fn put_lines(
    txn: &redb::WriteTransaction,
    lines: &[super::claim::ClaimedLines],
) -> Result<(), StoreError> {
    let mut t = txn.open_table(LINES).map_err(io)?;
    for claimed in lines {
        for (n, chunk) in (0u32..).zip(&claimed.chunks) {
            t.insert((claimed.reference.key.as_str(), n), chunk.as_slice())
                .map_err(io)?;
        }
    }
    Ok(())
}

#[async_trait]
impl LinesSource for EmbeddedStore {
    async fn line_chunks(&self, reference: &LinesRef) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let (key, chunks) = (reference.key.clone(), reference.chunks);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(io)?;
            let t = txn.open_table(LINES).map_err(io)?;
            let mut out = Vec::with_capacity(chunks as usize);
            for n in 0..chunks {
                match t.get((key.as_str(), n)).map_err(io)? {
                    Some(v) => out.push(v.value().to_vec()),
                    None => return Ok(None),
                }
            }
            Ok(Some(out))
        })
        .await
    }
}
