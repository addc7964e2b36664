//! The simulated world and its scheduler: vendors sending (and re-sending) signed sales and returns,
//! `sale-capture`, the table's stream feeding `outbox-publisher`, the scheduled `outbox-relay` sweep,
//! the bus, the queues, `stock-sync` and `loyalty-accrual`. All of them run as futures that one loop
//! polls in an order drawn from the seed, on one thread, with time that moves only when the loop moves
//! it. Real threads exist only inside an adapter call (redb's writer), which always runs to its end
//! before anything else is polled, so they decide nothing.
//!
//! A run has two phases. In the storm, the loop injects every fault of the issue: crashes between any
//! two steps (a function's future is dropped at a step point; what it committed stays), failed and
//! lost-answer adapter calls, duplicate and reordered deliveries, vendor redeliveries, visibility
//! timeouts that expire while a consumer still runs, poison messages and clock jumps. Then it goes quiet
//! (no new faults) and runs until every delivery is answered and every queue drained, or until a step
//! budget says it never will. The invariants are checked after that ([`super::check`]).

use super::check::{self, Violation};
use super::ctl::{Breaks, Ctl};
use super::ports::{
    Consumer, PoisonBodies, Queues, SimBreakers, SimBus, SimDeliveryLedger, SimDestination,
    SimLoyalty, SimQueueControl, SimSecrets, SimStock, SimStore,
};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::{DateTime, Duration, TimeZone, Utc};
use pos_shared::capture::{CaptureService, CaptureSettings, Captured};
use pos_shared::delivery::breaker::{BreakerConfig, CircuitBreaker};
use pos_shared::delivery::embedded::EmbeddedDeliveries;
use pos_shared::delivery::engine::Deliverer;
use pos_shared::delivery::retry::RetryPolicy;
use pos_shared::delivery::sync::DeliverySync;
use pos_shared::ids::EventId;
use pos_shared::loyalty::LoyaltyAccrual;
use pos_shared::loyalty::embedded::EmbeddedLoyaltyLedger;
use pos_shared::loyalty::rules::LoyaltyRules;
use pos_shared::metrics::{Metrics, Sink};
use pos_shared::outbox::OutboxRelay;
use pos_shared::ports::{ManualClock, SecretSource};
use pos_shared::samples;
use pos_shared::secrets::{StaticSecrets, dev_secrets};
use pos_shared::stock::StockSync;
use pos_shared::stock::embedded::EmbeddedStockLedger;
use pos_shared::store::OutboxEntry;
use pos_shared::store::embedded::EmbeddedStore;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

/// Stores, SKUs and members of the simulated chain (few, so facts collide on the same rows).
const STORES: [&str; 2] = ["store-001", "store-002"];
const SKUS: i64 = 5;
const MEMBERS: i64 = 3;
/// Stream records are retried this many times before the event source mapping gives up on them (the
/// on-failure destination; the sweep still publishes the entry). infra/outbox.tf: 10.
const STREAM_RETRIES: u32 = 10;
/// The sweep's schedule (infra/schedules.tf: rate(1 minutes)) and its minimum entry age.
const SWEEP_EVERY: i64 = 60;
const SWEEP_MIN_AGE: i64 = 120;
/// Steps after which a run that has not gone quiet is a liveness failure.
const MAX_STEPS: u64 = 60_000;

/// One run's configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Config {
    /// The seed: every decision of the run follows from it.
    pub seed: u64,
    /// Deliberately broken variants (all off for the real campaign).
    pub breaks: Breaks,
}

/// What a run did (for the log line and the docs).
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Scheduler steps.
    pub steps: u64,
    /// Sales and returns generated.
    pub facts: usize,
    /// Vendor deliveries (a fact sent under two delivery ids counts twice).
    pub deliveries: usize,
    /// Capture attempts (first sends and redeliveries).
    pub attempts: u64,
    /// Failures injected into adapter calls.
    pub injected: u64,
    /// Functions crashed between two steps.
    pub crashes: u64,
    /// Simulated time covered, in seconds.
    pub simulated_seconds: i64,
    /// Capture answers by HTTP status.
    pub statuses: std::collections::BTreeMap<u16, u64>,
    /// Stream records handed to the publisher again (failed or crashed batches).
    pub stream_retries: u64,
    /// Receives of a message received before (redeliveries after a failure, a crash or an expired
    /// visibility timeout).
    pub re_receives: u64,
    /// Messages dead-lettered (poison, in a run that holds).
    pub dead_letters: usize,
    /// Second creates the destination's unique key refused (each a double write without it).
    pub destination_duplicates: u64,
}

/// A run that broke an invariant.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The configuration that reproduces it.
    pub config: Config,
    /// What broke.
    pub violations: Vec<Violation>,
    /// What the run did before the check.
    pub report: Box<Report>,
}

impl Failure {
    /// The one command that replays this run.
    pub fn repro(&self) -> String {
        let breaks = self.config.breaks.names();
        let env = if breaks.is_empty() {
            String::new()
        } else {
            format!(" SIM_BREAK={breaks}")
        };
        format!(
            "SIM_SEED={}{env} cargo test -p pos-tests --test simulation -- replay_one_seed --nocapture",
            self.config.seed
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {} broke {} invariant(s):",
            self.config.seed,
            self.violations.len()
        )?;
        for v in self.violations.iter().take(8) {
            writeln!(f, "  - {v}")?;
        }
        write!(f, "reproduce: {}", self.repro())
    }
}

