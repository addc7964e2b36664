//! Retries inside one invocation for contention that clears in milliseconds: capped exponential backoff
//! with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").
//!
//! Used for DynamoDB `TransactionConflict` cancellations: two transactions touching the same item at
//! once (a hot store + SKU during a sale rush, one member's balance). Sending such a record back to SQS
//! as a failure would burn one of its `maxReceiveCount` receives per conflict, and while a backlog
//! drains, real sales would reach the DLQ. Retrying a few times here clears nearly all of them; what is
//! left still goes back to the queue. Waits use `tokio::time`, so tests control them with a paused clock.

use std::future::Future;
use std::time::Duration;

/// A retry policy: at most `attempts` tries, waits drawn from `[0, min(cap, base x 2^retry)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Total tries, the first included (at least 1).
    pub attempts: u32,
    /// Ceiling of the first wait.
    pub base: Duration,
    /// Ceiling of any wait.
    pub cap: Duration,
}

/// What one try gave.
#[derive(Debug)]
pub enum Attempt<T, E> {
    /// Final: success or an error a retry here cannot help.
    Done(Result<T, E>),
    /// Contention: worth another try after a wait (returned as the error once tries run out).
    Contended(E),
}

impl Backoff {
    /// For DynamoDB transaction conflicts: 8 tries, waits up to 10, 20, 40 … 400 ms (at most ~1.1 s in
    /// all, ~0.55 s expected), small against the consumers' 180 s visibility timeout.
    pub const CONFLICTS: Backoff = Backoff {
        attempts: 8,
        base: Duration::from_millis(10),
        cap: Duration::from_millis(400),
    };

    /// The wait before retry `retry` (0 for the first retry), given `unit` uniform in `[0, 1)`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(retry.min(30)))
            .min(self.cap);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Runs `op` (given the try number, from 0) until it is done or the tries run out.
    pub async fn retry<T, E, F, Fut>(&self, mut op: F) -> Result<T, E>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Attempt<T, E>>,
    {
        let mut tried = 0;
        loop {
            match op(tried).await {
                Attempt::Done(result) => return result,
                Attempt::Contended(e) if tried + 1 >= self.attempts.max(1) => return Err(e),
                Attempt::Contended(_) => {
                    tokio::time::sleep(self.delay(tried, fastrand::f64())).await;
                    tried += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_exponentially_under_the_cap_and_jitter_covers_the_range() {
        let b = Backoff::CONFLICTS;
        assert_eq!(
            b.delay(0, 0.999_999),
            Duration::from_micros(9_999) + Duration::from_nanos(990)
        );
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(40));
        assert_eq!(
            b.delay(10, 0.5),
            Duration::from_millis(200),
            "capped at 400 ms"
        );
        assert_eq!(b.delay(u32::MAX, 1.0), Duration::from_millis(400));
        assert_eq!(b.delay(2, 0.0), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn contention_is_retried_until_it_clears() {
        let mut calls = 0;
        let out: Result<&str, &str> = Backoff::CONFLICTS
            .retry(|n| {
                calls += 1;
                async move {
                    if n < 3 {
                        Attempt::Contended("conflict")
                    } else {
                        Attempt::Done(Ok("applied"))
                    }
                }
            })
            .await;
        assert_eq!((out, calls), (Ok("applied"), 4));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_last_try_with_the_contention_error() {
        let mut calls = 0;
        let out: Result<(), &str> = Backoff::CONFLICTS
            .retry(|_| {
                calls += 1;
                async { Attempt::Contended("conflict") }
            })
            .await;
        assert_eq!((out, calls), (Err("conflict"), 8));
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_are_not_retried() {
        let mut calls = 0;
        let out: Result<(), &str> = Backoff::CONFLICTS
            .retry(|_| {
                calls += 1;
                async { Attempt::Done(Err("validation")) }
            })
            .await;
        assert_eq!((out, calls), (Err("validation"), 1));
    }
}
