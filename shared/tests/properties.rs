//! Property tests (proptest) of the arithmetic every ledger relies on: money and quantities (laws,
//! overflow is an error and never a wrap, decimal text round-trips per currency exponent), and the stock
//! ledger's documented rule that counts and deltas commute (`pos_shared::stock` module docs), on the
//! in-memory adapter.

use chrono::{DateTime, Duration, Utc};
use pos_shared::ids::{EventId, Sku, StoreId};
use pos_shared::model::Quantity;
use pos_shared::money::{Currency, Money, MoneyError, VendorAmount};
use pos_shared::stock::embedded::EmbeddedStockLedger;
use pos_shared::stock::{ApplyOutcome, StockCount, StockDelta, StockLedger};
use proptest::prelude::*;

/// Currencies of every minor-unit exponent: 0 (JPY), 2 (EUR, USD), 3 (KWD), 4 (CLF).
const CODES: [&str; 5] = ["JPY", "EUR", "USD", "KWD", "CLF"];

fn currency() -> impl Strategy<Value = Currency> {
    prop::sample::select(CODES.to_vec())
        .prop_map(|c| Currency::parse(c).unwrap_or_else(|e| panic!("{c}: {e}")))
}

/// Any i64, with the edges (0, ±1, MIN, MAX) much more often than chance would give them.
fn minor() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        prop::sample::select(vec![
            0,
            1,
            -1,
            i64::MIN,
            i64::MAX,
            i64::MIN + 1,
            i64::MAX - 1
        ]),
        -1_000_000_i64..1_000_000,
    ]
}