/// A line of a simulated sale.
#[derive(Debug, Clone)]
pub struct SaleLine {
    /// Line id within the sale.
    pub line_id: String,
    /// SKU.
    pub sku: String,
    /// Units sold.
    pub quantity: i64,
    /// Unit price, minor units (EUR).
    pub unit_minor: i64,
    /// Units returned so far (by generated returns).
    pub returned: i64,
}

/// A line of a simulated return.
#[derive(Debug, Clone)]
pub struct ReturnLine {
    /// The sale line returned.
    pub line_id: String,
    /// SKU.
    pub sku: String,
    /// Units.
    pub quantity: i64,
    /// Back on the shelf?
    pub restock: bool,
    /// Refund, minor units.
    pub refund_minor: i64,
}

/// What a fact is.
#[derive(Debug, Clone)]
pub enum FactKind {
    /// A sale.
    Sale {
        /// Vendor's sale id.
        sale_id: String,
        /// Loyalty member, if any.
        member: Option<String>,
        /// Lines.
        lines: Vec<SaleLine>,
    },
    /// A return of (part of) an earlier sale.
    Return {
        /// Index of the sale fact.
        sale: usize,
        /// Lines.
        lines: Vec<ReturnLine>,
    },
}

/// A business fact the vendor sends.
#[derive(Debug, Clone)]
pub struct Fact {
    /// Store.
    pub store: String,
    /// Sale or return.
    pub kind: FactKind,
    /// The event id capture answered with (the first 2xx).
    pub event_id: Option<EventId>,
    /// Whether any delivery of it was answered 2xx.
    pub acknowledged: bool,
}

/// One vendor delivery (a webhook message id), re-sent until answered 2xx.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The fact it carries.
    pub fact: usize,
    /// Standard Webhooks `webhook-id`.
    pub msg_id: String,
    /// The body (the same bytes on every attempt).
    pub body: Value,
    /// When the vendor (re)sends it next.
    pub next_at: DateTime<Utc>,
    /// An attempt is running.
    pub in_flight: bool,
    /// Answered 2xx.
    pub acknowledged: bool,
    /// Attempts so far.
    pub attempts: u32,
    /// The last status answered.
    pub last_status: Option<u16>,
}

/// A stream record waiting for the publisher.
#[derive(Debug, Clone)]
struct StreamRecord {
    entry: OutboxEntry,
    attempts: u32,
}

enum Kind {
    Vendor(usize),
    Publisher(Vec<StreamRecord>),
    Sweep,
    Consumer { queue: usize, protected: bool },
}

enum Done {
    Vendor {
        status: u16,
        event_id: Option<EventId>,
    },
    Publisher {
        failed: Vec<EventId>,
    },
    Other,
}

type TaskFuture = Pin<Box<dyn Future<Output = Done>>>;

struct Task {
    kind: Kind,
    fut: TaskFuture,
}

/// The world of one run.
pub struct World {
    config: Config,
    ctl: Ctl,
    now: Arc<Mutex<DateTime<Utc>>>,
    clock: Arc<ManualClock>,
    skew: Duration,
    pub(crate) store: EmbeddedStore,
    pub(crate) stock: Arc<EmbeddedStockLedger>,
    pub(crate) loyalty: Arc<EmbeddedLoyaltyLedger>,
    capture: Arc<CaptureService>,
    relay: Arc<OutboxRelay>,
    stock_sync: Arc<StockSync>,
    loyalty_accrual: Arc<LoyaltyAccrual>,
    delivery_sync: Arc<DeliverySync>,
    pub(crate) destination: Arc<SimDestination>,
    pub(crate) deliveries_ledger: Arc<EmbeddedDeliveries>,
    pub(crate) bus: Arc<SimBus>,
    pub(crate) queues: Queues,
    feed: tokio::sync::mpsc::Receiver<OutboxEntry>,
    stream: VecDeque<StreamRecord>,
    pub(crate) facts: Vec<Fact>,
    pub(crate) deliveries: Vec<Delivery>,
    returns_due: Vec<(DateTime<Utc>, usize)>,
    tasks: Vec<Task>,
    next_sweep: DateTime<Utc>,
    pub(crate) poison: PoisonBodies,
    pub(crate) violations: Vec<Violation>,
    report: Report,
    storm_until: DateTime<Utc>,
    storm: bool,
}

fn io<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Runs one seed to its end and checks the invariants.
pub fn run(config: Config) -> Result<Report, Failure> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Err(setup_failure(config, &e.to_string())),
    };
    // The delivery engine draws its jitter from fastrand's thread-local generator: seeded, so a seed
    // replays the same visibility timeouts.
    fastrand::seed(config.seed);
    rt.block_on(async move {
        let mut world = World::new(config).map_err(|e| setup_failure(config, &e))?;
        let start = world.now();
        world.run().await;
        world.report.simulated_seconds = (world.now() - start).num_seconds();
        world.report.injected = world.ctl.lock().injected;
        world.report.dead_letters = world.queues.lock().iter().map(|q| q.dlq.len()).sum();
        world.report.destination_duplicates = world.destination.duplicates();
        let mut violations = std::mem::take(&mut world.violations);
        violations.extend(check::invariants(&world).await);
        let report = world.report.clone();
        if violations.is_empty() {
            Ok(report)
        } else {
            Err(Failure {
                config,
                violations,
                report: Box::new(report),
            })
        }
    })
}

fn setup_failure(config: Config, why: &str) -> Failure {
    Failure {
        config,
        violations: vec![Violation::setup(why)],
        report: Box::default(),
    }
}

