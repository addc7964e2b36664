//! The stock ledger in redb (local runs; in memory for tests): one write transaction per event.

use super::{ApplyOutcome, LedgerError, StockChange, StockDelta, StockLedger};
use crate::ids::{EventId, Sku, StoreId};
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::sync::Arc;

const LEVELS: TableDefinition<&str, i64> = TableDefinition::new("stock_levels");
const APPLIED: TableDefinition<&str, ()> = TableDefinition::new("stock_applied");

/// redb-backed ledger.
#[derive(Clone)]
pub struct EmbeddedStockLedger {
    db: Arc<Database>,
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
        txn.commit().map_err(fail)?;
        Ok(Self { db })
    }

    /// A ledger in memory (unit tests).
    pub fn in_memory() -> Result<Self, LedgerError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(fail)?;
        Self::new(Arc::new(db))
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
        deltas: &[StockDelta],
    ) -> Result<ApplyOutcome, LedgerError> {
        let db = self.db.clone();
        let event_id = event_id.clone();
        let deltas = deltas.to_vec();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(fail)?;
            let outcome = {
                let mut applied = txn.open_table(APPLIED).map_err(fail)?;
                if applied.get(event_id.as_str()).map_err(fail)?.is_some() {
                    ApplyOutcome::AlreadyApplied
                } else {
                    applied.insert(event_id.as_str(), ()).map_err(fail)?;
                    let mut levels = txn.open_table(LEVELS).map_err(fail)?;
                    let mut changes = Vec::with_capacity(deltas.len());
                    for d in deltas {
                        let k = key(&d.store_id, &d.sku);
                        let current = levels
                            .get(k.as_str())
                            .map_err(fail)?
                            .map_or(0, |v| v.value());
                        let on_hand = current
                            .checked_add(d.delta)
                            .ok_or_else(|| LedgerError(format!("stock of {k} overflows")))?;
                        levels.insert(k.as_str(), on_hand).map_err(fail)?;
                        changes.push(StockChange { delta: d, on_hand });
                    }
                    ApplyOutcome::Applied(changes)
                }
            };
            txn.commit().map_err(fail)?;
            Ok(outcome)
        })
        .await
        .map_err(fail)?
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
