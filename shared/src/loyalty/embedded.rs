//! The loyalty ledger in redb (local runs; in memory for tests): one write transaction per operation,
//! group-committed ([`crate::store::group`]): the operations running at the same time share a commit.

use super::rules::NegativeBalancePolicy;
use super::{
    AccrualRecord, LedgerEntry, LedgerPage, LoyaltyLedger, LoyaltyStoreError, ReversalPlanner,
    clamp_reversal,
};
use crate::ids::{EventId, MemberId, SaleId};
use crate::store::group::GroupCommit;
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::ops::Bound;
use std::sync::Arc;

const BALANCES: TableDefinition<&str, i64> = TableDefinition::new("loyalty_balances");
const TIERS: TableDefinition<&str, &str> = TableDefinition::new("loyalty_tiers");
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("loyalty_entries");
const ACCRUALS: TableDefinition<&str, &[u8]> = TableDefinition::new("loyalty_accruals");

/// redb-backed loyalty ledger.
#[derive(Clone)]
pub struct EmbeddedLoyaltyLedger {
    db: Arc<Database>,
    group: GroupCommit,
}

fn fail<E: std::fmt::Display>(e: E) -> LoyaltyStoreError {
    LoyaltyStoreError(e.to_string())
}

fn entry_key(e: &LedgerEntry) -> String {
    format!("{}#{}", e.member_id, e.event_id)
}

impl EmbeddedLoyaltyLedger {
    /// A ledger in `db` (tables created if absent).
    pub fn new(db: Arc<Database>) -> Result<Self, LoyaltyStoreError> {
        let txn = db.begin_write().map_err(fail)?;
        txn.open_table(BALANCES).map_err(fail)?;
        txn.open_table(TIERS).map_err(fail)?;
        txn.open_table(ENTRIES).map_err(fail)?;
        txn.open_table(ACCRUALS).map_err(fail)?;
        txn.commit().map_err(fail)?;
        Ok(Self {
            group: GroupCommit::new(db.clone()),
            db,
        })
    }

    /// A ledger in memory (unit tests).
    pub fn in_memory() -> Result<Self, LoyaltyStoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(fail)?;
        Self::new(Arc::new(db))
    }

    /// Sets a member's tier (what the CRM does).
    pub fn set_tier(&self, member: &MemberId, tier: &str) -> Result<(), LoyaltyStoreError> {
        let txn = self.db.begin_write().map_err(fail)?;
        txn.open_table(TIERS)
            .map_err(fail)?
            .insert(member.as_str(), tier)
            .map_err(fail)?;
        txn.commit().map_err(fail)
    }

    /// Every (member, balance), for inspection.
    pub fn balances(&self) -> Result<Vec<(String, i64)>, LoyaltyStoreError> {
        let txn = self.db.begin_read().map_err(fail)?;
        let t = txn.open_table(BALANCES).map_err(fail)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(fail)? {
            let (k, v) = row.map_err(fail)?;
            out.push((k.value().to_owned(), v.value()));
        }
        Ok(out)
    }

    /// One write, group-committed with the others waiting ([`GroupCommit`]): concurrent consumers share
    /// a transaction and its fsync, each answered after that commit. `f` may run again if another write
    /// of its batch fails.
    async fn write<T: Send + 'static>(
        &self,
        f: impl Fn(&redb::WriteTransaction) -> Result<T, LoyaltyStoreError> + Send + 'static,
    ) -> Result<T, LoyaltyStoreError> {
        self.group
            .write(move |txn| f(txn).map(|v| (v, true)), LoyaltyStoreError)
            .await
    }
}

#[async_trait]
impl LoyaltyLedger for EmbeddedLoyaltyLedger {
    async fn tier(&self, member: &MemberId) -> Result<Option<String>, LoyaltyStoreError> {
        let txn = self.db.begin_read().map_err(fail)?;
        let t = txn.open_table(TIERS).map_err(fail)?;
        Ok(t.get(member.as_str())
            .map_err(fail)?
            .map(|v| v.value().to_owned()))
    }

    async fn record_sale(
        &self,
        accrual: &AccrualRecord,
        entry: Option<&LedgerEntry>,
    ) -> Result<bool, LoyaltyStoreError> {
        let accrual = accrual.clone();
        let entry = entry.cloned();
        self.write(move |txn| {
            let mut accruals = txn.open_table(ACCRUALS).map_err(fail)?;
            if accruals
                .get(accrual.sale_id.as_str())
                .map_err(fail)?
                .is_some()
            {
                return Ok(false);
            }
            let bytes = serde_json::to_vec(&accrual).map_err(fail)?;
            accruals
                .insert(accrual.sale_id.as_str(), bytes.as_slice())
                .map_err(fail)?;
            if let Some(e) = &entry {
                let bytes = serde_json::to_vec(&e).map_err(fail)?;
                txn.open_table(ENTRIES)
                    .map_err(fail)?
                    .insert(entry_key(e).as_str(), bytes.as_slice())
                    .map_err(fail)?;
                let mut balances = txn.open_table(BALANCES).map_err(fail)?;
                let current = balances
                    .get(e.member_id.as_str())
                    .map_err(fail)?
                    .map_or(0, |v| v.value());
                balances
                    .insert(e.member_id.as_str(), current.saturating_add(e.points))
                    .map_err(fail)?;
            }
            Ok(true)
        })
        .await
    }

    async fn accrual(&self, sale: &SaleId) -> Result<Option<AccrualRecord>, LoyaltyStoreError> {
        let txn = self.db.begin_read().map_err(fail)?;
        let t = txn.open_table(ACCRUALS).map_err(fail)?;
        let v = t.get(sale.as_str()).map_err(fail)?;
        v.map(|v| serde_json::from_slice(v.value()).map_err(fail))
            .transpose()
    }