impl World {
    fn new(config: Config) -> Result<Self, String> {
        let ctl = Ctl::new(config.seed, config.breaks);
        let start = Utc
            .with_ymd_and_hms(2026, 1, 15, 8, 0, 0)
            .single()
            .ok_or("start time")?;
        let now = Arc::new(Mutex::new(start));
        let clock = Arc::new(ManualClock::new(start));
        let store = EmbeddedStore::in_memory().map_err(io("store"))?;
        let feed = store.subscribe_outbox();
        let stock = Arc::new(EmbeddedStockLedger::in_memory().map_err(io("stock ledger"))?);
        let loyalty = Arc::new(EmbeddedLoyaltyLedger::in_memory().map_err(io("loyalty ledger"))?);
        let queues = Queues::from_infra(declared_queues(), config.breaks.eager_dead_letter);
        let bus = Arc::new(SimBus {
            ctl: ctl.clone(),
            queues: queues.clone(),
            published: Arc::default(),
            now: now.clone(),
            next_id: Mutex::new(0),
        });
        let sim_store = Arc::new(SimStore {
            inner: store.clone(),
            ctl: ctl.clone(),
        });
        let secrets: Arc<dyn SecretSource> = Arc::new(SimSecrets {
            inner: Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
            ctl: ctl.clone(),
        });
        // Delivery records expire after 6 hours here (7 days in production), so vendor redeliveries
        // days later also take the "fact already captured" path.
        let settings = CaptureSettings {
            delivery_ttl: Duration::hours(6),
            ..CaptureSettings::default()
        };
        let capture = Arc::new(CaptureService::new(
            sim_store.clone(),
            secrets,
            clock.clone(),
            settings,
        ));
        let off = |name: &str| Arc::new(Metrics::new(name, Sink::Off));
        let relay = Arc::new(OutboxRelay::new(
            sim_store.clone(),
            sim_store,
            bus.clone(),
            clock.clone(),
            Duration::seconds(SWEEP_MIN_AGE),
            100,
            off("outbox-relay"),
        ));
        let stock_sync = Arc::new(
            StockSync::new(
                Arc::new(SimStock {
                    inner: stock.clone(),
                    ctl: ctl.clone(),
                }),
                bus.clone(),
                clock.clone(),
                0,
                off("stock-sync"),
            )
            .with_lines_source(Arc::new(store.clone())),
        );
        let loyalty_accrual = Arc::new(
            LoyaltyAccrual::new(
                Arc::new(SimLoyalty {
                    inner: loyalty.clone(),
                    ctl: ctl.clone(),
                }),
                LoyaltyRules::default_rules(),
                off("loyalty-accrual"),
            )
            .with_lines_source(Arc::new(store.clone())),
        );
        let deliveries_ledger =
            Arc::new(EmbeddedDeliveries::in_memory().map_err(io("delivery ledger"))?);
        let destination = Arc::new(SimDestination {
            ctl: ctl.clone(),
            writes: Mutex::default(),
            duplicates: Mutex::default(),
        });
        // One try per invocation (no in-process sleeps: time is the scheduler's); requeues as deployed.
        let policy = RetryPolicy {
            in_process: pos_shared::backoff::Backoff {
                attempts: 1,
                ..RetryPolicy::default().in_process
            },
            ..RetryPolicy::default()
        };
        let deliverer = Deliverer::new(
            destination.clone(),
            Arc::new(SimDeliveryLedger {
                inner: deliveries_ledger.clone(),
                ctl: ctl.clone(),
            }),
            CircuitBreaker::new(
                Arc::new(SimBreakers {
                    inner: deliveries_ledger.clone(),
                    ctl: ctl.clone(),
                }),
                clock.clone(),
                BreakerConfig::default(),
            ),
            policy,
            clock.clone(),
        );
        let (delivery_queue, delivery_max) = queues
            .lock()
            .iter()
            .enumerate()
            .find(|(_, q)| q.consumer == Consumer::Delivery)
            .map(|(i, q)| (i, q.declared_max_receives))
            .ok_or("infra declares no dynamics_sync_queue")?;
        let delivery_sync = Arc::new(DeliverySync::new(
            vec![deliverer],
            Arc::new(SimQueueControl {
                ctl: ctl.clone(),
                queues: queues.clone(),
                queue: delivery_queue,
                now: now.clone(),
            }),
            Arc::new(store.clone()),
            delivery_max,
            off("dynamics-sync"),
        ));
        let mut world = Self {
            config,
            ctl,
            now,
            clock,
            skew: Duration::zero(),
            store,
            stock,
            loyalty,
            capture,
            relay,
            stock_sync,
            loyalty_accrual,
            delivery_sync,
            destination,
            deliveries_ledger,
            bus,
            queues,
            feed,
            stream: VecDeque::new(),
            facts: Vec::new(),
            deliveries: Vec::new(),
            returns_due: Vec::new(),
            tasks: Vec::new(),
            next_sweep: start + Duration::seconds(SWEEP_EVERY),
            poison: PoisonBodies::new(),
            violations: Vec::new(),
            report: Report {
                seed: config.seed,
                ..Report::default()
            },
            storm_until: start + Duration::hours(3),
            storm: true,
        };
        world.plan_sales(start);
        Ok(world)
    }

    /// The simulated (true) time.
    pub fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_now(&mut self, t: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = t;
        self.clock.set(t + self.skew);
    }

