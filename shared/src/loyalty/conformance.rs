//! The ledger paging contract as an executable check, run against every adapter: the embedded ledger
//! (in memory and on disk) in the unit tests, the DynamoDB ledger against moto in `tests/`. One
//! scenario, so the adapters cannot drift apart.

use super::{AccrualRecord, EntryKind, LedgerEntry, LoyaltyLedger};
use crate::ids::{EventId, MemberId, SaleId};
use chrono::{DateTime, Utc};

fn at() -> DateTime<Utc> {
    // Every entry at the same instant: the order must not depend on time.
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default()
}

async fn earn(ledger: &dyn LoyaltyLedger, member: &MemberId, id: &str) -> Result<(), String> {
    let sale = SaleId::parse(format!("{member}.{id}")).map_err(|e| e.to_string())?;
    let entry = LedgerEntry {
        event_id: EventId::parse(format!("evt:sale:{id}")).map_err(|e| e.to_string())?,
        member_id: member.clone(),
        kind: EntryKind::Earn,
        points: 1,
        unrecovered: 0,
        sale_id: Some(sale.clone()),
        occurred_at: at(),
    };
    let record = AccrualRecord {
        sale_id: sale,
        member_id: Some(member.clone()),
        accrual: None,
        reversed: Default::default(),
    };
    match ledger.record_sale(&record, Some(&entry)).await {
        Ok(true) => Ok(()),
        other => Err(format!("recording {id}: {other:?}")),
    }
}

/// Reads `member`'s whole ledger `limit` entries at a time: (event ids, pages).
async fn read_all(
    ledger: &dyn LoyaltyLedger,
    member: &MemberId,
    limit: usize,
) -> Result<(Vec<String>, usize), String> {
    let mut seen = Vec::new();
    let mut after: Option<EventId> = None;
    let mut pages = 0;
    loop {
        let page = ledger
            .entries_page(member, after.as_ref(), limit)
            .await
            .map_err(|e| e.to_string())?;
        pages += 1;
        if page.entries.len() > limit || pages > 100 {
            return Err(format!("page {pages} has {} entries", page.entries.len()));
        }
        if page.entries.iter().any(|e| &e.member_id != member) {
            return Err(format!("page {pages} holds another member's entry"));
        }
        seen.extend(page.entries.iter().map(|e| e.event_id.to_string()));
        match page.next {
            Some(next) if page.entries.last().map(|e| &e.event_id) == Some(&next) => {
                after = Some(next)
            }
            Some(next) => return Err(format!("next {next} is not the page's last entry")),
            None => return Ok((seen, pages)),
        }
    }
}

/// Writes seven entries of `member` (all at one instant, written out of key order) and two of
/// `other`, then checks: every page size reads each entry exactly once in event-id order, `next` is
/// absent exactly on the last page (also when the last page is full), an entry written after the cursor
/// shows up on a later page and one before it does not shift what follows, and a member without
/// entries has one empty page.
pub async fn pages_in_key_order(
    ledger: &dyn LoyaltyLedger,
    member: &MemberId,
    other: &MemberId,
    empty: &MemberId,
) -> Result<(), String> {
    for id in ["e", "b", "g", "a", "d", "c", "f"] {
        earn(ledger, member, id).await?;
    }
    for id in ["a2", "z"] {
        earn(ledger, other, id).await?;
    }
    let expected: Vec<String> = ["a", "b", "c", "d", "e", "f", "g"]
        .iter()
        .map(|id| format!("evt:sale:{id}"))
        .collect();
    for (limit, pages) in [(1, 7), (2, 4), (3, 3), (7, 1), (100, 1)] {
        let (seen, n) = read_all(ledger, member, limit).await?;
        if seen != expected || n != pages {
            return Err(format!("limit {limit}: {n} pages of {seen:?}"));
        }
    }
    // Concurrent writes: after a first page [a, b, c], `b0` (before the cursor) is not shown and
    // `c0` (after it) is, on the next page; nothing repeats.
    let first = ledger
        .entries_page(member, None, 3)
        .await
        .map_err(|e| e.to_string())?;
    earn(ledger, member, "b0").await?;
    earn(ledger, member, "c0").await?;
    let second = ledger
        .entries_page(member, first.next.as_ref(), 3)
        .await
        .map_err(|e| e.to_string())?;
    let ids: Vec<&str> = second.entries.iter().map(|e| e.event_id.as_str()).collect();
    if ids != ["evt:sale:c0", "evt:sale:d", "evt:sale:e"] {
        return Err(format!("page after concurrent writes: {ids:?}"));
    }
    let page = ledger
        .entries_page(empty, None, 10)
        .await
        .map_err(|e| e.to_string())?;
    if !page.entries.is_empty() || page.next.is_some() {
        return Err(format!("empty ledger: {page:?}"));
    }
    Ok(())
}
