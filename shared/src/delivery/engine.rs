//! Delivering one event to one destination, exactly once in effect, under at-least-once delivery.
//!
//! For each record the engine:
//! 1. skips it when the ledger says it is already `delivered` there (an SQS redelivery);
//! 2. asks the destination's circuit breaker; while it is open the record goes back to the queue
//!    without a call;
//! 3. when an earlier attempt may have landed (a timeout or 5xx after the request left, in this
//!    invocation or a previous one), reads it back by the destination's natural key before writing
//!    again: never a second order, never a second stock movement;
//! 4. sends it, with short waits in process and longer ones as a growing visibility timeout
//!    ([`super::retry`]);
//! 5. records the outcome in the ledger and the breaker.
//!
//! The destination adapter supplies the read-back and the write ([`Destination`]); everything else is
//! here once.

use super::breaker::{Admission, CircuitBreaker, Transition};
use super::ledger::{DeliveryEntry, DeliveryLedger, DeliveryStatus, LedgerError};
use super::retry::{Next, RetryPolicy};
use crate::metrics::{Metrics, Unit};
use crate::model::{CanonicalEvent, EventEnvelope};
use crate::ports::Clock;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// The metric counting breaker openings (the alarm in infra/ watches it).
pub const BREAKER_OPENED: &str = "BreakerOpened";

/// What the destination holds for an event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Landed {
    /// The destination's id for it.
    pub remote_id: Option<String>,
    /// Its version or ETag.
    pub remote_version: Option<String>,
}

/// A failed call, as the adapter classified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Network, timeout, 429, 5xx: the write may or may not have landed.
    Transient {
        /// Our classification and the destination's status/code (no bodies, no secrets).
        reason: String,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The destination refuses this request for good (4xx about our request, a mapping it rejects).
    Permanent {
        /// Why.
        reason: String,
    },
}

/// A destination adapter.
#[async_trait]
pub trait Destination: Send + Sync {
    /// Its name in the ledger, metrics and breaker.
    fn name(&self) -> &str;

    /// Whether it takes this event at all (others are acknowledged without a call).
    fn wants(&self, event: &EventEnvelope) -> bool;

    /// What already landed for `event`, found by the destination's natural key.
    async fn read_back(&self, event: &EventEnvelope) -> Result<Option<Landed>, Failure>;

    /// Writes `event` once, carrying the destination's idempotency key.
    async fn send(&self, event: &EventEnvelope) -> Result<Landed, Failure>;
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered now.
    Delivered(Landed),
    /// Nothing to do: already delivered, or an event this destination does not take.
    Skipped,
    /// Try again later: return the record to the queue, visible after this long.
    Requeue(Duration),
    /// Refused for good: the record is poison for this destination (the ledger says `dead`).
    Dead(String),
}

/// Why the engine could not decide (its own stores failed): the record is retried as a whole.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The breaker's store failed.
    #[error(transparent)]
    Breaker(#[from] super::breaker::BreakerStoreError),
}

/// An in-process limit on calls to one destination (GCRA): every read-back and write waits for a
/// permit, so one instance never bursts past what the destination allows. Across instances, the event
/// source mapping's maximum concurrency bounds the total (infra/).
pub type RateLimiter = governor::DefaultDirectRateLimiter;

