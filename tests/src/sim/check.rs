//! The invariants checked after every run, read from the adapters themselves (not through the
//! simulation's wrappers), against the truth the simulated vendors know: which facts they sent and
//! which of them were answered 2xx.

use super::ports::DESTINATION;
use super::world::{FactKind, World};
use pos_shared::delivery::ledger::{DeliveryLedger, DeliveryStatus};
use pos_shared::ids::{MemberId, Sku, StoreId};
use pos_shared::loyalty::{EntryKind, LoyaltyLedger};
use pos_shared::model::CanonicalEvent;
use pos_shared::stock::StockLedger;
use pos_shared::store::StoreInspect;
use std::collections::BTreeMap;

/// The invariants of the issue, one per check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Invariant {
    /// The run could not be set up.
    Setup,
    /// Every sale or return answered 2xx is stored, once.
    Stored,
    /// Every stored fact reached the bus at least once.
    Published,
    /// Every fact is applied exactly once: stock equals the arithmetic truth; one accrual per sale, one
    /// ledger entry per earning sale and at most one per return; balances add up.
    AppliedOnce,
    /// Points reversed never exceed points earned, per sale and per line.
    ReversedWithinEarned,
    /// Nothing but poison reaches a DLQ.
    DlqOnlyPoison,
    /// Every sale and return reaches the destination exactly once, and its delivery ledger says so.
    DeliveredOnce,
    /// Everything drains: every delivery answered, the outbox empty, the run quiet.
    Drained,
}

impl Invariant {
    /// Its name, as the tests and the docs use it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Setup => "setup",
            Self::Stored => "stored",
            Self::Published => "published",
            Self::AppliedOnce => "applied_once",
            Self::ReversedWithinEarned => "reversed_within_earned",
            Self::DlqOnlyPoison => "dlq_only_poison",
            Self::DeliveredOnce => "delivered_once",
            Self::Drained => "drained",
        }
    }
}

/// One broken invariant, with what showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which.
    pub invariant: Invariant,
    /// What was seen.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.invariant.name(), self.detail)
    }
}

impl Violation {
    fn new(invariant: Invariant, detail: impl Into<String>) -> Self {
        Self {
            invariant,
            detail: detail.into(),
        }
    }

    pub(crate) fn setup(detail: &str) -> Self {
        Self::new(Invariant::Setup, detail)
    }

    pub(crate) fn stored(detail: String) -> Self {
        Self::new(Invariant::Stored, detail)
    }

    pub(crate) fn drained(detail: String) -> Self {
        Self::new(Invariant::Drained, detail)
    }
}

