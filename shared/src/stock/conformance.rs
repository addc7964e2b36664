//! The stock ledger contract as executable checks, run against every adapter: the embedded ledger in
//! the unit tests, the DynamoDB ledger against moto in `tests/`. One scenario, so the adapters cannot
//! drift apart.

use super::{ApplyOutcome, StockCount, StockDelta, StockLedger};
use crate::ids::{EventId, Sku, StoreId};
use chrono::{DateTime, Duration, Utc};

/// One movement of the scenario.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// A delta at minute `m` after 10:00.
    Delta(i64, i64),
    /// A count at minute `m`.
    Count(i64, i64),
}

const STEPS: [Step; 6] = [
    Step::Delta(0, -2),
    Step::Delta(10, -1),
    Step::Count(15, 50),
    Step::Delta(20, -3),
    Step::Count(25, 40),
    Step::Delta(30, 10),
];

/// The latest count (40 at 10:25) plus what happened after it (+10).
const EXPECTED: i64 = 50;

fn base() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default()
}

/// The `n`-th permutation of `0..len` (factorial number system).
fn permutation(mut n: usize, len: usize) -> Vec<usize> {
    let mut pool: Vec<usize> = (0..len).collect();
    let mut out = Vec::with_capacity(len);
    for k in (1..=len).rev() {
        let f: usize = (1..k).product();
        out.push(pool.remove((n / f) % k));
        n %= f;
    }
    out
}

/// Number of orders the scenario can arrive in.
pub const ORDERS: usize = 720;

/// Applies the scenario's counts and deltas in each of the given arrival orders (indexes below
/// [`ORDERS`]), each on its own SKU of `store`, every step delivered twice, and checks that the level is
/// always the latest count plus the deltas after it. Also: a count older than the latest is stale, and
/// a count older than the move retention is refused as stale.
pub async fn counts_and_deltas_commute(
    ledger: &dyn StockLedger,
    store: &StoreId,
    orders: impl IntoIterator<Item = usize>,
) -> Result<(), String> {
    let now = base() + Duration::hours(1);
    for order in orders {
        let sku = Sku::parse(format!("SKU #{order}")).map_err(|e| e.to_string())?;
        let mut stale = 0;
        for i in permutation(order, STEPS.len()) {
            let id = EventId::parse(format!("evt:conf:{order}:{i}")).map_err(|e| e.to_string())?;
            for delivery in 0..2 {
                let outcome = match STEPS[i] {
                    Step::Delta(m, delta) => {
                        let d = StockDelta {
                            store_id: store.clone(),
                            sku: sku.clone(),
                            delta,
                        };
                        ledger.apply(&id, base() + Duration::minutes(m), &[d]).await
                    }
                    Step::Count(m, on_hand) => {
                        let count = StockCount {
                            store_id: store.clone(),
                            sku: sku.clone(),
                            on_hand,
                            counted_at: base() + Duration::minutes(m),
                        };
                        ledger.apply_count(&id, &count, now).await
                    }
                }
                .map_err(|e| format!("order {order}, step {i}: {e}"))?;
                match (delivery, &outcome) {
                    (0, ApplyOutcome::StaleCount) => stale += 1,
                    (0, ApplyOutcome::Applied(_)) => {}
                    (1, ApplyOutcome::AlreadyApplied) => {}
                    _ => {
                        return Err(format!(
                            "order {order}, step {i}, delivery {delivery}: {outcome:?}"
                        ));
                    }
                }
            }
        }
        let level = ledger
            .on_hand(store, &sku)
            .await
            .map_err(|e| e.to_string())?;
        if level != EXPECTED {
            return Err(format!(
                "order {order} ({:?}): on hand {level}, expected {EXPECTED}",
                permutation(order, STEPS.len())
            ));
        }
        // The count at 10:15 is stale exactly when it arrives after the one at 10:25.
        let p = permutation(order, STEPS.len());
        let late = p.iter().position(|i| *i == 2) > p.iter().position(|i| *i == 4);
        if stale != usize::from(late) {
            return Err(format!(
                "order {order}: {stale} stale counts, expected {}",
                usize::from(late)
            ));
        }
    }
    // A count older than the retention: the deltas after it may be gone, so it changes nothing.
    let sku = Sku::parse("SKU old count").map_err(|e| e.to_string())?;
    let old = StockCount {
        store_id: store.clone(),
        sku: sku.clone(),
        on_hand: 7,
        counted_at: now - Duration::days(super::MOVE_RETENTION_DAYS + 1),
    };
    let id = EventId::parse("evt:conf:old").map_err(|e| e.to_string())?;
    match ledger.apply_count(&id, &old, now).await {
        Ok(ApplyOutcome::StaleCount) => {}
        other => return Err(format!("old count: {other:?}")),
    }
    match ledger.on_hand(store, &sku).await {
        Ok(0) => Ok(()),
        other => Err(format!("old count changed the level: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_distinct_and_complete() {
        let all: std::collections::BTreeSet<Vec<usize>> =
            (0..ORDERS).map(|n| permutation(n, STEPS.len())).collect();
        assert_eq!(all.len(), ORDERS);
    }

    #[tokio::test]
    async fn the_embedded_ledger_honours_counts_in_every_arrival_order() {
        let ledger = super::super::embedded::EmbeddedStockLedger::in_memory().expect("ledger");
        let store = StoreId::parse("store-1").expect("store");
        counts_and_deltas_commute(&ledger, &store, 0..ORDERS)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
