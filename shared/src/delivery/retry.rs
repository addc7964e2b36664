//! When and how to try a destination again.
//!
//! - Answers are classified once ([`classify`]): 2xx delivered; 401 refresh the token and retry once;
//!   408, 429 and 5xx transient; 409 a concurrency conflict the caller resolves by reading again; any
//!   other 4xx permanent (our request is wrong: retrying sends the same wrong request).
//! - `Retry-After` (RFC 9110 §10.2.3: delta-seconds or an HTTP-date) is honoured on 429 and 503.
//! - Short waits happen inside the invocation (capped exponential backoff with full jitter, or the
//!   server's `Retry-After` when it is short); longer outages return the record to SQS with a visibility
//!   timeout that grows with its receive count (equal jitter, at most SQS's 12 hours), so a down
//!   destination costs one receive per wait instead of a busy Lambda.
//! - A destination with a published retry schedule (Standard Webhooks: [`STANDARD_WEBHOOKS`]) uses it
//!   instead: the visibility timeout after the n-th receive is the schedule's n-th delay, no jitter.

use crate::backoff::Backoff;
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use std::time::Duration;

/// What an answer means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Delivered.
    Delivered,
    /// The token was refused: refresh it and retry once.
    Unauthorized,
    /// Worth retrying (the write may or may not have landed: read back before writing again).
    Transient,
    /// Optimistic concurrency lost (409/412): re-read the current version and retry.
    Conflict,
    /// Our request is wrong: retrying cannot help; the record is poison for this destination.
    Permanent,
}

/// Classifies an HTTP status.
pub fn classify(status: StatusCode) -> Class {
    match status.as_u16() {
        200..=299 => Class::Delivered,
        401 => Class::Unauthorized,
        408 | 425 | 429 | 500..=599 => Class::Transient,
        409 | 412 => Class::Conflict,
        _ => Class::Permanent,
    }
}

/// The server's `Retry-After`, as a wait from `now` (an HTTP-date in the past is no wait).
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let text = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(text).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// What to do after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait this long here, then try again.
    Wait(Duration),
    /// Give the record back to the queue, visible again after this long.
    Requeue(Duration),
}

/// The retry policy of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries inside one invocation (the first included) and their backoff.
    pub in_process: Backoff,
    /// The longest single wait worth spending inside the invocation (a longer `Retry-After` requeues).
    pub max_in_process_wait: Duration,
    /// Visibility timeout after the first receive; doubles per receive.
    pub requeue_base: Duration,
    /// Ceiling of the visibility timeout.
    pub requeue_cap: Duration,
    /// A fixed schedule of requeue delays, replacing the doubling of `requeue_base` when set.
    pub schedule: Option<Schedule>,
}

/// A fixed retry schedule: the delay before each retry, by the number of failed attempts so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule(pub &'static [Duration]);

/// The schedule the Standard Webhooks specification recommends: after the first (immediate) attempt,
/// retries 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h after the previous failure: 8 attempts over
/// about 27.6 hours.
pub const STANDARD_WEBHOOKS: Schedule = Schedule(&[
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
]);

impl Schedule {
    /// The wait after the `failed`-th failed attempt (from 1); `None` once the schedule is exhausted.
    pub fn after(&self, failed: u32) -> Option<Duration> {
        let index = usize::try_from(failed.checked_sub(1)?).ok()?;
        self.0.get(index).copied()
    }

    /// Attempts in all, the first included.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.0.len()).map_or(u32::MAX, |n| n.saturating_add(1))
    }
}

/// SQS's largest visibility timeout.
pub const SQS_MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            in_process: Backoff {
                attempts: 3,
                base: Duration::from_millis(200),
                cap: Duration::from_secs(2),
            },
            max_in_process_wait: Duration::from_secs(5),
            requeue_base: Duration::from_secs(30),
            requeue_cap: Duration::from_secs(3600),
            schedule: None,
        }
    }
}

impl RetryPolicy {
    /// One try per receive, requeued on `schedule` by the record's receive count (past its end, the last
    /// delay again: the caller decides when the schedule is exhausted).
    pub fn scheduled(schedule: Schedule) -> Self {
        Self {
            in_process: Backoff {
                attempts: 1,
                ..Self::default().in_process
            },
            schedule: Some(schedule),
            ..Self::default()
        }
    }