/// Checks every invariant; an empty list means the run held.
pub async fn invariants(world: &World) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut v = |i: Invariant, d: String| out.push(Violation::new(i, d));
    use Invariant::*;

    // Drained: every delivery answered 2xx in the end; the outbox empty.
    for d in world.deliveries.iter().filter(|d| !d.acknowledged) {
        v(
            Drained,
            format!(
                "delivery {} never answered 2xx (last status {:?}, {} attempts)",
                d.msg_id, d.last_status, d.attempts
            ),
        );
    }
    match world.store.pending_outbox().await {
        Ok(pending) => {
            for e in pending {
                v(
                    Drained,
                    format!("outbox entry {} still pending", e.envelope.event_id),
                );
            }
        }
        Err(e) => v(Setup, format!("outbox unreadable: {e}")),
    }

    // Stored, once; and what is stored, by event id.
    let records = match world.store.records().await {
        Ok(r) => r,
        Err(e) => {
            v(Setup, format!("records unreadable: {e}"));
            Vec::new()
        }
    };
    let mut stored: BTreeMap<String, Vec<CanonicalEvent>> = BTreeMap::new();
    for r in records {
        stored
            .entry(r.event.event_id().as_str().to_owned())
            .or_default()
            .push(r.event);
    }
    let published = world.bus.published();
    for (i, fact) in world.facts.iter().enumerate() {
        if !fact.acknowledged {
            continue;
        }
        let Some(id) = &fact.event_id else {
            v(Stored, format!("fact {i} acknowledged without an event id"));
            continue;
        };
        match stored.get(id.as_str()).map(Vec::len) {
            Some(1) => {}
            None => v(
                Stored,
                format!("fact {i} ({id}) answered 2xx but not stored"),
            ),
            Some(n) => v(Stored, format!("fact {i} ({id}) stored {n} times")),
        }
        if !published.contains_key(id.as_str()) {
            v(
                Published,
                format!("fact {i} ({id}) stored but never published"),
            );
        }
    }
    let known: Vec<&str> = world
        .facts
        .iter()
        .filter_map(|f| f.event_id.as_ref().map(|e| e.as_str()))
        .collect();
    for id in stored.keys() {
        if !known.contains(&id.as_str()) {
            v(
                Stored,
                format!("{id} stored but no delivery of it was answered 2xx"),
            );
        }
    }

    // Stock: the arithmetic truth of the acknowledged facts.
    let mut truth: BTreeMap<(String, String), i64> = BTreeMap::new();
    for fact in world.facts.iter().filter(|f| f.acknowledged) {
        match &fact.kind {
            FactKind::Sale { lines, .. } => {
                for l in lines {
                    *truth
                        .entry((fact.store.clone(), l.sku.clone()))
                        .or_default() -= l.quantity;
                }
            }
            FactKind::Return { lines, .. } => {
                for l in lines.iter().filter(|l| l.restock) {
                    *truth
                        .entry((fact.store.clone(), l.sku.clone()))
                        .or_default() += l.quantity;
                }
            }
        }
    }
    for store in ["store-001", "store-002"] {
        for n in 1..=5 {
            let sku = format!("SKU-{n:03}");
            let expected = truth
                .get(&(store.to_owned(), sku.clone()))
                .copied()
                .unwrap_or(0);
            let (Ok(s), Ok(k)) = (StoreId::parse(store), Sku::parse(sku.clone())) else {
                continue;
            };
            match world.stock.on_hand(&s, &k).await {
                Ok(actual) if actual == expected => {}
                Ok(actual) => v(
                    AppliedOnce,
                    format!("stock {store}/{sku} is {actual}, the facts say {expected}"),
                ),
                Err(e) => v(Setup, format!("stock unreadable: {e}")),
            }
        }
    }

    // Loyalty: one accrual per sale, one earn entry per earning sale, at most one reversal per return,
    // reversals within what was earned, balances equal to their entries.
    let mut members: BTreeMap<String, ()> = BTreeMap::new();
    for fact in world.facts.iter().filter(|f| f.acknowledged) {
        let (FactKind::Sale { member, .. }, Some(id)) = (&fact.kind, &fact.event_id) else {
            continue;
        };
        let Some(CanonicalEvent::SaleCompleted(sale)) =
            stored.get(id.as_str()).and_then(|e| e.first())
        else {
            continue;
        };
        let accrual = match world.loyalty.accrual(&sale.sale_id).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                v(
                    AppliedOnce,
                    format!("sale {} has no accrual record", sale.sale_id),
                );
                continue;
            }
            Err(e) => {
                v(Setup, format!("loyalty unreadable: {e}"));
                continue;
            }
        };
        let Some(member) = member else { continue };
        members.insert(member.clone(), ());
        let Ok(m) = MemberId::parse(member.clone()) else {
            continue;
        };
        let entries = world.loyalty.entries(&m).await.unwrap_or_default();
        let earned = accrual.accrual.as_ref().map_or(0, |a| a.points);
        let earns: Vec<_> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::Earn && e.event_id == *id)
            .collect();
        let expected_earns = usize::from(earned > 0);
        if earns.len() != expected_earns {
            v(
                AppliedOnce,
                format!(
                    "sale {} earned {earned} points and has {} earn entries",
                    sale.sale_id,
                    earns.len()
                ),
            );
        }
        let reversals: Vec<_> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::Reverse && e.sale_id.as_ref() == Some(&sale.sale_id))
            .collect();
        let requested: i64 = reversals.iter().map(|e| -e.points + e.unrecovered).sum();
        if requested > earned {
            v(
                ReversedWithinEarned,
                format!(
                    "sale {}: returns reversed {requested} points, it earned {earned}",
                    sale.sale_id
                ),
            );
        }
        if requested != accrual.reversed.points {
            v(
                ReversedWithinEarned,
                format!(
                    "sale {}: reversal entries total {requested}, its record says {}",
                    sale.sale_id, accrual.reversed.points
                ),
            );
        }
        if let Some(a) = &accrual.accrual {
            for line in &a.lines {
                let back = accrual
                    .reversed
                    .lines
                    .get(&line.line_id)
                    .copied()
                    .unwrap_or(0);
                if back > line.eligible_minor {
                    v(
                        ReversedWithinEarned,
                        format!(
                            "sale {} line {}: {back} reversed of {} eligible",
                            sale.sale_id, line.line_id, line.eligible_minor
                        ),
                    );
                }
            }
        }
    }
    for member in members.keys() {
        let Ok(m) = MemberId::parse(member.clone()) else {
            continue;
        };
        let entries = world.loyalty.entries(&m).await.unwrap_or_default();
        let mut seen = BTreeMap::new();
        for e in &entries {
            *seen.entry(e.event_id.as_str().to_owned()).or_insert(0) += 1;
            if !known.contains(&e.event_id.as_str()) {
                v(
                    AppliedOnce,
                    format!("{member}: entry for unknown event {}", e.event_id),
                );
            }
        }
        for (id, n) in seen.into_iter().filter(|(_, n)| *n > 1) {
            v(AppliedOnce, format!("{member}: {n} entries for {id}"));
        }
        let sum: i64 = entries.iter().map(|e| e.points).sum();
        match world.loyalty.balance(&m).await {
            Ok(b) if b == sum => {}
            Ok(b) => v(
                AppliedOnce,
                format!("{member}: balance {b}, entries sum to {sum}"),
            ),
            Err(e) => v(Setup, format!("loyalty unreadable: {e}")),
        }
    }

    // The destination: one write per fact, and the ledger says delivered.
    let writes = world.destination.writes();
    for (i, fact) in world.facts.iter().enumerate() {
        let (true, Some(id)) = (fact.acknowledged, &fact.event_id) else {
            continue;
        };
        match writes.get(id.as_str()).copied().unwrap_or(0) {
            1 => {}
            n => v(
                DeliveredOnce,
                format!("fact {i} ({id}) written {n} times to the destination"),
            ),
        }
        match world.deliveries_ledger.get(id, DESTINATION).await {
            Ok(Some(e)) if e.status == DeliveryStatus::Delivered => {}
            Ok(other) => v(
                DeliveredOnce,
                format!("fact {i} ({id}): ledger says {:?}", other.map(|e| e.status)),
            ),
            Err(e) => v(Setup, format!("delivery ledger unreadable: {e}")),
        }
    }
    for id in writes.keys() {
        if !known.contains(&id.as_str()) {
            v(
                DeliveredOnce,
                format!("{id} written to the destination but not a fact"),
            );
        }
    }

    // DLQs: poison only.
    for q in world.queues.lock().iter() {
        for m in &q.dlq {
            if !world.poison.contains(&m.body) {
                let what: String = m.body.chars().take(160).collect();
                v(
                    DlqOnlyPoison,
                    format!("{}: valid message dead-lettered: {what}", q.name),
                );
            }
        }
    }
    out
}