/// A limiter of `per_second` calls with bursts of up to `per_second` (at least one).
pub fn rate_limiter(per_second: u32) -> RateLimiter {
    let rate = std::num::NonZeroU32::new(per_second.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    governor::RateLimiter::direct(governor::Quota::per_second(rate))
}

/// Delivers events to one destination.
pub struct Deliverer {
    destination: Arc<dyn Destination>,
    ledger: Arc<dyn DeliveryLedger>,
    breaker: CircuitBreaker,
    policy: RetryPolicy,
    clock: Arc<dyn Clock>,
    limiter: Option<Arc<RateLimiter>>,
    metrics: Option<Arc<Metrics>>,
}

fn sale_of(event: &EventEnvelope) -> Option<crate::ids::SaleId> {
    match &event.event {
        CanonicalEvent::SaleCompleted(s) => Some(s.sale_id.clone()),
        CanonicalEvent::ReturnCompleted(r) => r.sale_id.clone(),
        CanonicalEvent::SaleAwaitingEnrichment(p) => Some(p.sale_id.clone()),
        _ => None,
    }
}

impl Deliverer {
    /// An engine for `destination`.
    pub fn new(
        destination: Arc<dyn Destination>,
        ledger: Arc<dyn DeliveryLedger>,
        breaker: CircuitBreaker,
        policy: RetryPolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            destination,
            ledger,
            breaker,
            policy,
            clock,
            limiter: None,
            metrics: None,
        }
    }

    /// Limits calls to the destination to `per_second` from this instance.
    #[must_use]
    pub fn with_rate_limit(self, per_second: u32) -> Self {
        self.with_limiter(Arc::new(rate_limiter(per_second)))
    }

    /// Shares `limiter` with other deliverers calling the same service (one budget for all).
    #[must_use]
    pub fn with_limiter(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Emits `Delivered`, `Retried`, `Failed`, `BreakerOpened` and `DeliveryLatency` per destination.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The destination's name.
    pub fn destination(&self) -> &str {
        self.destination.name()
    }

    fn count(&self, name: &str, value: f64) {
        if let Some(m) = &self.metrics {
            m.emit_with(
                Some(("destination", self.destination.name())),
                &[(name, Unit::Count, value)],
            );
        }
    }

    /// Records that the queue gave up on `event` (its last receive failed transiently): the ledger
    /// says `dead` with `reason` until a replay from the DLQ delivers it.
    pub async fn give_up(&self, event: &EventEnvelope, reason: &str) -> Result<(), EngineError> {
        let name = self.destination.name();
        if let Some(mut entry) = self.ledger.get(&event.event_id, name).await?
            && entry.status != DeliveryStatus::Delivered
        {
            entry.status = DeliveryStatus::Dead;
            entry.last_error = Some(reason.to_owned());
            self.save(&mut entry).await?;
            self.count("Failed", 1.0);
        }
        Ok(())
    }

    /// Delivers `event`, received `receive_count` times from the queue (from 1).
    pub async fn deliver(
        &self,
        event: &EventEnvelope,
        receive_count: u32,
    ) -> Result<Outcome, EngineError> {
        let name = self.destination.name().to_owned();
        if !self.destination.wants(event) {
            return Ok(Outcome::Skipped);
        }
        let mut entry = match self.ledger.get(&event.event_id, &name).await? {
            Some(e) if e.status == DeliveryStatus::Delivered => return Ok(Outcome::Skipped),
            Some(e) => e,
            None => {
                let mut e = DeliveryEntry::pending(
                    event.event_id.clone(),
                    sale_of(event),
                    &name,
                    self.clock.now(),
                );
                e.version = 1;
                if !self.ledger.put(&e, None).await? {
                    // Another instance created it meanwhile: work from its copy.
                    match self.ledger.get(&event.event_id, &name).await? {
                        Some(e) if e.status == DeliveryStatus::Delivered => {
                            return Ok(Outcome::Skipped);
                        }
                        Some(e) => e,
                        None => return Err(LedgerError("entry vanished".into()).into()),
                    }
                } else {
                    e
                }
            }
        };
        let probe = match self.breaker.admit(&name).await? {
            Admission::Call => false,
            Admission::Probe => true,
            Admission::Rejected { retry_in } => {
                let wait = retry_in.to_std().unwrap_or(Duration::from_secs(1));
                return Ok(Outcome::Requeue(wait.max(Duration::from_secs(1))));
            }
        };
        // An attempt before this one may have landed although it reported a failure (or the function
        // died before recording its outcome).
        let mut maybe_landed = entry.attempts > 0;
        let mut tried = 0;
        loop {
            tried += 1;
            // Write-ahead: the attempt is recorded before the request leaves, so a crash after the
            // destination took it makes the next receive read back instead of writing again.
            entry.attempts += 1;
            self.save(&mut entry).await?;
            if let Some(limiter) = &self.limiter {
                limiter.until_ready().await;
            }
            let started = std::time::Instant::now();
            let result = if maybe_landed {
                match self.destination.read_back(event).await {
                    Ok(Some(landed)) => Ok(landed),
                    Ok(None) => self.destination.send(event).await,
                    Err(f) => Err(f),
                }
            } else {
                self.destination.send(event).await
            };
            match result {
                Ok(landed) => {
                    if let Some(m) = &self.metrics {
                        m.emit_with(
                            Some(("destination", &name)),
                            &[
                                ("Delivered", Unit::Count, 1.0),
                                (
                                    "DeliveryLatency",
                                    Unit::Milliseconds,
                                    started.elapsed().as_secs_f64() * 1000.0,
                                ),
                            ],
                        );
                    }
                    self.breaker.record_success(&name, probe).await?;
                    entry.status = DeliveryStatus::Delivered;
                    entry.remote_id.clone_from(&landed.remote_id);
                    entry.remote_version.clone_from(&landed.remote_version);
                    entry.last_error = None;
                    self.save(&mut entry).await?;
                    return Ok(Outcome::Delivered(landed));
                }
                Err(Failure::Permanent { reason }) => {
                    entry.status = DeliveryStatus::Dead;
                    entry.last_error = Some(reason.clone());
                    self.save(&mut entry).await?;
                    self.count("Failed", 1.0);
                    tracing::error!(destination = %name, event_id = %event.event_id, %reason, "delivery refused for good");
                    return Ok(Outcome::Dead(reason));
                }
                Err(Failure::Transient {
                    reason,
                    retry_after,
                }) => {
                    maybe_landed = true;
                    let opened =
                        self.breaker.record_failure(&name, probe).await? == Transition::Opened;
                    self.count("Retried", 1.0);
                    if opened {
                        self.count(BREAKER_OPENED, 1.0);
                        tracing::error!(destination = %name, %reason, "circuit breaker opened");
                    }
                    entry.status = DeliveryStatus::Retrying;
                    entry.last_error = Some(reason.clone());
                    let next = if opened {
                        // This failure opened the breaker: no more calls until it half-opens.
                        Next::Requeue(retry_after.unwrap_or(self.policy.requeue_base))
                    } else {
                        self.policy
                            .next(tried, retry_after, receive_count, fastrand::f64())
                    };
                    match next {
                        Next::Wait(wait) => {
                            tracing::warn!(destination = %name, event_id = %event.event_id, %reason, wait_ms = wait.as_millis() as u64, "delivery failed; retrying");
                            tokio::time::sleep(wait).await;
                        }
                        Next::Requeue(after) => {
                            self.save(&mut entry).await?;
                            tracing::warn!(destination = %name, event_id = %event.event_id, %reason, requeue_s = after.as_secs(), "delivery failed; back to the queue");
                            return Ok(Outcome::Requeue(after));
                        }
                    }
                }
            }
        }
    }

    /// Saves the entry, bumping its version (a lost race means another instance is working on the same
    /// record: reload and keep the furthest status).
    async fn save(&self, entry: &mut DeliveryEntry) -> Result<(), EngineError> {
        let expected = Some(entry.version);
        entry.version += 1;
        entry.updated_at = self.clock.now();
        if self.ledger.put(entry, expected).await? {
            return Ok(());
        }
        // The other instance's write wins unless ours is `delivered` and theirs is not.
        if let Some(current) = self.ledger.get(&entry.event_id, &entry.destination).await?
            && current.status != DeliveryStatus::Delivered
            && entry.status == DeliveryStatus::Delivered
        {
            let expected = Some(current.version);
            entry.version = current.version + 1;
            entry.attempts = entry.attempts.max(current.attempts);
            self.ledger.put(entry, expected).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::breaker::{BreakerConfig, MemoryBreakerStore};
    use crate::delivery::ledger::MemoryDeliveryLedger;
    use crate::ports::ManualClock;
    use std::sync::Mutex;

    /// A destination that lands writes but may lose the answer: what a timeout after the request left
    /// looks like. It counts writes, which must never exceed one per event.
    #[derive(Default)]
    struct Flaky {
        stored: Mutex<Vec<String>>,
        /// Scripted results of the next sends: `lost` (lands, answers a timeout), `down` (does not
        /// land, 503), `bad` (400).
        script: Mutex<Vec<&'static str>>,
        sends: Mutex<u32>,
    }

    #[async_trait]
    impl Destination for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn wants(&self, _: &EventEnvelope) -> bool {
            true
        }
        async fn read_back(&self, event: &EventEnvelope) -> Result<Option<Landed>, Failure> {
            Ok(self
                .stored
                .lock()
                .expect("lock")
                .contains(&event.event_id.to_string())
                .then(|| Landed {
                    remote_id: Some(format!("remote-{}", event.event_id)),
                    remote_version: Some("1".into()),
                }))
        }
        async fn send(&self, event: &EventEnvelope) -> Result<Landed, Failure> {
            *self.sends.lock().expect("lock") += 1;
            let step = {
                let mut s = self.script.lock().expect("lock");
                if s.is_empty() { "ok" } else { s.remove(0) }
            };
            match step {
                "down" => Err(Failure::Transient {
                    reason: "HTTP 503".into(),
                    retry_after: None,
                }),
                "slow" => Err(Failure::Transient {
                    reason: "HTTP 429".into(),
                    retry_after: Some(Duration::from_secs(120)),
                }),
                "bad" => Err(Failure::Permanent {
                    reason: "HTTP 400 InvalidInput".into(),
                }),
                other => {
                    self.stored
                        .lock()
                        .expect("lock")
                        .push(event.event_id.to_string());
                    if other == "lost" {
                        Err(Failure::Transient {
                            reason: "timeout".into(),
                            retry_after: None,
                        })
                    } else {
                        Ok(Landed {
                            remote_id: Some(format!("remote-{}", event.event_id)),
                            remote_version: Some("1".into()),
                        })
                    }
                }
            }
        }
    }

    fn engine(dest: Arc<Flaky>) -> (Deliverer, Arc<MemoryDeliveryLedger>) {
        engine_with_ledger(dest, Arc::new(MemoryDeliveryLedger::default()))
    }

    fn engine_with_ledger(
        dest: Arc<Flaky>,
        ledger: Arc<MemoryDeliveryLedger>,
    ) -> (Deliverer, Arc<MemoryDeliveryLedger>) {
        let clock = Arc::new(ManualClock::new(crate::samples::sample_time()));
        let breaker = CircuitBreaker::new(
            Arc::new(MemoryBreakerStore::default()),
            clock.clone(),
            BreakerConfig::default(),
        );
        (
            Deliverer::new(dest, ledger.clone(), breaker, RetryPolicy::default(), clock),
            ledger,
        )
    }

    fn sale_event() -> EventEnvelope {
        let body = crate::samples::standard_sale("d-1", "store-1", None, 1);
        crate::samples::envelope_of(&crate::samples::standard(
            "m",
            &body,
            crate::samples::sample_time(),
            None,
        ))
        .expect("a sale")
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_whose_answer_was_lost_is_read_back_not_sent_again() {
        let dest = Arc::new(Flaky::default());
        dest.script.lock().expect("lock").push("lost");
        let (engine, ledger) = engine(dest.clone());
        let event = sale_event();
        let out = engine.deliver(&event, 1).await.expect("deliver");
        assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
        assert_eq!(dest.stored.lock().expect("lock").len(), 1, "one write");
        assert_eq!(
            *dest.sends.lock().expect("lock"),
            1,
            "read back, not resent"
        );
        let entry = ledger
            .get(&event.event_id, "flaky")
            .await
            .expect("get")
            .expect("entry");
        assert_eq!(entry.status, DeliveryStatus::Delivered);
        assert_eq!(entry.attempts, 2);
        assert!(entry.sale_id.is_some());
        // The SQS redelivery of the same record: skipped, no call.
        assert_eq!(
            engine.deliver(&event, 2).await.expect("again"),
            Outcome::Skipped
        );
        assert_eq!(*dest.sends.lock().expect("lock"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_answer_in_an_earlier_invocation_is_read_back_too() {
        let dest = Arc::new(Flaky::default());
        dest.script
            .lock()
            .expect("lock")
            .extend(["down", "down", "lost"]);
        let (engine, _) = engine(dest.clone());
        let event = sale_event();
        // Three tries in this invocation; the last one landed but answered a timeout.
        let out = engine.deliver(&event, 1).await.expect("deliver");
        assert!(matches!(out, Outcome::Requeue(_)), "{out:?}");
        assert_eq!(*dest.sends.lock().expect("lock"), 3);
        // The next receive reads it back first: delivered, no second write.
        let out = engine.deliver(&event, 2).await.expect("deliver");
        assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
        assert_eq!(*dest.sends.lock().expect("lock"), 3);
        assert_eq!(dest.stored.lock().expect("lock").len(), 1);
    }

    /// A ledger whose writes fail on demand: the function dying between the destination's answer and
    /// recording it.
    struct DyingLedger {
        inner: MemoryDeliveryLedger,
        fail_after: Mutex<Option<u32>>,
    }

    #[async_trait]
    impl DeliveryLedger for DyingLedger {
        async fn get(
            &self,
            event_id: &crate::ids::EventId,
            destination: &str,
        ) -> Result<Option<DeliveryEntry>, LedgerError> {
            self.inner.get(event_id, destination).await
        }
        async fn put(
            &self,
            entry: &DeliveryEntry,
            expected: Option<u64>,
        ) -> Result<bool, LedgerError> {
            let died = {
                let mut left = self.fail_after.lock().expect("lock");
                match left.as_mut() {
                    Some(0) => true,
                    Some(n) => {
                        *n -= 1;
                        false
                    }
                    None => false,
                }
            };
            if died {
                return Err(LedgerError("died".into()));
            }
            self.inner.put(entry, expected).await
        }
        async fn for_sale(
            &self,
            sale_id: &crate::ids::SaleId,
        ) -> Result<Vec<DeliveryEntry>, LedgerError> {
            self.inner.for_sale(sale_id).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dying_after_the_destination_took_the_write_never_writes_it_twice() {
        let dest = Arc::new(Flaky::default());
        let clock = Arc::new(ManualClock::new(crate::samples::sample_time()));
        // Two writes succeed (the pending entry, the write-ahead attempt), the outcome's does not.
        let ledger = Arc::new(DyingLedger {
            inner: MemoryDeliveryLedger::default(),
            fail_after: Mutex::new(Some(2)),
        });
        let engine = Deliverer::new(
            dest.clone(),
            ledger.clone(),
            CircuitBreaker::new(
                Arc::new(MemoryBreakerStore::default()),
                clock.clone(),
                BreakerConfig::default(),
            ),
            RetryPolicy::default(),
            clock,
        );
        let event = sale_event();
        assert!(engine.deliver(&event, 1).await.is_err(), "died");
        assert_eq!(
            dest.stored.lock().expect("lock").len(),
            1,
            "the destination has it"
        );
        *ledger.fail_after.lock().expect("lock") = None;
        let out = engine.deliver(&event, 2).await.expect("redelivered");
        assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
        assert_eq!(
            *dest.sends.lock().expect("lock"),
            1,
            "read back, never resent"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn outages_go_back_to_the_queue_permanent_refusals_are_dead() {
        let dest = Arc::new(Flaky::default());
        dest.script
            .lock()
            .expect("lock")
            .extend(["down", "down", "down"]);
        let (engine, ledger) = engine(dest.clone());
        let event = sale_event();
        let out = engine.deliver(&event, 1).await.expect("deliver");
        assert!(matches!(out, Outcome::Requeue(_)), "{out:?}");
        let entry = ledger
            .get(&event.event_id, "flaky")
            .await
            .expect("get")
            .expect("entry");
        assert_eq!(
            (entry.status, entry.attempts),
            (DeliveryStatus::Retrying, 3)
        );
        assert_eq!(entry.last_error.as_deref(), Some("HTTP 503"));
        // A long Retry-After is not waited for in the function.
        dest.script.lock().expect("lock").push("slow");
        assert_eq!(
            engine.deliver(&event, 2).await.expect("deliver"),
            Outcome::Requeue(Duration::from_secs(120))
        );
        // Then a 400: dead, with the reason, and no write.
        dest.script.lock().expect("lock").push("bad");
        assert_eq!(
            engine.deliver(&event, 3).await.expect("deliver"),
            Outcome::Dead("HTTP 400 InvalidInput".into())
        );
        assert!(dest.stored.lock().expect("lock").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_returns_records_without_calling() {
        let dest = Arc::new(Flaky::default());
        dest.script
            .lock()
            .expect("lock")
            .extend(std::iter::repeat_n("down", 6));
        let (engine, _) = engine(dest.clone());
        let event = sale_event();
        // Default breaker: 5 failures in 60 s open it.
        let _ = engine.deliver(&event, 1).await.expect("first");
        let _ = engine.deliver(&event, 2).await.expect("second");
        let sends = *dest.sends.lock().expect("lock");
        assert_eq!(sends, 5, "the fifth failure opened the breaker");
        let out = engine.deliver(&event, 3).await.expect("rejected");
        assert!(matches!(out, Outcome::Requeue(_)), "{out:?}");
        assert_eq!(
            *dest.sends.lock().expect("lock"),
            sends,
            "no call while open"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn metrics_count_per_destination_and_a_given_up_record_is_dead() {
        let dest = Arc::new(Flaky::default());
        dest.script
            .lock()
            .expect("lock")
            .extend(std::iter::repeat_n("down", 5));
        let (engine, ledger) = engine(dest.clone());
        let metrics = Arc::new(Metrics::new(
            "flaky-sync",
            crate::metrics::Sink::Memory(Mutex::new(Vec::new())),
        ));
        let engine = engine.with_metrics(metrics.clone());
        let event = sale_event();
        let _ = engine.deliver(&event, 1).await.expect("first");
        let _ = engine.deliver(&event, 2).await.expect("second");
        let total = |name: &str| -> f64 {
            metrics
                .recorded()
                .iter()
                .filter(|d| d["destination"] == "flaky")
                .filter_map(|d| d[name].as_f64())
                .sum()
        };
        assert_eq!(total("Retried"), 5.0);
        assert_eq!(total("BreakerOpened"), 1.0);
        engine
            .give_up(&event, "receive limit reached")
            .await
            .expect("give up");
        let entry = ledger
            .get(&event.event_id, "flaky")
            .await
            .expect("get")
            .expect("entry");
        assert_eq!(entry.status, DeliveryStatus::Dead);
        assert_eq!(total("Failed"), 1.0);
        // A replay from the DLQ after the outage delivers it (and reads back first: it was tried).
        let other = Arc::new(Flaky::default());
        let (engine, _) = engine_with_ledger(other.clone(), ledger.clone());
        let engine = engine.with_metrics(metrics.clone());
        let out = engine.deliver(&event, 1).await.expect("replayed");
        assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
        assert_eq!(total("Delivered"), 1.0);
        assert_eq!(
            metrics
                .recorded()
                .iter()
                .filter(|d| d["DeliveryLatency"].is_number())
                .count(),
            1
        );
    }

    #[test]
    fn the_rate_limiter_allows_its_burst_then_holds_calls_back() {
        let limiter = rate_limiter(2);
        assert!(limiter.check().is_ok());
        assert!(limiter.check().is_ok());
        assert!(
            limiter.check().is_err(),
            "a third call in the same instant waits"
        );
        assert!(
            rate_limiter(0).check().is_ok(),
            "zero means one per second, not none"
        );
    }
}
