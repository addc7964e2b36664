//! The deterministic simulation campaign (see `pos_tests::sim`).
//!
//! - `campaign`: `SIM_SEEDS` seeds (default 1,000) from `SIM_START` (default 0), on every core; prints
//!   the seeds run and the time per seed. A failing seed prints its one-line reproduction.
//! - `replay_one_seed`: `SIM_SEED=n` (and `SIM_BREAK=name` for a broken variant) replays one seed and
//!   prints its report.
//! - `each_broken_variant_is_caught`: every deliberately broken variant must fail the simulation, with
//!   the invariant it breaks, within a few dozen seeds: the checks can fail.
//! - `a_seed_replays_identically`: the same seed twice gives the same run.

use pos_tests::sim::{Breaks, Config, Failure, Invariant, Report, run};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        Err(_) => default,
    }
}

/// Runs `seeds` on `threads` threads; the failures, in seed order, and the sum of the reports.
fn campaign_of(
    seeds: std::ops::Range<u64>,
    breaks: Breaks,
    threads: usize,
) -> (Vec<Failure>, Totals) {
    let next = AtomicU64::new(seeds.start);
    let failures = std::sync::Mutex::new(Vec::new());
    let totals = std::sync::Mutex::new(Totals::default());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds.end {
                        return;
                    }
                    let report = match run(Config { seed, breaks }) {
                        Ok(report) => report,
                        Err(f) => {
                            let report = (*f.report).clone();
                            failures
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .push(f);
                            report
                        }
                    };
                    totals
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .add(&report);
                }
            });
        }
    });
    let mut failures = failures
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    failures.sort_by_key(|f| f.config.seed);
    let totals = totals
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (failures, totals)
}

/// What a campaign exercised, summed over its seeds.
#[derive(Debug, Default)]
struct Totals {
    steps: u64,
    facts: usize,
    attempts: u64,
    injected: u64,
    crashes: u64,
    stream_retries: u64,
    re_receives: u64,
    dead_letters: usize,
    destination_duplicates: u64,
    statuses: std::collections::BTreeMap<u16, u64>,
}

impl Totals {
    fn add(&mut self, r: &Report) {
        self.steps += r.steps;
        self.facts += r.facts;
        self.attempts += r.attempts;
        self.injected += r.injected;
        self.crashes += r.crashes;
        self.stream_retries += r.stream_retries;
        self.re_receives += r.re_receives;
        self.dead_letters += r.dead_letters;
        self.destination_duplicates += r.destination_duplicates;
        for (status, n) in &r.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

#[test]
fn campaign() {
    let start = env_u64("SIM_START", 0);
    let seeds = env_u64("SIM_SEEDS", 1000);
    let began = Instant::now();
    let (failures, totals) = campaign_of(start..start + seeds, Breaks::default(), threads());
    let elapsed = began.elapsed();
    println!("simulation exercised: {totals:?}");
    println!(
        "simulation: {seeds} seeds from {start} in {:.1} s ({:.1} ms per seed, {} threads), {} failed",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / seeds.max(1) as f64,
        threads(),
        failures.len()
    );
    for f in failures.iter().take(5) {
        println!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds broke an invariant; first: {}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn replay_one_seed() {
    let Ok(seed) = std::env::var("SIM_SEED") else {
        return; // Only on request: SIM_SEED=n.
    };
    let seed: u64 = seed.trim().parse().expect("SIM_SEED must be a number");
    let breaks = match std::env::var("SIM_BREAK") {
        Ok(names) => {
            let mut b = Breaks::default();
            for name in names.split(',').filter(|n| !n.is_empty()) {
                let one = Breaks::only(name).unwrap_or_else(|| {
                    panic!("unknown SIM_BREAK {name}; known: {:?}", Breaks::NAMES)
                });
                b = merge(b, one);
            }
            b
        }
        Err(_) => Breaks::default(),
    };
    match run(Config { seed, breaks }) {
        Ok(report) => println!("seed {seed} held: {report:?}"),
        Err(f) => panic!("{f}\nreport: {:?}", f.report),
    }
}

fn merge(a: Breaks, b: Breaks) -> Breaks {
    Breaks {
        ack_without_store: a.ack_without_store || b.ack_without_store,
        bus_drops_events: a.bus_drops_events || b.bus_drops_events,
        double_apply_stock: a.double_apply_stock || b.double_apply_stock,
        over_reverse_points: a.over_reverse_points || b.over_reverse_points,
        eager_dead_letter: a.eager_dead_letter || b.eager_dead_letter,
        no_safety_net: a.no_safety_net || b.no_safety_net,
        keyless_destination: a.keyless_destination || b.keyless_destination,
    }
}

#[test]
fn each_broken_variant_is_caught() {
    let expected = [
        ("ack_without_store", Invariant::Stored),
        ("bus_drops_events", Invariant::Published),
        ("double_apply_stock", Invariant::AppliedOnce),
        ("over_reverse_points", Invariant::ReversedWithinEarned),
        ("eager_dead_letter", Invariant::DlqOnlyPoison),
        ("no_safety_net", Invariant::Drained),
        ("keyless_destination", Invariant::DeliveredOnce),
    ];
    assert_eq!(
        expected.len(),
        Breaks::NAMES.len(),
        "a variant without a check"
    );
    for (name, invariant) in expected {
        let breaks = Breaks::only(name).expect("known variant");
        let (failures, _) = campaign_of(0..40, breaks, threads());
        let caught_in = failures
            .iter()
            .filter(|f| f.violations.iter().any(|v| v.invariant == invariant))
            .count();
        println!(
            "broken variant {name}: caught by {} in {caught_in} of 40 seeds",
            invariant.name()
        );
        let caught = failures
            .iter()
            .find(|f| f.violations.iter().any(|v| v.invariant == invariant));
        assert!(
            caught.is_some(),
            "broken variant {name} went unnoticed by invariant {} in 40 seeds ({} failures: {:?})",
            invariant.name(),
            failures.len(),
            failures.first().map(ToString::to_string)
        );
    }
}

#[test]
fn a_seed_replays_identically() {
    for seed in [7, 11] {
        let a = run(Config {
            seed,
            breaks: Breaks::default(),
        })
        .map_err(|f| f.to_string());
        let b = run(Config {
            seed,
            breaks: Breaks::default(),
        })
        .map_err(|f| f.to_string());
        let (a, b) = (a.expect("seed holds"), b.expect("seed holds"));
        assert_eq!(
            (
                a.steps,
                a.facts,
                a.deliveries,
                a.attempts,
                a.injected,
                a.crashes,
                a.simulated_seconds
            ),
            (
                b.steps,
                b.facts,
                b.deliveries,
                b.attempts,
                b.injected,
                b.crashes,
                b.simulated_seconds
            ),
            "seed {seed} ran differently twice"
        );
        assert!(
            a.steps > 50 && a.attempts >= a.deliveries as u64,
            "seed {seed} did too little: {a:?}"
        );
    }
}
