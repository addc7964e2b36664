//! A circuit breaker per destination, shared by every instance of the delivery function through a store
//! with conditional writes (DynamoDB deployed, the embedded store locally, memory in tests).
//!
//! States, as the destination's record holds them:
//! - **closed**: calls go through; failures are counted in a window (`failure_threshold` within
//!   `window` opens the breaker); a success resets the count.
//! - **open** until an instant: no call reaches the destination; the caller returns its records to the
//!   queue to wait (see [`Admission::Rejected`]).
//! - **half-open**: once the open period is over, exactly one caller is elected to probe the destination
//!   by a conditional write on the record's version (the others are rejected). The probe's success closes
//!   the breaker, its failure opens it again. A probe that never reports (its Lambda died) is replaced
//!   after `probe_timeout`.
//!
//! Every change is a compare-and-set on `version`; a lost race reloads and decides again, so concurrent
//! instances agree without a lock. The design follows the breaker Powertools for AWS Lambda (Python)
//! describes (state in a shared table, one elected probe); no Rust one exists.

use crate::ports::Clock;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A destination's breaker state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed {
        /// Failures counted since `since`.
        failures: u32,
        /// Start of the counting window.
        since: DateTime<Utc>,
    },
    /// No calls until `until`.
    Open {
        /// End of the open period.
        until: DateTime<Utc>,
    },
    /// One probe is in flight; others wait until it reports or `probe_until` passes.
    HalfOpen {
        /// After this the probe is presumed lost and another may be elected.
        probe_until: DateTime<Utc>,
    },
}

/// The stored record: state plus the version every write compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerRecord {
    /// The state.
    #[serde(flatten)]
    pub state: BreakerState,
    /// Incremented by every write.
    pub version: u64,
}

/// Why the breaker's store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("breaker store unavailable: {0}")]
pub struct BreakerStoreError(pub String);

/// Where breaker records live.
#[async_trait]
pub trait BreakerStore: Send + Sync {
    /// The destination's record, if any.
    async fn load(&self, destination: &str) -> Result<Option<BreakerRecord>, BreakerStoreError>;

    /// Writes `record` if the stored version is `expected` (`None`: no record yet). Returns whether it
    /// was written (`false`: another instance changed it first).
    async fn compare_and_set(
        &self,
        destination: &str,
        expected: Option<u64>,
        record: &BreakerRecord,
    ) -> Result<bool, BreakerStoreError>;
}

/// Tunables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures within `window` that open the breaker.
    pub failure_threshold: u32,
    /// The counting window.
    pub window: Duration,
    /// How long the breaker stays open before a probe.
    pub open_for: Duration,
    /// How long a probe may take before another is elected.
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            window: Duration::seconds(60),
            open_for: Duration::seconds(30),
            probe_timeout: Duration::seconds(30),
        }
    }
}

/// Whether a call may go to the destination now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Closed: call.
    Call,
    /// Half-open and this caller was elected: call once, then report with `probe = true`.
    Probe,
    /// Open (or another caller is probing): do not call; try again after `retry_in`.
    Rejected {
        /// When it is worth asking again.
        retry_in: Duration,
    },
}

/// What changed, for metrics and alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing.
    None,
    /// The breaker opened (alarm).
    Opened,
    /// The breaker closed again.
    Closed,
}

/// A breaker over a store; cheap to clone.
#[derive(Clone)]
pub struct CircuitBreaker {
    store: Arc<dyn BreakerStore>,
    clock: Arc<dyn Clock>,
    config: BreakerConfig,
}

/// Compare-and-set rounds before giving up on a hotly contended record (each loses only to a change
/// another instance made, so the loop ends quickly in practice).
const MAX_ROUNDS: usize = 16;

impl CircuitBreaker {
    /// A breaker with `config` over `store`.
    pub fn new(store: Arc<dyn BreakerStore>, clock: Arc<dyn Clock>, config: BreakerConfig) -> Self {
        Self {
            store,
            clock,
            config,
        }
    }

    fn closed(&self, now: DateTime<Utc>) -> BreakerState {
        BreakerState::Closed {
            failures: 0,
            since: now,
        }
    }

    /// Asks whether `destination` may be called now.
    pub async fn admit(&self, destination: &str) -> Result<Admission, BreakerStoreError> {
        for _ in 0..MAX_ROUNDS {
            let now = self.clock.now();
            let current = self.store.load(destination).await?;
            let (state, version) = match &current {
                None => return Ok(Admission::Call),
                Some(r) => (&r.state, r.version),
            };
            match state {
                BreakerState::Closed { .. } => return Ok(Admission::Call),
                BreakerState::Open { until } if now < *until => {
                    return Ok(Admission::Rejected {
                        retry_in: *until - now,
                    });
                }
                BreakerState::HalfOpen { probe_until } if now < *probe_until => {
                    return Ok(Admission::Rejected {
                        retry_in: *probe_until - now,
                    });
                }
                // Open period over, or the probe presumed lost: elect a probe.
                BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => {}
            }
            let next = BreakerRecord {
                state: BreakerState::HalfOpen {
                    probe_until: now + self.config.probe_timeout,
                },
                version: version + 1,
            };
            if self
                .store
                .compare_and_set(destination, Some(version), &next)
                .await?
            {
                return Ok(Admission::Probe);
            }
            // Another instance moved first: decide again on what it wrote.
        }
        Ok(Admission::Rejected {
            retry_in: self.config.probe_timeout,
        })
    }