    fn rng<T>(&self, f: impl FnOnce(&mut super::ctl::Rng) -> T) -> T {
        f(&mut self.ctl.lock().rng)
    }

    /// The sales of the run: 4–12, over the first two hours, some sent under two delivery ids.
    fn plan_sales(&mut self, start: DateTime<Utc>) {
        let (fault_rate, n) = self.rng(|r| {
            // A third of the seeds run without adapter faults (crashes and reordering only).
            let rate = if r.chance(333) { 0 } else { r.below(120) };
            (rate, r.range(4, 12))
        });
        {
            let mut s = self.ctl.lock();
            s.fault_rate = fault_rate;
            s.faults = true;
        }
        for i in 0..n {
            let (store, member, lines, at, twice) = self.rng(|r| {
                let store = STORES[r.index(STORES.len())].to_owned();
                let member = (r.chance(600)).then(|| format!("member-{}", r.range(1, MEMBERS)));
                let lines: Vec<SaleLine> = (1..=r.range(1, 4))
                    .map(|l| SaleLine {
                        line_id: l.to_string(),
                        sku: format!("SKU-{:03}", r.range(1, SKUS)),
                        quantity: r.range(1, 3),
                        unit_minor: r.range(100, 5000),
                        returned: 0,
                    })
                    .collect();
                let at = start + Duration::seconds(r.range(0, 7200));
                (store, member, lines, at, r.chance(100))
            });
            let sale_id = format!("s-{i}");
            let fact = self.facts.len();
            self.facts.push(Fact {
                store: store.clone(),
                kind: FactKind::Sale {
                    sale_id: sale_id.clone(),
                    member: member.clone(),
                    lines: lines.clone(),
                },
                event_id: None,
                acknowledged: false,
            });
            let body = sale_body(&sale_id, &store, member.as_deref(), &lines, at);
            self.deliver(fact, format!("msg_sale_{i}"), body.clone(), at);
            if twice {
                // The vendor sends the same fact again under a new delivery id (a second webhook).
                let later = at + Duration::seconds(self.rng(|r| r.range(1, 40_000)));
                self.deliver(fact, format!("msg_sale_{i}_again"), body, later);
            }
        }
    }

    fn deliver(&mut self, fact: usize, msg_id: String, body: Value, at: DateTime<Utc>) {
        self.deliveries.push(Delivery {
            fact,
            msg_id,
            body,
            next_at: at,
            in_flight: false,
            acknowledged: false,
            attempts: 0,
            last_status: None,
        });
        self.report.deliveries = self.deliveries.len();
        self.report.facts = self.facts.len();
    }

    /// A return of part of sale `sale`, if anything is left to return.
    fn make_return(&mut self, sale: usize) {
        let now = self.now();
        let Some(Fact {
            store,
            kind: FactKind::Sale { sale_id, lines, .. },
            ..
        }) = self.facts.get(sale).cloned()
        else {
            return;
        };
        let mut chosen = Vec::new();
        let mut updated = lines.clone();
        for line in &mut updated {
            let left = line.quantity - line.returned;
            let take = self.rng(|r| if r.chance(600) { r.range(1, left) } else { 0 });
            if left > 0 && take > 0 {
                let restock = self.rng(|r| r.chance(850));
                line.returned += take;
                chosen.push(ReturnLine {
                    line_id: line.line_id.clone(),
                    sku: line.sku.clone(),
                    quantity: take,
                    restock,
                    refund_minor: take * line.unit_minor,
                });
            }
        }
        if chosen.is_empty() {
            return;
        }
        if let Some(Fact {
            kind: FactKind::Sale { lines, .. },
            ..
        }) = self.facts.get_mut(sale)
        {
            *lines = updated;
        }
        let fact = self.facts.len();
        let return_id = format!("r-{fact}");
        let body = return_body(&return_id, &sale_id, &store, &chosen, now);
        self.facts.push(Fact {
            store,
            kind: FactKind::Return {
                sale,
                lines: chosen,
            },
            event_id: None,
            acknowledged: false,
        });
        self.deliver(fact, format!("msg_return_{fact}"), body, now);
    }

    async fn run(&mut self) {
        loop {
            self.report.steps += 1;
            if self.report.steps > MAX_STEPS {
                self.violations.push(Violation::drained(format!(
                    "the run did not go quiet within {MAX_STEPS} steps"
                )));
                return;
            }
            self.drain_feed();
            let now = self.now();
            if self.storm && now >= self.storm_until {
                self.calm();
            }
            self.due_returns(now);
            if now >= self.next_sweep && !self.config.breaks.no_safety_net {
                self.next_sweep = now + Duration::seconds(SWEEP_EVERY);
                if !self.tasks.iter().any(|t| matches!(t.kind, Kind::Sweep)) {
                    self.start(Kind::Sweep);
                }
            }
            let Some(action) = self.choose(now) else {
                if !self.storm && self.quiet(now).await {
                    return;
                }
                self.jump(now);
                continue;
            };
            if std::env::var_os("SIM_TRACE").is_some() {
                eprintln!(
                    "{} {} tasks={} stream={} {}",
                    self.report.steps,
                    now.format("%d %H:%M:%S"),
                    self.tasks.len(),
                    self.stream.len(),
                    action.name()
                );
            }
            self.act(action, now).await;
        }
    }

    /// Ends the storm: no new faults, crashes or skew; what is already broken must heal.
    fn calm(&mut self) {
        self.storm = false;
        self.ctl.lock().faults = false;
        self.skew = Duration::zero();
        let now = self.now();
        self.set_now(now);
    }