    /// After the `tried`-th try (from 1) failed transiently, with the server's `retry_after` and the
    /// record's SQS `receive_count` (from 1); `unit` is uniform in `[0, 1)` (the jitter).
    pub fn next(
        &self,
        tried: u32,
        retry_after: Option<Duration>,
        receive_count: u32,
        unit: f64,
    ) -> Next {
        let tries_left = tried < self.in_process.attempts.max(1);
        let requeue = |floor: Duration| {
            if let Some(schedule) = self.schedule {
                let delay = schedule
                    .after(receive_count.max(1))
                    .or_else(|| schedule.0.last().copied())
                    .unwrap_or(self.requeue_base);
                return Next::Requeue(delay.max(floor).min(SQS_MAX_VISIBILITY));
            }
            let ceiling = self
                .requeue_base
                .saturating_mul(2u32.saturating_pow(receive_count.saturating_sub(1).min(20)))
                .min(self.requeue_cap);
            // Equal jitter: spread retries of a whole backlog without waking any record at once.
            let jittered = ceiling / 2 + (ceiling / 2).mul_f64(unit.clamp(0.0, 1.0));
            Next::Requeue(jittered.max(floor).min(SQS_MAX_VISIBILITY))
        };
        match retry_after {
            Some(wait) if tries_left && wait <= self.max_in_process_wait => Next::Wait(wait),
            Some(wait) => requeue(wait),
            None if tries_left => Next::Wait(self.in_process.delay(tried.saturating_sub(1), unit)),
            None => requeue(Duration::ZERO),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_once() {
        for (status, class) in [
            (200, Class::Delivered),
            (201, Class::Delivered),
            (401, Class::Unauthorized),
            (408, Class::Transient),
            (429, Class::Transient),
            (500, Class::Transient),
            (503, Class::Transient),
            (409, Class::Conflict),
            (412, Class::Conflict),
            (400, Class::Permanent),
            (403, Class::Permanent),
            (404, Class::Permanent),
            (422, Class::Permanent),
        ] {
            assert_eq!(
                classify(StatusCode::from_u16(status).expect("status")),
                class,
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .expect("t")
            .with_timezone(&Utc);
        let h = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::RETRY_AFTER, v.parse().expect("value"));
            h
        };
        assert_eq!(retry_after(&h("120"), now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after(&h("Wed, 21 Oct 2015 07:28:00 GMT"), now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after(&h("Wed, 21 Oct 2015 07:00:00 GMT"), now),
            Some(Duration::ZERO),
            "a date in the past is no wait"
        );
        assert_eq!(retry_after(&h("soon"), now), None);
        assert_eq!(retry_after(&h("-5"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn short_waits_happen_here_long_ones_go_back_to_the_queue_growing() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.next(1, Some(Duration::from_secs(2)), 1, 0.5),
            Next::Wait(Duration::from_secs(2)),
            "a short Retry-After is honoured in process"
        );
        assert_eq!(
            p.next(1, Some(Duration::from_secs(600)), 1, 0.0),
            Next::Requeue(Duration::from_secs(600)),
            "a long Retry-After is the visibility timeout's floor"
        );
        assert!(
            matches!(p.next(1, None, 1, 0.5), Next::Wait(w) if w <= Duration::from_millis(200))
        );
        // Tries used up: requeue, longer with each receive, capped.
        let Next::Requeue(first) = p.next(3, None, 1, 0.999) else {
            panic!("requeue")
        };
        let Next::Requeue(third) = p.next(3, None, 3, 0.999) else {
            panic!("requeue")
        };
        assert!(first <= Duration::from_secs(30) && first >= Duration::from_secs(15));
        assert!(third > first && third <= Duration::from_secs(120));
        let Next::Requeue(late) = p.next(3, None, 40, 0.999) else {
            panic!("requeue")
        };
        assert!(late <= Duration::from_secs(3600));
        assert_eq!(
            p.next(3, Some(Duration::from_secs(100_000)), 1, 0.0),
            Next::Requeue(SQS_MAX_VISIBILITY)
        );
    }

    #[test]
    fn the_standard_webhooks_schedule_requeues_by_receive_count() {
        let p = RetryPolicy::scheduled(STANDARD_WEBHOOKS);
        let expected = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];
        for (receive, secs) in (1..).zip(expected) {
            assert_eq!(
                p.next(1, None, receive, 0.999),
                Next::Requeue(Duration::from_secs(secs)),
                "after receive {receive}: no in-process retry, no jitter"
            );
        }
        assert_eq!(
            p.next(1, None, 9, 0.0),
            Next::Requeue(Duration::from_secs(36_000)),
            "past its end: the last delay"
        );
        assert_eq!(
            p.next(1, Some(Duration::from_secs(60)), 1, 0.0),
            Next::Requeue(Duration::from_secs(60)),
            "a longer Retry-After is still the floor"
        );
        assert_eq!(STANDARD_WEBHOOKS.attempts(), 8);
        assert_eq!(STANDARD_WEBHOOKS.after(0), None);
        assert_eq!(STANDARD_WEBHOOKS.after(1), Some(Duration::from_secs(5)));
        assert_eq!(
            STANDARD_WEBHOOKS.after(7),
            Some(Duration::from_secs(36_000))
        );
        assert_eq!(
            STANDARD_WEBHOOKS.after(8),
            None,
            "8 attempts, then exhausted"
        );
    }
}
