//! The stock ledger in redb (local runs; in memory for tests): one write transaction per event,
//! group-committed ([`crate::store::group`]): the events applied at the same time share a commit.
//!
//! | table          | key                                  | value                        |
//! |----------------|--------------------------------------|------------------------------|
//! | `stock_levels` | `{store}#{sku}` (store ids have no `#`) | on hand                   |
//! | `stock_counts` | `{store}#{sku}`                      | latest count's time (sortable) |
//! | `stock_moves`  | (store, sku, `{time}#{event_id}`)    | delta (kept for later counts)  |
//! | `stock_applied`| event id                             | ()                           |

use super::{
    ApplyOutcome, LedgerError, MOVE_RETENTION_DAYS, StockChange, StockCount, StockDelta,
    StockLedger, sortable_time,
};
use crate::ids::{EventId, Sku, StoreId};
use crate::store::group::GroupCommit;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::sync::Arc;

const LEVELS: TableDefinition<&str, i64> = TableDefinition::new("stock_levels");
const APPLIED: TableDefinition<&str, ()> = TableDefinition::new("stock_applied");
const COUNTS: TableDefinition<&str, &str> = TableDefinition::new("stock_counts");
const MOVES: TableDefinition<(&str, &str, &str), i64> = TableDefinition::new("stock_moves");

/// redb-backed ledger.
#[derive(Clone)]
pub struct EmbeddedStockLedger {
    db: Arc<Database>,
    group: GroupCommit,
}

fn fail<E: std::fmt::Display>(e: E) -> LedgerError {
    LedgerError(e.to_string())
}

fn key(store: &StoreId, sku: &Sku) -> String {
    format!("{store}#{sku}")
}

impl EmbeddedStockLedger {
    /// A ledger in `db` (tables are created if absent).
    pub fn new(db: Arc<Database>) -> Result<Self, LedgerError> {
        let txn = db.begin_write().map_err(fail)?;
        txn.open_table(LEVELS).map_err(fail)?;
        txn.open_table(APPLIED).map_err(fail)?;
        txn.open_table(COUNTS).map_err(fail)?;
        txn.open_table(MOVES).map_err(fail)?;
        txn.commit().map_err(fail)?;
        Ok(Self {
            group: GroupCommit::new(db.clone()),
            db,
        })
    }

    /// A ledger in memory (unit tests).
    pub fn in_memory() -> Result<Self, LedgerError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(fail)?;
        Self::new(Arc::new(db))
    }

    /// One write, group-committed with the others waiting ([`GroupCommit`]): concurrent consumers share
    /// a transaction and its fsync, each answered after that commit. `f` may run again if another write
    /// of its batch fails.
    async fn write<T: Send + 'static>(
        &self,
        f: impl Fn(&redb::WriteTransaction) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.group
            .write(move |txn| f(txn).map(|v| (v, true)), LedgerError)
            .await
    }

    /// Durable commits since open: fewer than the applies when they run concurrently (group commit).
    pub fn commits(&self) -> u64 {
        self.group.commits()
    }

    /// Every (store, sku, on hand), for inspection.
    pub fn levels(&self) -> Result<Vec<(String, i64)>, LedgerError> {
        let txn = self.db.begin_read().map_err(fail)?;
        let t = txn.open_table(LEVELS).map_err(fail)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(fail)? {
            let (k, v) = row.map_err(fail)?;
            out.push((k.value().to_owned(), v.value()));
        }
        Ok(out)
    }
}

#[async_trait]
impl StockLedger for EmbeddedStockLedger {
    async fn apply(
        &self,
        event_id: &EventId,
        at: DateTime<Utc>,
        deltas: &[StockDelta],
    ) -> Result<ApplyOutcome, LedgerError> {
        let event_id = event_id.clone();
        let deltas = deltas.to_vec();
        self.write(move |txn| {
            let mut applied = txn.open_table(APPLIED).map_err(fail)?;
            if applied.get(event_id.as_str()).map_err(fail)?.is_some() {
                return Ok(ApplyOutcome::AlreadyApplied);
            }
            applied.insert(event_id.as_str(), ()).map_err(fail)?;
            let mut levels = txn.open_table(LEVELS).map_err(fail)?;
            let counts = txn.open_table(COUNTS).map_err(fail)?;
            let mut moves = txn.open_table(MOVES).map_err(fail)?;
            let time = sortable_time(at);
            let move_key = format!("{time}#{event_id}");
            let mut changes = Vec::with_capacity(deltas.len());
            for d in &deltas {
                let k = key(&d.store_id, &d.sku);
                // Inside the latest count already: nothing changes.
                if let Some(counted) = counts.get(k.as_str()).map_err(fail)?
                    && time.as_str() <= counted.value()
                {
                    continue;
                }
                let current = levels
                    .get(k.as_str())
                    .map_err(fail)?
                    .map_or(0, |v| v.value());
                let on_hand = current
                    .checked_add(d.delta)
                    .ok_or_else(|| LedgerError(format!("stock of {k} overflows")))?;
                levels.insert(k.as_str(), on_hand).map_err(fail)?;
                moves
                    .insert(
                        (d.store_id.as_str(), d.sku.as_str(), move_key.as_str()),
                        d.delta,
                    )
                    .map_err(fail)?;
                changes.push(StockChange {
                    delta: d.clone(),
                    on_hand,
                });
            }
            Ok(ApplyOutcome::Applied(changes))
        })
        .await
    }