    fn drain_feed(&mut self) {
        while let Ok(entry) = self.feed.try_recv() {
            self.stream.push_back(StreamRecord { entry, attempts: 0 });
        }
    }

    fn due_returns(&mut self, now: DateTime<Utc>) {
        let (due, later): (Vec<_>, Vec<_>) =
            self.returns_due.drain(..).partition(|(at, _)| *at <= now);
        self.returns_due = later;
        for (_, sale) in due {
            self.make_return(sale);
        }
    }

    fn choose(&mut self, now: DateTime<Utc>) -> Option<Action> {
        let mut options: Vec<(u64, Action)> = Vec::new();
        let due: Vec<usize> = self
            .deliveries
            .iter()
            .enumerate()
            .filter(|(_, d)| !d.acknowledged && !d.in_flight && d.next_at <= now)
            .map(|(i, _)| i)
            .collect();
        if !due.is_empty() {
            options.push((40, Action::Send(due)));
        }
        if !self.stream.is_empty()
            && !self
                .tasks
                .iter()
                .any(|t| matches!(t.kind, Kind::Publisher(_)))
        {
            options.push((40, Action::Publish));
        }
        let visible: Vec<(usize, Vec<u64>)> = self
            .queues
            .lock()
            .iter()
            .enumerate()
            .map(|(i, q)| (i, q.visible(now)))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        for (q, seqs) in visible {
            let running = self
                .tasks
                .iter()
                .filter(|t| matches!(t.kind, Kind::Consumer { queue, .. } if queue == q))
                .count();
            if running < 3 {
                options.push((40, Action::Receive(q, seqs)));
            }
        }
        if !self.tasks.is_empty() {
            options.push((120, Action::Poll));
            if self.storm {
                options.push((4, Action::Crash));
            }
        }
        if self.storm {
            options.push((3, Action::Skew));
            options.push((3, Action::DuplicateMessage));
            options.push((1, Action::Redeliver));
            if self.poison.len() < 2 {
                options.push((1, Action::Poison));
            }
            options.push((20, Action::Tick));
            options.push((2, Action::LongTick));
        } else if !self.tasks.is_empty() || !options.is_empty() {
            options.push((10, Action::Tick));
        }
        if options.iter().all(|(_, a)| {
            matches!(
                a,
                Action::Tick
                    | Action::LongTick
                    | Action::Skew
                    | Action::DuplicateMessage
                    | Action::Redeliver
                    | Action::Poison
            )
        }) && self.tasks.is_empty()
        {
            // Nothing can run: only a jump to the next due moment makes progress.
            return None;
        }
        let total: u64 = options.iter().map(|(w, _)| w).sum();
        let mut pick = self.rng(|r| r.below(total));
        for (w, action) in options {
            if pick < w {
                return Some(action);
            }
            pick -= w;
        }
        None
    }

    /// Moves time to the next moment something is due.
    fn jump(&mut self, now: DateTime<Utc>) {
        let mut next: Vec<DateTime<Utc>> = Vec::new();
        next.extend(
            self.deliveries
                .iter()
                .filter(|d| !d.acknowledged && !d.in_flight)
                .map(|d| d.next_at),
        );
        next.extend(self.returns_due.iter().map(|(at, _)| *at));
        next.extend(self.queues.lock().iter().filter_map(|q| q.next_visible()));
        if self.storm {
            next.push(self.storm_until);
        }
        // The sweep runs every minute, but an idle minute's sweep finds what the next one finds: time
        // jumps to the next thing due, and one sweep runs then (only when nothing else is due, a jump
        // lands on the sweep itself).
        let target = next
            .into_iter()
            .filter(|t| *t > now)
            .min()
            .unwrap_or(self.next_sweep.max(now + Duration::seconds(1)));
        self.set_now(target);
    }

    /// Whether everything is done: all delivered, published, consumed; then one last sweep must find
    /// nothing to publish.
    async fn quiet(&mut self, now: DateTime<Utc>) -> bool {
        let busy = !self.tasks.is_empty()
            || !self.stream.is_empty()
            || !self.returns_due.is_empty()
            || self.deliveries.iter().any(|d| !d.acknowledged)
            || self.queues.lock().iter().any(|q| !q.messages.is_empty());
        if busy {
            return false;
        }
        if self.config.breaks.no_safety_net {
            return true;
        }
        // The final sweep, past the minimum age of anything still pending.
        self.set_now(now + Duration::seconds(SWEEP_MIN_AGE + 1));
        let relay = self.relay.clone();
        let found = Arc::new(Mutex::new(None));
        let out = found.clone();
        let mut fut: TaskFuture = Box::pin(async move {
            *out.lock().unwrap_or_else(PoisonError::into_inner) =
                relay.run().await.ok().map(|r| r.found);
            Done::Other
        });
        while step(&self.ctl, &mut fut).await.is_none() {}
        let found = *found.lock().unwrap_or_else(PoisonError::into_inner);
        found == Some(0)
    }