    /// Reports a successful call (`probe`: the call was admitted as [`Admission::Probe`]).
    pub async fn record_success(
        &self,
        destination: &str,
        probe: bool,
    ) -> Result<Transition, BreakerStoreError> {
        self.update(destination, |now, state| match state {
            // A success resets the count; nothing to write when there is nothing to reset.
            None | Some(BreakerState::Closed { failures: 0, .. }) => None,
            Some(BreakerState::Closed { .. }) => Some((self.closed(now), Transition::None)),
            Some(BreakerState::HalfOpen { .. }) if probe => {
                Some((self.closed(now), Transition::Closed))
            }
            // A call admitted before the breaker opened succeeded late: it does not close it (only the
            // elected probe does), but it says nothing against the destination either.
            Some(BreakerState::HalfOpen { .. } | BreakerState::Open { .. }) => None,
        })
        .await
    }

    /// Reports a failed call that counts against the destination (5xx, timeouts, 429: not 4xx about
    /// our own request).
    pub async fn record_failure(
        &self,
        destination: &str,
        probe: bool,
    ) -> Result<Transition, BreakerStoreError> {
        let config = self.config;
        self.update(destination, |now, state| {
            let open = (
                BreakerState::Open {
                    until: now + config.open_for,
                },
                Transition::Opened,
            );
            match state {
                Some(BreakerState::HalfOpen { .. }) if probe => Some(open),
                // Already open, or another caller is probing: the breaker already knows.
                Some(BreakerState::HalfOpen { .. } | BreakerState::Open { .. }) => None,
                None => Some(if config.failure_threshold <= 1 {
                    open
                } else {
                    (
                        BreakerState::Closed {
                            failures: 1,
                            since: now,
                        },
                        Transition::None,
                    )
                }),
                Some(BreakerState::Closed { failures, since }) => {
                    let (failures, since) = if now - *since > config.window {
                        (1, now)
                    } else {
                        (failures + 1, *since)
                    };
                    Some(if failures >= config.failure_threshold {
                        open
                    } else {
                        (BreakerState::Closed { failures, since }, Transition::None)
                    })
                }
            }
        })
        .await
    }

    /// Applies `decide` with compare-and-set until it holds or there is nothing to write.
    async fn update<F>(&self, destination: &str, decide: F) -> Result<Transition, BreakerStoreError>
    where
        F: Fn(DateTime<Utc>, Option<&BreakerState>) -> Option<(BreakerState, Transition)>,
    {
        for _ in 0..MAX_ROUNDS {
            let now = self.clock.now();
            let current = self.store.load(destination).await?;
            let Some((state, transition)) = decide(now, current.as_ref().map(|r| &r.state)) else {
                return Ok(Transition::None);
            };
            let expected = current.as_ref().map(|r| r.version);
            let record = BreakerRecord {
                state,
                version: expected.map_or(1, |v| v + 1),
            };
            if self
                .store
                .compare_and_set(destination, expected, &record)
                .await?
            {
                if transition == Transition::Opened {
                    tracing::warn!(destination, "circuit breaker opened");
                } else if transition == Transition::Closed {
                    tracing::info!(destination, "circuit breaker closed");
                }
                return Ok(transition);
            }
        }
        Err(BreakerStoreError(
            "breaker record too contended to update".into(),
        ))
    }
}

/// Breaker records in memory: the fake for unit tests, with the same compare-and-set semantics as the
/// stores. It does not persist and is not shared between processes.
#[derive(Debug, Default)]
pub struct MemoryBreakerStore {
    records: Mutex<HashMap<String, BreakerRecord>>,
}

#[async_trait]
impl BreakerStore for MemoryBreakerStore {
    async fn load(&self, destination: &str) -> Result<Option<BreakerRecord>, BreakerStoreError> {
        Ok(self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(destination)
            .cloned())
    }

    async fn compare_and_set(
        &self,
        destination: &str,
        expected: Option<u64>,
        record: &BreakerRecord,
    ) -> Result<bool, BreakerStoreError> {
        let mut records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if records.get(destination).map(|r| r.version) != expected {
            return Ok(false);
        }
        records.insert(destination.to_owned(), record.clone());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::conformance;

    #[tokio::test]
    async fn the_memory_store_keeps_the_contract() {
        conformance::breaker_store_compare_and_set(&MemoryBreakerStore::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn failures_within_the_window_open_it_and_a_success_resets_the_count() {
        conformance::breaker_opens_within_the_window(Arc::new(MemoryBreakerStore::default()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn after_the_open_period_exactly_one_probe_is_elected() {
        conformance::breaker_elects_one_probe(Arc::new(MemoryBreakerStore::default()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn a_failed_probe_reopens_and_a_lost_probe_is_replaced() {
        conformance::breaker_reopens_and_replaces_a_lost_probe(Arc::new(
            MemoryBreakerStore::default(),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn two_breakers_over_one_store_share_its_state() {
        let store = Arc::new(MemoryBreakerStore::default());
        conformance::breaker_is_shared_between_instances(store.clone(), store)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
