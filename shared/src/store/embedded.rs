//! The embedded store: [redb](https://docs.rs/redb), an ACID key-value file, for local runs (data
//! survives a restart: every commit is fsynced) and, backed by memory, as the fake in unit tests.
//!
//! One redb write transaction covers the whole capture, so the atomicity is the same as DynamoDB's
//! `TransactWriteItems`. redb is synchronous: calls run on Tokio's blocking pool.
//!
//! **Group commit** ([`super::group`]): captures and [`EmbeddedStore::write`]s that arrive together
//! share one write transaction and one fsync, each applied in arrival order (a later one sees the
//! earlier ones, so duplicates inside a batch dedupe), and each caller is answered only after that
//! commit is durable. A write that fails is rerun out of the batch, so it fails alone. Captures are
//! encoded before they join a batch; a duplicate (nothing to write) costs no commit.
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

use super::group::GroupCommit;
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
    /// Every capture and [`write`](Self::write) goes through it: concurrent ones share a commit.
    group: GroupCommit,
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

    /// Runs `f` in a write transaction on this store's file, group-committed with the captures and
    /// writes waiting at the same time ([`group`](super::group)); answers once that commit is durable.
    /// `f` returns its result and whether it changed anything: a batch where nothing changed is aborted,
    /// so a look that finds nothing to do costs no fsync. `f` may run more than once (when another
    /// write of its batch fails): no side effects outside the transaction.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&WriteTransaction) -> Result<(T, bool), StoreError> + Send + 'static,
    {
        self.group.write(f, StoreError::Unavailable).await
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
        let db = Arc::new(db);
        Ok(Self {
            group: GroupCommit::new(db.clone()),
            db,
            feed: Arc::new(std::sync::Mutex::new(None)),
        })
    }

    /// Durable commits of captures and [`write`](Self::write)s since open: with concurrent callers,
    /// fewer than the writes (group commit).
    pub fn commits(&self) -> u64 {
        self.group.commits()
    }

    /// Captures and writes waiting for the next group commit.
    pub fn queued_writes(&self) -> usize {
        self.group.queued()
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

/// One capture inside a (group) transaction: read, [`decide`], write. Returns the outcome and whether it
/// wrote anything.
fn capture_in(
    txn: &WriteTransaction,
    write: &CaptureWrite,
    delivery_bytes: &[u8],
    fact_bytes: &[(Vec<u8>, Vec<u8>)],
) -> Result<(CaptureOutcome, bool), StoreError> {
    let now = write.delivery.received_at;
    let mut deliveries = txn.open_table(DELIVERIES).map_err(io)?;
    let mut records = txn.open_table(RECORDS).map_err(io)?;
    let key = write.delivery.key();
    let existing: Option<DeliveryRecord> = match deliveries.get(key.as_str()).map_err(io)? {
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
    Ok(
        match decide(existing.as_ref(), fact_exists, requirement_met, write, now) {
            Decision::Nothing(outcome) => (outcome, false),
            Decision::WriteDeliveryOnly(delivery) => {
                deliveries
                    .insert(key.as_str(), encode(&delivery)?.as_slice())
                    .map_err(io)?;
                (CaptureOutcome::FactAlreadyCaptured { delivery }, true)
            }
            Decision::WriteIgnored(delivery) => {
                deliveries
                    .insert(key.as_str(), encode(&delivery)?.as_slice())
                    .map_err(io)?;
                (CaptureOutcome::RequirementMissing { delivery }, true)
            }
            Decision::WriteAll => {
                deliveries
                    .insert(key.as_str(), delivery_bytes)
                    .map_err(io)?;
                let mut outbox = txn.open_table(OUTBOX).map_err(io)?;
                for ((record, entry), (record_bytes, entry_bytes)) in write.facts().zip(fact_bytes)
                {
                    records
                        .insert(record.record_key.as_str(), record_bytes.as_slice())
                        .map_err(io)?;
                    outbox
                        .insert(entry.envelope.event_id.as_str(), entry_bytes.as_slice())
                        .map_err(io)?;
                }
                put_lines(txn, &write.lines)?;
                (CaptureOutcome::Stored, true)
            }
        },
    )
}

impl EmbeddedStore {
    /// The capture's write, group-committed: answers once the commit holding it is durable.
    async fn capture_committed(&self, write: CaptureWrite) -> Result<CaptureOutcome, StoreError> {
        // Encoded before the batch: less work in the one writer, and a value that cannot be encoded
        // fails here, alone.
        let delivery_bytes = encode(&write.delivery)?;
        let fact_bytes = write
            .facts()
            .map(|(record, entry)| Ok((encode(record)?, encode(entry)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write(move |txn| capture_in(txn, &write, &delivery_bytes, &fact_bytes))
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
            let mark = settle_in(txn, id.as_str(), status.clone())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ReturnId, SaleId, StoreId};
    use crate::model::{CanonicalEvent, EventEnvelope, Return, Source};
    use crate::money::{Currency, Money};
    use crate::store::DeliveryOutcome;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// A capture of return `id` (no lines: the smallest fact) delivered as `delivery_key`.
    fn capture_of(id: &str, delivery_key: &str) -> CaptureWrite {
        let now = Utc::now();
        let eur = Currency::parse("EUR").expect("eur");
        let event = CanonicalEvent::ReturnCompleted(Return {
            return_id: ReturnId::parse(format!("standard:{id}")).expect("id"),
            sale_id: Some(SaleId::parse("standard:s1").expect("id")),
            store_id: StoreId::parse("store-1").expect("id"),
            occurred_at: now,
            source: Source {
                vendor: Vendor::Standard,
                external_id: id.into(),
                channel: None,
            },
            member_id: None,
            currency: eur,
            lines: Vec::new(),
            total_refund: Money::zero(eur),
        });
        let envelope = EventEnvelope::new(event.clone(), "c".into(), now);
        CaptureWrite {
            delivery: DeliveryRecord {
                vendor: Vendor::Standard,
                delivery_key: delivery_key.into(),
                payload_hash: format!("hash-{id}"),
                outcome: DeliveryOutcome::Captured {
                    record_key: event.record_key(),
                    event_id: envelope.event_id.clone(),
                },
                correlation_id: "c".into(),
                received_at: now,
                expires_at: now + chrono::Duration::days(7),
            },
            fact: Some((
                CanonicalRecord {
                    record_key: event.record_key(),
                    captured_at: now,
                    vendor: Vendor::Standard,
                    delivery_key: delivery_key.into(),
                    event,
                    lines_ref: None,
                },
                OutboxEntry {
                    envelope,
                    status: OutboxStatus::Pending,
                    created_at: now,
                },
            )),
            also: Vec::new(),
            requires: None,
            lines: Vec::new(),
        }
    }

    /// Holds the store's writer inside a write until the returned sender is dropped or sent to, so the
    /// writes started meanwhile queue up and form the next batch.
    async fn hold_the_writer(
        store: &EmbeddedStore,
    ) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let (gate, started_tx) = (Mutex::new(gate), Mutex::new(Some(started_tx)));
        let s = store.clone();
        let held = tokio::spawn(async move {
            s.write(move |_txn| {
                if let Some(tx) = started_tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(());
                }
                let _ = gate.lock().map(|g| g.recv());
                Ok(((), true))
            })
            .await
            .expect("held write");
        });
        started.await.expect("the writer started");
        (release, held)
    }

    /// Waits until `n` writes are queued behind the held writer (at most 5 s: the commit counts below
    /// are what the tests assert).
    async fn until_queued(store: &EmbeddedStore, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.queued_writes() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn batch_of(
        store: &EmbeddedStore,
        writes: Vec<CaptureWrite>,
    ) -> Vec<Result<CaptureOutcome, StoreError>> {
        let (release, held) = hold_the_writer(store).await;
        let n = writes.len();
        let tasks: Vec<_> = writes
            .into_iter()
            .map(|w| {
                let s = store.clone();
                tokio::spawn(async move { s.capture(w).await })
            })
            .collect();
        until_queued(store, n).await;
        release.send(()).expect("release");
        held.await.expect("held");
        let mut out = Vec::with_capacity(n);
        for t in tasks {
            out.push(t.await.expect("capture task"));
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_captures_share_one_commit() {
        let store = EmbeddedStore::in_memory().expect("store");
        let before = store.commits();
        let writes = (0..20)
            .map(|i| capture_of(&format!("r{i}"), &format!("d{i}")))
            .collect();
        let outcomes = batch_of(&store, writes).await;
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Ok(CaptureOutcome::Stored))),
            "{outcomes:?}"
        );
        // The held write's commit, then ONE commit for the 20 captures.
        assert_eq!(store.commits() - before, 2);
        assert_eq!(store.records().await.expect("records").len(), 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn duplicates_inside_one_batch_still_dedupe() {
        let store = EmbeddedStore::in_memory().expect("store");
        let before = store.commits();
        let first = capture_of("r1", "d1");
        // The same delivery again, and the same fact under another delivery id.
        let again = first.clone();
        let mut other_delivery = capture_of("r1", "d2");
        other_delivery.delivery.payload_hash = "another body".into();
        let outcomes = batch_of(&store, vec![first, again, other_delivery]).await;
        let stored = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(CaptureOutcome::Stored)))
            .count();
        let duplicate = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(CaptureOutcome::Duplicate(_))))
            .count();
        let fact_again = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(CaptureOutcome::FactAlreadyCaptured { .. })))
            .count();
        // Which of the two copies of d1 came first is the race's; the d2 one is always a duplicate fact
        // unless it came first, then d1's first copy is the duplicate fact and its second a duplicate.
        assert_eq!(stored, 1, "{outcomes:?}");
        assert_eq!(duplicate + fact_again, 2, "{outcomes:?}");
        assert!(fact_again >= 1, "{outcomes:?}");
        assert_eq!(store.records().await.expect("records").len(), 1);
        assert_eq!(store.pending_outbox().await.expect("outbox").len(), 1);
        assert_eq!(store.commits() - before, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_in_a_batch_fails_alone() {
        let store = EmbeddedStore::in_memory().expect("store");
        let broken = capture_of("r0", "d0");
        // A damaged delivery record: reading it fails the capture of that delivery (Corrupt).
        let key = broken.delivery.key();
        store
            .write(move |txn| {
                txn.open_table(DELIVERIES)
                    .map_err(io)?
                    .insert(key.as_str(), b"not json".as_slice())
                    .map_err(io)?;
                Ok(((), true))
            })
            .await
            .expect("damage");
        let before = store.commits();
        let mut writes = vec![capture_of("r1", "d1"), broken, capture_of("r2", "d2")];
        writes.push(capture_of("r3", "d3"));
        let outcomes = batch_of(&store, writes).await;
        assert!(
            matches!(outcomes[1], Err(StoreError::Corrupt(_))),
            "{outcomes:?}"
        );
        for i in [0, 2, 3] {
            assert!(
                matches!(outcomes[i], Ok(CaptureOutcome::Stored)),
                "{outcomes:?}"
            );
        }
        let keys: Vec<String> = store
            .records()
            .await
            .expect("records")
            .into_iter()
            .map(|r| r.record_key)
            .collect();
        assert_eq!(keys.len(), 3, "{keys:?}");
        assert!(!keys.iter().any(|k| k.contains("r0")), "{keys:?}");
        assert_eq!(store.commits() - before, 2);
    }
}