    async fn act(&mut self, action: Action, now: DateTime<Utc>) {
        match action {
            Action::Send(due) => {
                let i = due[self.rng(|r| r.index(due.len()))];
                self.start(Kind::Vendor(i));
            }
            Action::Publish => {
                let n = self.rng(|r| r.range(1, 4)) as usize;
                let batch: Vec<StreamRecord> =
                    (0..n).filter_map(|_| self.stream.pop_front()).collect();
                self.start(Kind::Publisher(batch));
            }
            Action::Receive(q, mut seqs) => {
                // SQS hands out a sample of the visible messages, in no particular order.
                let n = self.rng(|r| r.range(1, 3)) as usize;
                let mut picked = Vec::new();
                while picked.len() < n && !seqs.is_empty() {
                    let at = self.rng(|r| r.index(seqs.len()));
                    picked.push(seqs.swap_remove(at));
                }
                self.receive(q, &picked, now).await;
            }
            Action::Poll => {
                let i = self.rng(|r| r.index(self.tasks.len()));
                self.poll(i).await;
            }
            Action::Crash => {
                let i = self.rng(|r| r.index(self.tasks.len()));
                if !matches!(
                    self.tasks[i].kind,
                    Kind::Consumer {
                        protected: true,
                        ..
                    }
                ) {
                    let task = self.tasks.swap_remove(i);
                    self.report.crashes += 1;
                    self.crashed(task.kind);
                }
            }
            Action::Tick => {
                let dt = self.rng(|r| r.range(0, 5));
                self.set_now(now + Duration::seconds(dt));
            }
            Action::LongTick => {
                // Long enough for visibility timeouts to expire under running consumers.
                let dt = self.rng(|r| r.range(30, 400));
                self.set_now(now + Duration::seconds(dt));
            }
            Action::Skew => {
                // Mostly small drifts; sometimes a jump past the 5-minute signature tolerance.
                self.skew = self.rng(|r| {
                    if r.chance(200) {
                        Duration::seconds(r.range(-900, 900))
                    } else if r.chance(500) {
                        Duration::zero()
                    } else {
                        Duration::seconds(r.range(-60, 60))
                    }
                });
                self.set_now(now);
            }
            Action::DuplicateMessage => {
                // SQS standard queues deliver at least once: sometimes a message twice.
                let mut queues = self.queues.lock();
                let q = self.ctl.lock().rng.index(queues.len());
                if let Some(queue) = queues.get_mut(q) {
                    let bodies: Vec<String> = queue
                        .messages
                        .values()
                        .filter(|m| !self.poison.contains(&m.body))
                        .map(|m| m.body.clone())
                        .collect();
                    if !bodies.is_empty() {
                        let pick = self.ctl.lock().rng.index(bodies.len());
                        queue.push(bodies[pick].clone(), now);
                    }
                }
            }
            Action::Redeliver => {
                // A vendor sends an acknowledged delivery again (Shopify and Square do).
                let done: Vec<usize> = self
                    .deliveries
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| d.acknowledged)
                    .map(|(i, _)| i)
                    .collect();
                if !done.is_empty() {
                    let i = done[self.rng(|r| r.index(done.len()))];
                    let d = self.deliveries[i].clone();
                    let later = now + Duration::seconds(self.rng(|r| r.range(0, 30_000)));
                    self.deliver(d.fact, d.msg_id, d.body, later);
                }
            }
            Action::Poison => {
                let mut queues = self.queues.lock();
                let q = self.ctl.lock().rng.index(queues.len());
                let body = format!(
                    "{{\"not\": \"an event of ours\", \"n\": {}}}",
                    self.poison.len()
                );
                if let Some(queue) = queues.get_mut(q) {
                    queue.push(body.clone(), now);
                    self.poison.insert(body);
                }
            }
        }
    }

    async fn receive(&mut self, q: usize, seqs: &[u64], now: DateTime<Utc>) {
        let (received, consumer, declared_max) = {
            let mut queues = self.queues.lock();
            let Some(queue) = queues.get_mut(q) else {
                return;
            };
            (
                queue.receive(seqs, now),
                queue.consumer,
                queue.declared_max_receives,
            )
        };
        if received.is_empty() {
            return;
        }
        if std::env::var_os("SIM_TRACE").is_some() {
            for r in &received {
                eprintln!(
                    "    receive {} #{} (receipt {})",
                    r.message.id, r.message.receive_count, r.receipt
                );
            }
        }
        self.report.re_receives += received
            .iter()
            .filter(|r| r.message.receive_count > 1)
            .count() as u64;
        // On a message's last receives the consumer runs without injected faults: transient faults
        // stay below maxReceiveCount, so a message in a DLQ means a bug, not bad luck.
        let protected = received
            .iter()
            .any(|r| r.message.receive_count + 1 >= declared_max);
        let mut event = SqsEvent::default();
        event.records = received
            .iter()
            .map(|r| {
                let mut m = SqsMessage::default();
                m.message_id = Some(r.message.id.clone());
                m.receipt_handle = Some(format!("{}:{}", r.seq, r.receipt));
                m.body = Some(r.message.body.clone());
                m.attributes.insert(
                    "ApproximateReceiveCount".into(),
                    r.message.receive_count.to_string(),
                );
                m
            })
            .collect();
        let handles: Vec<(String, u64, u64)> = received
            .iter()
            .map(|r| (r.message.id.clone(), r.seq, r.receipt))
            .collect();
        let queues = self.queues.clone();
        let ctl = self.ctl.clone();
        let stock = self.stock_sync.clone();
        let loyalty = self.loyalty_accrual.clone();
        let delivery = self.delivery_sync.clone();
        let fut: TaskFuture = Box::pin(async move {
            let response = match consumer {
                Consumer::Stock => stock.handle_batch(&event).await,
                Consumer::Loyalty => loyalty.handle_batch(&event).await,
                Consumer::Delivery => delivery.handle_batch(&event).await,
            };
            // The event source mapping deletes what the function did not report as failed.
            ctl.step().await;
            for (id, seq, receipt) in handles {
                let failed = response
                    .batch_item_failures
                    .iter()
                    .any(|f| f.item_identifier == id);
                if !failed {
                    queues.delete(q, seq, receipt);
                }
            }
            Done::Other
        });
        let task = Task {
            kind: Kind::Consumer {
                queue: q,
                protected,
            },
            fut,
        };
        if protected {
            // Runs to its end now, without faults or interleaving.
            self.ctl.lock().protected = true;
            let mut task = task;
            loop {
                if let Some(done) = step(&self.ctl, &mut task.fut).await {
                    self.ctl.lock().protected = false;
                    self.finished(task.kind, done);
                    return;
                }
            }
        }
        self.tasks.push(task);
    }

    fn start(&mut self, kind: Kind) {
        let fut: TaskFuture = match &kind {
            Kind::Vendor(i) => {
                let now = self.now();
                let Some(d) = self.deliveries.get_mut(*i) else {
                    return;
                };
                d.in_flight = true;
                d.attempts += 1;
                self.report.attempts += 1;
                // The vendor signs every attempt with its own (true) time.
                let signed = samples::standard(&d.msg_id, &d.body, now, None);
                let correlation = format!("corr-{}-{}", d.msg_id, d.attempts);
                let request = signed.to_request(&correlation);
                let capture = self.capture.clone();
                Box::pin(async move {
                    let result = capture.handle(&request).await;
                    let event_id = match &result {
                        Ok(Captured::Accepted { event_id }) => Some(event_id.clone()),
                        Ok(Captured::Duplicate { event_id }) => event_id.clone(),
                        _ => None,
                    };
                    let status = pos_shared::http::to_response(result, &correlation)
                        .status()
                        .as_u16();
                    Done::Vendor { status, event_id }
                })
            }
            Kind::Publisher(batch) => {
                let relay = self.relay.clone();
                let entries: Vec<OutboxEntry> = batch.iter().map(|r| r.entry.clone()).collect();
                Box::pin(async move {
                    let published = relay.publish_entries(entries).await;
                    Done::Publisher {
                        failed: published.failed,
                    }
                })
            }
            Kind::Sweep => {
                let relay = self.relay.clone();
                Box::pin(async move {
                    let _ = relay.run().await;
                    Done::Other
                })
            }
            Kind::Consumer { .. } => return,
        };
        self.tasks.push(Task { kind, fut });
    }

    async fn poll(&mut self, i: usize) {
        let Some(task) = self.tasks.get_mut(i) else {
            return;
        };
        if let Some(done) = step(&self.ctl, &mut task.fut).await {
            let task = self.tasks.swap_remove(i);
            self.finished(task.kind, done);
        }
    }

    /// A function's future was dropped between two steps: what the platform around it does.
    fn crashed(&mut self, kind: Kind) {
        let now = self.now();
        match kind {
            // The vendor times out and retries later.
            Kind::Vendor(i) => {
                if let Some(d) = self.deliveries.get_mut(i) {
                    d.in_flight = false;
                    d.last_status = Some(504);
                    *self.report.statuses.entry(504).or_default() += 1;
                    d.next_at = now + Duration::seconds(30);
                }
            }
            // The event source mapping retries the whole batch, in order.
            Kind::Publisher(batch) => self.stream_retry(batch),
            // Nothing deleted: the messages reappear after their visibility timeout. A sweep runs
            // again on its schedule.
            Kind::Consumer { .. } | Kind::Sweep => {}
        }
    }

    fn stream_retry(&mut self, batch: Vec<StreamRecord>) {
        for mut record in batch.into_iter().rev() {
            record.attempts += 1;
            self.report.stream_retries += 1;
            // Given up: the on-failure destination gets it; the sweep still publishes the entry.
            if self.config.breaks.no_safety_net || record.attempts > STREAM_RETRIES {
                continue;
            }
            self.stream.push_front(record);
        }
    }

    fn finished(&mut self, kind: Kind, done: Done) {
        let now = self.now();
        match (kind, done) {
            (Kind::Vendor(i), Done::Vendor { status, event_id }) => {
                self.answered(i, status, event_id, now)
            }
            (Kind::Publisher(batch), Done::Publisher { failed }) => {
                let failed: Vec<StreamRecord> = batch
                    .into_iter()
                    .filter(|r| failed.contains(&r.entry.envelope.event_id))
                    .collect();
                self.stream_retry(failed);
            }
            _ => {}
        }
    }

    fn answered(&mut self, i: usize, status: u16, event_id: Option<EventId>, now: DateTime<Utc>) {
        let Some(d) = self.deliveries.get_mut(i) else {
            return;
        };
        d.in_flight = false;
        d.last_status = Some(status);
        *self.report.statuses.entry(status).or_default() += 1;
        if !(200..300).contains(&status) {
            // Standard Webhooks senders retry with backoff (here 5 s doubling, at most an hour).
            let backoff = 5_i64 << d.attempts.min(10);
            d.next_at = now + Duration::seconds(backoff.min(3600));
            return;
        }
        d.acknowledged = true;
        let fact = d.fact;
        let msg = d.msg_id.clone();
        let Some(f) = self.facts.get_mut(fact) else {
            return;
        };
        match (&f.event_id, event_id) {
            (_, None) => self.violations.push(Violation::stored(format!(
                "delivery {msg} answered {status} without an event id"
            ))),
            (Some(known), Some(new)) if *known != new => self.violations.push(Violation::stored(
                format!("delivery {msg} answered with event {new}, the fact is {known}"),
            )),
            (_, Some(new)) => f.event_id = Some(new),
        }
        let first = !f.acknowledged;
        f.acknowledged = true;
        if first {
            let (is_sale, sale_of_return) = match &f.kind {
                FactKind::Sale { .. } => (true, None),
                FactKind::Return { sale, .. } => (false, Some(*sale)),
            };
            // Returns come hours to days later, some of them partial, some sales returned twice.
            let target = if is_sale { Some(fact) } else { sale_of_return };
            let chance = if is_sale { 450 } else { 250 };
            if let Some(sale) = target
                && self.rng(|r| r.chance(chance))
            {
                let after = Duration::seconds(self.rng(|r| r.range(3600, 3 * 86_400)));
                self.returns_due.push((now + after, sale));
            }
        }
    }
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Self::Send(_) => "send",
            Self::Publish => "publish",
            Self::Receive(..) => "receive",
            Self::Poll => "poll",
            Self::Crash => "crash",
            Self::Tick => "tick",
            Self::LongTick => "long-tick",
            Self::Skew => "skew",
            Self::DuplicateMessage => "duplicate-message",
            Self::Redeliver => "redeliver",
            Self::Poison => "poison",
        }
    }
}

