//! The simulation's control block, shared by the scheduler and every port wrapper: the seeded random
//! source, whether faults are being injected, and the step points at which the scheduler takes over.
//!
//! A step point ([`Ctl::step`]) is where a running function gives control back to the scheduler, which
//! may then run another function, move time, or drop this one (a crash). Port wrappers put one before
//! and one after each call into an adapter, so every function can be stopped between any two of its
//! steps, and an adapter call itself always completes (as a committed transaction does).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

/// SplitMix64: a tiny, well-studied generator whose sequence for a seed is fixed forever (no crate
/// version can change what a recorded seed replays).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; 0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = hi.saturating_sub(lo).saturating_add(1).max(1) as u64;
        lo + self.below(span) as i64
    }

    /// True with probability `per_mille`/1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// An index into a slice of `len` (0 when empty).
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }
}

/// Deliberately broken variants, one per invariant: each must make the simulation fail with that
/// invariant, which proves the invariant's check can fail. Test-only: nothing in production reads them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breaks {
    /// The capture store answers "stored" without writing (breaks: every 2xx sale is stored).
    pub ack_without_store: bool,
    /// The bus accepts some events and routes them nowhere (breaks: published at least once).
    pub bus_drops_events: bool,
    /// The stock ledger applies some events a second time under another id (breaks: applied once).
    pub double_apply_stock: bool,
    /// Returns reverse twice the points the plan says (breaks: reversed never exceeds earned).
    pub over_reverse_points: bool,
    /// Queues dead-letter on the first failed receive (breaks: nothing but poison in a DLQ).
    pub eager_dead_letter: bool,
    /// The stream path drops what it failed to publish and the sweep never runs (breaks: the outbox
    /// drains).
    pub no_safety_net: bool,
    /// The destination keeps no unique key: the engine's ledger and read-back alone stand between a
    /// retry and a second record (breaks: delivered exactly once, when a visibility timeout expires
    /// under a running delivery).
    pub keyless_destination: bool,
}

impl Breaks {
    /// Every switch by name, for the command line and the tests.
    pub const NAMES: [&'static str; 7] = [
        "ack_without_store",
        "bus_drops_events",
        "double_apply_stock",
        "over_reverse_points",
        "eager_dead_letter",
        "no_safety_net",
        "keyless_destination",
    ];

    /// The variant with the switch `name` on.
    pub fn only(name: &str) -> Option<Self> {
        let mut b = Self::default();
        match name {
            "ack_without_store" => b.ack_without_store = true,
            "bus_drops_events" => b.bus_drops_events = true,
            "double_apply_stock" => b.double_apply_stock = true,
            "over_reverse_points" => b.over_reverse_points = true,
            "eager_dead_letter" => b.eager_dead_letter = true,
            "no_safety_net" => b.no_safety_net = true,
            "keyless_destination" => b.keyless_destination = true,
            _ => return None,
        }
        Some(b)
    }

    /// The switches that are on, comma-separated (empty when none).
    pub fn names(&self) -> String {
        let on = [
            self.ack_without_store,
            self.bus_drops_events,
            self.double_apply_stock,
            self.over_reverse_points,
            self.eager_dead_letter,
            self.no_safety_net,
            self.keyless_destination,
        ];
        Self::NAMES
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The mutable control state.
#[derive(Debug)]
pub struct State {
    /// The seeded random source: every decision of a run is drawn from it, in a fixed order.
    pub rng: Rng,
    /// Whether adapter failures are injected now (off in the final, quiet phase).
    pub faults: bool,
    /// Failure probability per adapter call, per mille (drawn per seed).
    pub fault_rate: u64,
    /// The running function must not fail (its messages are on their last receive): no injection.
    pub protected: bool,
    /// Set by a step point; the scheduler reads and clears it.
    pub yielded: bool,
    /// The broken variants switched on.
    pub breaks: Breaks,
    /// Injected failures so far, for the report.
    pub injected: u64,
}

/// The control block, shared.
#[derive(Debug, Clone)]
pub struct Ctl(Arc<Mutex<State>>);

impl Ctl {
    /// A control block for `seed` with `breaks` on.
    pub fn new(seed: u64, breaks: Breaks) -> Self {
        Self(Arc::new(Mutex::new(State {
            rng: Rng::new(seed),
            faults: false,
            fault_rate: 0,
            protected: false,
            yielded: false,
            breaks,
            injected: 0,
        })))
    }

    /// The state (never held across an await).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A step point: the scheduler takes over here.
    pub fn step(&self) -> StepPoint {
        StepPoint {
            ctl: self.clone(),
            done: false,
        }
    }

    /// Whether to inject a failure into the call now.
    pub fn fail_now(&self) -> bool {
        let mut s = self.lock();
        if !s.faults || s.protected {
            return false;
        }
        let rate = s.fault_rate;
        let fail = s.rng.chance(rate);
        if fail {
            s.injected += 1;
        }
        fail
    }

    /// A draw for a broken variant (independent of the fault phase).
    pub fn chance(&self, per_mille: u64) -> bool {
        self.lock().rng.chance(per_mille)
    }

    /// The broken variants.
    pub fn breaks(&self) -> Breaks {
        self.lock().breaks
    }

    /// Runs `call` between two step points, failing it before (nothing done) or after (done, but the
    /// answer lost) when a fault is injected.
    pub async fn gate<T, E>(
        &self,
        site: &str,
        call: impl Future<Output = Result<T, E>>,
        fail: impl Fn(String) -> E,
    ) -> Result<T, E> {
        self.step().await;
        if self.fail_now() {
            return Err(fail(format!("injected: {site} unavailable")));
        }
        let out = call.await;
        self.step().await;
        if out.is_ok() && self.fail_now() {
            return Err(fail(format!("injected: {site} answer lost")));
        }
        out
    }
}

/// Returns `Pending` once, having told the scheduler; the scheduler polls it again when it resumes the
/// function (it registers no waker: the scheduler, not a reactor, decides when).
#[derive(Debug)]
pub struct StepPoint {
    ctl: Ctl,
    done: bool,
}

impl Future for StepPoint {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        self.done = true;
        self.ctl.lock().yielded = true;
        Poll::Pending
    }
}