    async fn reverse(
        &self,
        template: &LedgerEntry,
        requested: i64,
        policy: NegativeBalancePolicy,
    ) -> Result<Option<LedgerEntry>, LoyaltyStoreError> {
        let template = template.clone();
        self.write(move |txn| {
            let mut entries = txn.open_table(ENTRIES).map_err(fail)?;
            let key = entry_key(&template);
            if entries.get(key.as_str()).map_err(fail)?.is_some() {
                return Ok(None);
            }
            let mut balances = txn.open_table(BALANCES).map_err(fail)?;
            let balance = balances
                .get(template.member_id.as_str())
                .map_err(fail)?
                .map_or(0, |v| v.value());
            let (applied, unrecovered) = clamp_reversal(balance, requested, policy);
            let entry = LedgerEntry {
                points: -applied,
                unrecovered,
                ..template.clone()
            };
            balances
                .insert(entry.member_id.as_str(), balance - applied)
                .map_err(fail)?;
            let bytes = serde_json::to_vec(&entry).map_err(fail)?;
            entries
                .insert(key.as_str(), bytes.as_slice())
                .map_err(fail)?;
            Ok(Some(entry))
        })
        .await
    }

    async fn reverse_return(
        &self,
        template: &LedgerEntry,
        sale: &SaleId,
        plan: ReversalPlanner,
        policy: NegativeBalancePolicy,
    ) -> Result<Option<LedgerEntry>, LoyaltyStoreError> {
        // One write transaction: redb serialises writers, so the record planned on is the one replaced.
        let (template, sale) = (template.clone(), sale.clone());
        self.write(move |txn| {
            let mut entries = txn.open_table(ENTRIES).map_err(fail)?;
            let key = entry_key(&template);
            if entries.get(key.as_str()).map_err(fail)?.is_some() {
                return Ok(None);
            }
            let mut accruals = txn.open_table(ACCRUALS).map_err(fail)?;
            let mut record: AccrualRecord = match accruals.get(sale.as_str()).map_err(fail)? {
                Some(v) => serde_json::from_slice(v.value()).map_err(fail)?,
                None => return Err(LoyaltyStoreError(format!("no accrual record for {sale}"))),
            };
            let (reversed, requested) = plan(&record);
            record.reversed = reversed;
            let mut balances = txn.open_table(BALANCES).map_err(fail)?;
            let balance = balances
                .get(template.member_id.as_str())
                .map_err(fail)?
                .map_or(0, |v| v.value());
            let (applied, unrecovered) = clamp_reversal(balance, requested, policy);
            let entry = LedgerEntry {
                points: -applied,
                unrecovered,
                ..template.clone()
            };
            balances
                .insert(entry.member_id.as_str(), balance - applied)
                .map_err(fail)?;
            let bytes = serde_json::to_vec(&entry).map_err(fail)?;
            entries
                .insert(key.as_str(), bytes.as_slice())
                .map_err(fail)?;
            let bytes = serde_json::to_vec(&record).map_err(fail)?;
            accruals
                .insert(sale.as_str(), bytes.as_slice())
                .map_err(fail)?;
            Ok(Some(entry))
        })
        .await
    }

    async fn balance(&self, member: &MemberId) -> Result<i64, LoyaltyStoreError> {
        let txn = self.db.begin_read().map_err(fail)?;
        let t = txn.open_table(BALANCES).map_err(fail)?;
        Ok(t.get(member.as_str())
            .map_err(fail)?
            .map_or(0, |v| v.value()))
    }

    async fn entries(&self, member: &MemberId) -> Result<Vec<LedgerEntry>, LoyaltyStoreError> {
        let txn = self.db.begin_read().map_err(fail)?;
        let t = txn.open_table(ENTRIES).map_err(fail)?;
        let prefix = format!("{member}#");
        let mut out: Vec<LedgerEntry> = Vec::new();
        for row in t.range(prefix.as_str()..).map_err(fail)? {
            let (k, v) = row.map_err(fail)?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            out.push(serde_json::from_slice(v.value()).map_err(fail)?);
        }
        out.sort_by(|a, b| {
            (a.occurred_at, a.event_id.as_str()).cmp(&(b.occurred_at, b.event_id.as_str()))
        });
        Ok(out)
    }

    async fn entries_page(
        &self,
        member: &MemberId,
        after: Option<&EventId>,
        limit: usize,
    ) -> Result<LedgerPage, LoyaltyStoreError> {
        // Keys are `{member}#{event_id}` and member ids have no `#`: the member's rows are contiguous, in
        // event-id byte order, the order of the DynamoDB sort key `ENTRY#{event_id}`.
        let prefix = format!("{member}#");
        let start = match after {
            Some(a) => Bound::Excluded(format!("{prefix}{a}")),
            None => Bound::Included(prefix.clone()),
        };
        let txn = self.db.begin_read().map_err(fail)?;
        let t = txn.open_table(ENTRIES).map_err(fail)?;
        let bounds: (Bound<&str>, Bound<&str>) =
            (start.as_ref().map(String::as_str), Bound::Unbounded);
        let mut out: Vec<LedgerEntry> = Vec::new();
        for row in t.range::<&str>(bounds).map_err(fail)? {
            let (k, v) = row.map_err(fail)?;
            if !k.value().starts_with(&prefix) || out.len() > limit {
                break;
            }
            out.push(serde_json::from_slice(v.value()).map_err(fail)?);
        }
        Ok(LedgerPage::from_probe(out, limit))
    }
}