enum Action {
    Send(Vec<usize>),
    Publish,
    Receive(usize, Vec<u64>),
    Poll,
    Crash,
    Tick,
    LongTick,
    Skew,
    DuplicateMessage,
    Redeliver,
    Poison,
}

/// Polls `fut` until it reaches a step point (`None`) or its end (`Some`). Waits that are not step
/// points (an adapter's writer thread) are waited for here, with nothing else polled meanwhile.
async fn step(ctl: &Ctl, fut: &mut TaskFuture) -> Option<Done> {
    std::future::poll_fn(|cx| {
        ctl.lock().yielded = false;
        match fut.as_mut().poll(cx) {
            Poll::Ready(done) => Poll::Ready(Some(done)),
            Poll::Pending => {
                if std::mem::take(&mut ctl.lock().yielded) {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                }
            }
        }
    })
    .await
}

/// The queues of infra/ the simulation runs (parsed once per process): stock-sync's, loyalty-accrual's
/// and dynamics-sync's, with its `max_receive_count` variable resolved to its default.
fn declared_queues() -> &'static [pos_local::infra::ConsumerQueue] {
    static QUEUES: std::sync::OnceLock<Vec<pos_local::infra::ConsumerQueue>> =
        std::sync::OnceLock::new();
    QUEUES.get_or_init(|| {
        let mut declared = pos_local::infra::embedded_consumer_queues();
        declared.extend(
            pos_local::infra::embedded_delivery_queues()
                .into_iter()
                .filter(|q| q.module == "dynamics_sync_queue")
                .map(|mut q| {
                    q.max_receive_count = variable_default("dynamics_max_receives").unwrap_or(30);
                    q
                }),
        );
        declared
    })
}