/// The exact result, when it fits in i64 minor units.
fn fits(v: i128) -> Option<i64> {
    i64::try_from(v).ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn addition_is_exact_or_an_error_never_a_wrap(a in minor(), b in minor(), c in currency()) {
        let sum = Money::from_minor(a, c).checked_add(Money::from_minor(b, c));
        match fits(i128::from(a) + i128::from(b)) {
            Some(exact) => prop_assert_eq!(sum, Ok(Money::from_minor(exact, c))),
            None => prop_assert!(matches!(sum, Err(MoneyError::OutOfRange(_))), "{:?}", sum),
        }
    }

    #[test]
    fn addition_commutes_has_zero_and_associates_when_it_fits(a in minor(), b in minor(), d in minor(), c in currency()) {
        let (ma, mb, md) = (Money::from_minor(a, c), Money::from_minor(b, c), Money::from_minor(d, c));
        prop_assert_eq!(ma.checked_add(mb).ok(), mb.checked_add(ma).ok());
        prop_assert_eq!(ma.checked_add(Money::zero(c)), Ok(ma));
        if let (Ok(left), Ok(right)) = (
            ma.checked_add(mb).and_then(|x| x.checked_add(md)),
            mb.checked_add(md).and_then(|x| ma.checked_add(x)),
        ) {
            prop_assert_eq!(left, right);
        }
    }

    #[test]
    fn amounts_of_two_currencies_never_add(a in minor(), b in minor(), c1 in currency(), c2 in currency()) {
        prop_assume!(c1 != c2);
        let sum = Money::from_minor(a, c1).checked_add(Money::from_minor(b, c2));
        prop_assert!(matches!(sum, Err(MoneyError::Mismatch(_, _))), "{:?}", sum);
    }

    #[test]
    fn multiplication_is_exact_or_an_error_and_distributes(a in minor(), b in minor(), n in minor(), c in currency()) {
        let ma = Money::from_minor(a, c);
        match fits(i128::from(a) * i128::from(n)) {
            Some(exact) => prop_assert_eq!(ma.checked_mul(n), Ok(Money::from_minor(exact, c))),
            None => prop_assert!(matches!(ma.checked_mul(n), Err(MoneyError::OutOfRange(_)))),
        }
        prop_assert_eq!(ma.checked_mul(1), Ok(ma));
        prop_assert_eq!(ma.checked_mul(0), Ok(Money::zero(c)));
        let mb = Money::from_minor(b, c);
        if let (Ok(left), Ok(right)) = (
            ma.checked_add(mb).and_then(|s| s.checked_mul(n)),
            ma.checked_mul(n).and_then(|x| mb.checked_mul(n).and_then(|y| x.checked_add(y))),
        ) {
            prop_assert_eq!(left, right);
        }
    }

    #[test]
    fn a_line_total_of_a_valid_quantity_is_exact_or_an_error(price in minor(), q in 1_i64..=1_000_000, c in currency()) {
        let quantity = Quantity::new(q).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let total = Money::from_minor(price, c).checked_mul(i64::from(quantity));
        prop_assert_eq!(total.ok().map(|m| m.minor), fits(i128::from(price) * i128::from(q)));
    }

    #[test]
    fn quantities_are_whole_numbers_from_1_to_the_maximum(n in minor()) {
        let q = Quantity::new(n);
        prop_assert_eq!(q.is_ok(), (1..=i64::from(Quantity::MAX)).contains(&n));
        if let Ok(q) = q {
            prop_assert_eq!(i64::from(q), n);
            prop_assert_eq!(Quantity::from_json(&serde_json::json!(n)), Ok(q));
            prop_assert_eq!(Quantity::from_json(&serde_json::json!(n as f64)), Ok(q));
        }
        // A fraction is never a quantity (below 2^52, where an f64 still has a fractional part).
        if n.unsigned_abs() < (1 << 52) {
            prop_assert!(Quantity::from_json(&serde_json::json!(n as f64 + 0.5)).is_err());
        }
    }

    #[test]
    fn decimal_text_round_trips_per_currency_exponent(m in minor(), c in currency()) {
        let money = Money::from_minor(m, c);
        let text = money.to_string();
        let (number, code) = text.split_once(' ').unwrap_or_default();
        prop_assert_eq!(code, c.code());
        prop_assert_eq!(number.split_once('.').map_or(0, |(_, f)| f.len()), c.exponent() as usize);
        prop_assert_eq!(Money::parse_decimal(number, c), Ok(money));
        // Trailing zeros carry no value; one more significant decimal than the currency has is refused.
        prop_assert_eq!(Money::parse_decimal(&format!("{number}{}0", if c.exponent() == 0 { "." } else { "" }), c), Ok(money));
        let too_precise = format!("{number}{}{}1", if c.exponent() == 0 { "." } else { "" }, "0");
        prop_assert!(matches!(Money::parse_decimal(&too_precise, c), Err(MoneyError::TooPrecise { .. })), "{}", too_precise);
    }

    #[test]
    fn vendor_amounts_round_trip_and_round_half_away_from_zero(units in minor(), c in currency()) {
        // Build the amount from its text (no public constructor from units) and check it round-trips.
        let text = {
            let sign = if units < 0 { "-" } else { "" };
            let abs = units.unsigned_abs();
            format!("{sign}{}.{:05}", abs / 100_000, abs % 100_000)
        };
        let amount = VendorAmount::parse(&text);
        prop_assert_eq!(amount.clone().map(VendorAmount::units), Ok(units), "{}", text);
        let amount = amount.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(amount.to_string(), text.clone());
        let scale = 10_i128.pow(VendorAmount::SCALE - c.exponent());
        let rounded = amount.round_to(c).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = i128::from(rounded.minor) * scale;
        let diff = back - i128::from(units);
        // Nearest minor unit; a tie goes away from zero.
        prop_assert!(2 * diff.abs() <= scale, "{} -> {}", text, rounded);
        if 2 * diff.abs() == scale {
            prop_assert_eq!(back.signum(), i128::from(units).signum());
        }
        prop_assert_eq!(amount.exact_in(c).is_ok(), diff == 0);
    }
}