    async fn apply_count(
        &self,
        event_id: &EventId,
        count: &StockCount,
        now: DateTime<Utc>,
    ) -> Result<ApplyOutcome, LedgerError> {
        let event_id = event_id.clone();
        let count = count.clone();
        self.write(move |txn| {
            let mut applied = txn.open_table(APPLIED).map_err(fail)?;
            if applied.get(event_id.as_str()).map_err(fail)?.is_some() {
                return Ok(ApplyOutcome::AlreadyApplied);
            }
            applied.insert(event_id.as_str(), ()).map_err(fail)?;
            let k = key(&count.store_id, &count.sku);
            let time = sortable_time(count.counted_at);
            let mut counts = txn.open_table(COUNTS).map_err(fail)?;
            let newer = counts
                .get(k.as_str())
                .map_err(fail)?
                .is_some_and(|c| c.value() >= time.as_str());
            if newer || count.counted_at < now - chrono::Duration::days(MOVE_RETENTION_DAYS) {
                return Ok(ApplyOutcome::StaleCount);
            }
            let moves = txn.open_table(MOVES).map_err(fail)?;
            // Every key of a move at the count's time sorts below `{time}#\u{10FFFF}` (event ids are ASCII).
            let after = format!("{time}#\u{10FFFF}");
            let mut since: i64 = 0;
            for row in moves
                .range((count.store_id.as_str(), count.sku.as_str(), after.as_str())..)
                .map_err(fail)?
            {
                let (mk, delta) = row.map_err(fail)?;
                let (store, sku, _) = mk.value();
                if store != count.store_id.as_str() || sku != count.sku.as_str() {
                    break;
                }
                since = since
                    .checked_add(delta.value())
                    .ok_or_else(|| LedgerError(format!("stock of {k} overflows")))?;
            }
            let on_hand = count
                .on_hand
                .checked_add(since)
                .ok_or_else(|| LedgerError(format!("stock of {k} overflows")))?;
            let mut levels = txn.open_table(LEVELS).map_err(fail)?;
            let before = levels
                .get(k.as_str())
                .map_err(fail)?
                .map_or(0, |v| v.value());
            levels.insert(k.as_str(), on_hand).map_err(fail)?;
            counts.insert(k.as_str(), time.as_str()).map_err(fail)?;
            Ok(ApplyOutcome::Applied(vec![StockChange {
                delta: StockDelta {
                    store_id: count.store_id.clone(),
                    sku: count.sku.clone(),
                    delta: on_hand - before,
                },
                on_hand,
            }]))
        })
        .await
    }

    async fn store_levels(
        &self,
        store: &StoreId,
        after: Option<&Sku>,
        limit: usize,
    ) -> Result<(Vec<(Sku, i64)>, Option<Sku>), LedgerError> {
        let prefix = format!("{store}#");
        let txn = self.db.begin_read().map_err(fail)?;
        let t = txn.open_table(LEVELS).map_err(fail)?;
        let mut out: Vec<(Sku, i64)> = Vec::new();
        for row in t.range(prefix.as_str()..).map_err(fail)? {
            let (k, v) = row.map_err(fail)?;
            let Some(sku) = k.value().strip_prefix(&prefix).map(str::to_owned) else {
                break;
            };
            if after.is_some_and(|a| sku.as_str() <= a.as_str()) {
                continue;
            }
            out.push((Sku::parse(sku).map_err(fail)?, v.value()));
            if out.len() > limit {
                break;
            }
        }
        let more = out.len() > limit;
        out.truncate(limit);
        let next = if more {
            out.last().map(|(s, _)| s.clone())
        } else {
            None
        };
        Ok((out, next))
    }

    async fn on_hand(&self, store: &StoreId, sku: &Sku) -> Result<i64, LedgerError> {
        let txn = self.db.begin_read().map_err(fail)?;
        let t = txn.open_table(LEVELS).map_err(fail)?;
        Ok(t.get(key(store, sku).as_str())
            .map_err(fail)?
            .map_or(0, |v| v.value()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_applies_share_one_commit_and_apply_once() {
        let ledger = EmbeddedStockLedger::in_memory().expect("ledger");
        let (store, sku) = (
            StoreId::parse("s1").expect("store"),
            Sku::parse("TEE").expect("sku"),
        );
        // Hold the writer so the applies below queue up into one batch.
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let (gate, started_tx) = (Mutex::new(gate), Mutex::new(Some(started_tx)));
        let group = ledger.group.clone();
        let held = tokio::spawn(async move {
            group
                .write(
                    move |_txn| {
                        if let Some(tx) = started_tx.lock().ok().and_then(|mut t| t.take()) {
                            let _ = tx.send(());
                        }
                        let _ = gate.lock().map(|g| g.recv());
                        Ok(((), true))
                    },
                    LedgerError,
                )
                .await
        });
        started.await.expect("held");
        let before = ledger.commits();
        // Ten sales of one unit, and the first one delivered twice.
        let ids: Vec<usize> = (0..10).chain([0]).collect();
        let tasks: Vec<_> = ids
            .iter()
            .map(|i| {
                let (ledger, id) = (
                    ledger.clone(),
                    EventId::parse(format!("evt:sale:s:{i}")).expect("id"),
                );
                let delta = vec![StockDelta {
                    store_id: store.clone(),
                    sku: sku.clone(),
                    delta: -1,
                }];
                tokio::spawn(async move { ledger.apply(&id, Utc::now(), &delta).await })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        while ledger.group.queued() < ids.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        release.send(()).expect("release");
        held.await.expect("held task").expect("held write");
        let mut again = 0;
        for t in tasks {
            if t.await.expect("task").expect("apply") == ApplyOutcome::AlreadyApplied {
                again += 1;
            }
        }
        assert_eq!(again, 1);
        assert_eq!(ledger.on_hand(&store, &sku).await.expect("on hand"), -10);
        // The held write's commit, then one for the eleven applies.
        assert_eq!(ledger.commits() - before, 2);
    }
}