/// The default of a Terraform variable in `infra/variables.tf` (a number).
fn variable_default(name: &str) -> Option<i64> {
    let body = hcl::parse(include_str!("../../../infra/variables.tf")).ok()?;
    body.blocks()
        .find(|b| {
            b.identifier() == "variable" && b.labels().first().is_some_and(|l| l.as_str() == name)
        })
        .and_then(|b| b.body().attributes().find(|a| a.key() == "default"))
        .and_then(|a| match a.expr() {
            hcl::Expression::Number(n) => n.as_i64(),
            _ => None,
        })
}

fn minor(amount: i64) -> String {
    format!("{}.{:02}", amount / 100, amount % 100)
}

/// A Standard Webhooks `sale.completed` body.
fn sale_body(
    sale_id: &str,
    store: &str,
    member: Option<&str>,
    lines: &[SaleLine],
    at: DateTime<Utc>,
) -> Value {
    let total: i64 = lines.iter().map(|l| l.quantity * l.unit_minor).sum();
    let mut data = json!({
        "sale_id": sale_id,
        "store_id": store,
        "occurred_at": at.to_rfc3339(),
        "currency": "EUR",
        "channel": "till-1",
        "lines": lines.iter().map(|l| json!({
            "line_id": l.line_id, "sku": l.sku, "quantity": l.quantity, "unit_price": minor(l.unit_minor)
        })).collect::<Vec<_>>(),
        "total": minor(total),
        "tax": "0.00",
    });
    if let (Some(m), Some(obj)) = (member, data.as_object_mut()) {
        obj.insert("member_id".into(), Value::String(m.into()));
    }
    json!({"type": "sale.completed", "timestamp": at.to_rfc3339(), "data": data})
}

/// A Standard Webhooks `return.completed` body.
fn return_body(
    return_id: &str,
    sale_id: &str,
    store: &str,
    lines: &[ReturnLine],
    at: DateTime<Utc>,
) -> Value {
    let total: i64 = lines.iter().map(|l| l.refund_minor).sum();
    json!({"type": "return.completed", "timestamp": at.to_rfc3339(), "data": {
        "return_id": return_id,
        "sale_id": sale_id,
        "store_id": store,
        "occurred_at": at.to_rfc3339(),
        "currency": "EUR",
        "lines": lines.iter().map(|l| json!({
            "line_id": l.line_id, "sku": l.sku, "quantity": l.quantity, "restock": l.restock,
            "refund": minor(l.refund_minor)
        })).collect::<Vec<_>>(),
        "total_refund": minor(total),
    }})
}