fn base() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .map(|t| t.to_utc())
        .unwrap_or_default()
}

/// A movement of one store + SKU at minute `m` after 10:00.
#[derive(Debug, Clone, Copy)]
enum Step {
    Delta { m: i64, delta: i64 },
    Count { m: i64, on_hand: i64 },
}

/// Deltas and counts within the move retention; counts at distinct minutes (two counts of one SKU at
/// the same instant have no "latest"), deltas at any minute, some at a count's very minute.
fn steps() -> impl Strategy<Value = Vec<Step>> {
    (
        prop::collection::vec((0_i64..60, -50_i64..50), 0..8),
        prop::collection::btree_map(0_i64..60, -20_i64..200, 0..4),
    )
        .prop_map(|(deltas, counts)| {
            deltas
                .into_iter()
                .map(|(m, delta)| Step::Delta { m, delta })
                .chain(
                    counts
                        .into_iter()
                        .map(|(m, on_hand)| Step::Count { m, on_hand }),
                )
                .collect()
        })
}

/// What the module docs promise: the latest count plus the deltas after it (none: the sum of deltas).
fn documented_level(steps: &[Step]) -> i64 {
    let latest = steps
        .iter()
        .filter_map(|s| match *s {
            Step::Count { m, on_hand } => Some((m, on_hand)),
            Step::Delta { .. } => None,
        })
        .max_by_key(|(m, _)| *m);
    let after = |at: i64| {
        steps
            .iter()
            .filter_map(|s| match *s {
                Step::Delta { m, delta } if m > at => Some(delta),
                _ => None,
            })
            .sum::<i64>()
    };
    match latest {
        Some((m, on_hand)) => on_hand + after(m),
        None => after(i64::MIN),
    }
}

async fn apply_in_order(
    steps: &[Step],
    order: &[usize],
    redeliver: &[bool],
) -> Result<i64, String> {
    let ledger = EmbeddedStockLedger::in_memory().map_err(|e| e.to_string())?;
    let store = StoreId::parse("store-p").map_err(|e| e.to_string())?;
    let sku = Sku::parse("SKU-P").map_err(|e| e.to_string())?;
    let now = base() + Duration::hours(2);
    for (pos, &i) in order.iter().enumerate() {
        let id = EventId::parse(format!("evt:prop:{i}")).map_err(|e| e.to_string())?;
        let deliveries = if redeliver.get(pos).copied().unwrap_or(false) {
            2
        } else {
            1
        };
        for delivery in 0..deliveries {
            let outcome = match steps[i] {
                Step::Delta { m, delta } => {
                    let d = StockDelta {
                        store_id: store.clone(),
                        sku: sku.clone(),
                        delta,
                    };
                    ledger.apply(&id, base() + Duration::minutes(m), &[d]).await
                }
                Step::Count { m, on_hand } => {
                    let count = StockCount {
                        store_id: store.clone(),
                        sku: sku.clone(),
                        on_hand,
                        counted_at: base() + Duration::minutes(m),
                    };
                    ledger.apply_count(&id, &count, now).await
                }
            }
            .map_err(|e| e.to_string())?;
            if delivery == 1 && outcome != ApplyOutcome::AlreadyApplied {
                return Err(format!("redelivery of step {i} applied again: {outcome:?}"));
            }
        }
    }
    ledger
        .on_hand(&store, &sku)
        .await
        .map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any arrival order, with redeliveries, gives the documented level.
    #[test]
    fn counts_and_deltas_commute_on_the_in_memory_ledger(
        (steps, order) in steps().prop_flat_map(|s| {
            let n = s.len();
            (Just(s), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
        }),
        redeliver in prop::collection::vec(any::<bool>(), 12),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let level = rt
            .block_on(apply_in_order(&steps, &order, &redeliver))
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(level, documented_level(&steps), "steps {:?} in order {:?}", steps, order);
    }
}
