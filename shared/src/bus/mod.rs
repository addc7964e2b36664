//! The event bus port's adapters: EventBridge ([`eventbridge`]) and an in-process bus ([`memory`]) used by
//! the local runner and by tests.
//!
//! Size limits are EventBridge's and are checked here once, for every adapter ([`entry_size`],
//! [`check_entry`], [`batches`]): an entry of at most [`MAX_ENTRY_BYTES`] as AWS counts it (Detail +
//! DetailType + Source + Resources in UTF-8 bytes, 14 for a Time), at most [`MAX_BATCH_ENTRIES`] entries
//! and [`MAX_ENTRY_BYTES`] in total per `PutEvents`. An entry over the limit is refused before any call,
//! by the local buses too, so local runs and tests catch what EventBridge would refuse.

pub mod eventbridge;
pub mod memory;

use crate::ids::EventId;
use crate::model::EventEnvelope;
use std::ops::Range;

/// The `source` of every event the capture function publishes.
pub const EVENT_SOURCE: &str = "pos.capture";

/// Largest `PutEvents` entry, and largest request (sum of its entries), as EventBridge counts bytes.
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;
/// Most entries in one `PutEvents` request.
pub const MAX_BATCH_ENTRIES: usize = 10;

/// The size EventBridge counts for a `PutEvents` entry ("Calculating Amazon EventBridge PutEvents event
/// entry size"): 14 bytes for a `Time` if set, plus the UTF-8 bytes of `Source`, `DetailType`, `Detail`
/// and each of `Resources`.
pub fn entry_size(
    source: &str,
    detail_type: &str,
    detail: &str,
    resources: &[&str],
    has_time: bool,
) -> usize {
    let time = if has_time { 14 } else { 0 };
    time + source.len()
        + detail_type.len()
        + detail.len()
        + resources.iter().map(|r| r.len()).sum::<usize>()
}

/// An envelope as the `PutEvents` entry we send (no `Time`, no `Resources`): its `Detail` and size.
pub fn entry_of(envelope: &EventEnvelope) -> Result<(String, usize), PublishError> {
    let detail =
        serde_json::to_string(envelope).map_err(|e| PublishError::Unavailable(e.to_string()))?;
    let size = entry_size(EVENT_SOURCE, envelope.detail_type(), &detail, &[], false);
    Ok((detail, size))
}

/// The entry's `Detail` when it is within [`MAX_ENTRY_BYTES`]; [`PublishError::TooLarge`] otherwise.
pub fn check_entry(envelope: &EventEnvelope) -> Result<(String, usize), PublishError> {
    let (detail, size) = entry_of(envelope)?;
    if size > MAX_ENTRY_BYTES {
        return Err(PublishError::TooLarge {
            event_id: envelope.event_id.clone(),
            size,
        });
    }
    Ok((detail, size))
}

/// Splits entries of `sizes` (in order) into `PutEvents` requests of at most [`MAX_BATCH_ENTRIES`]
/// entries and [`MAX_ENTRY_BYTES`] in total. An entry over the limit on its own gets a batch of its own
/// (its publication fails alone).
pub fn batches(sizes: &[usize]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, size) in sizes.iter().enumerate() {
        let full = i - start == MAX_BATCH_ENTRIES || bytes.saturating_add(*size) > MAX_ENTRY_BYTES;
        if i > start && full {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(*size);
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// Why events could not be published. The outbox still holds them; [`PublishError::TooLarge`] is
/// permanent (retrying cannot help), the others are retryable.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The entry exceeds EventBridge's entry size limit; nothing was sent.
    #[error(
        "event {event_id} is {size} bytes as a PutEvents entry, over the {MAX_ENTRY_BYTES}-byte limit"
    )]
    TooLarge {
        /// The event.
        event_id: EventId,
        /// Its entry size as EventBridge counts it.
        size: usize,
    },
    /// The bus could not be reached or refused the call.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    /// The bus accepted the call but rejected some entries.
    #[error("event bus rejected {failed} of {total} entries: {detail}")]
    Rejected {
        /// Entries rejected.
        failed: usize,
        /// Entries sent.
        total: usize,
        /// First error code and message.
        detail: String,
        /// The rejected events (the others of the call were accepted).
        rejected: Vec<EventId>,
    },
}

/// An EventBridge event as a rule target (an SQS queue) receives it: the SQS message body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BusMessage {
    /// EventBridge's id of this delivery.
    #[serde(default)]
    pub id: String,
    /// The detail type (`SaleCompleted`…).
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// The source (`pos.capture`).
    pub source: String,
    /// When EventBridge received it.
    #[serde(default)]
    pub time: Option<String>,
    /// Our envelope.
    pub detail: crate::model::EventEnvelope,
}

impl BusMessage {
    /// Wraps an envelope the way EventBridge delivers it to a target.
    pub fn new(id: impl Into<String>, envelope: crate::model::EventEnvelope) -> Self {
        Self {
            id: id.into(),
            detail_type: envelope.detail_type().to_owned(),
            source: EVENT_SOURCE.to_owned(),
            time: Some(
                envelope
                    .captured_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
            detail: envelope,
        }
    }

    /// Parses an SQS body; the detail type must agree with the payload.
    pub fn parse(body: &str) -> Result<Self, String> {
        let msg: BusMessage = serde_json::from_str(body)
            .map_err(|e| format!("not an EventBridge event of ours: {e}"))?;
        if msg.detail_type != msg.detail.detail_type() {
            return Err(format!(
                "detail-type {} does not match the payload {}",
                msg.detail_type.chars().take(40).collect::<String>(),
                msg.detail.detail_type()
            ));
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_size_counts_what_aws_counts() {
        // UTF-8 bytes, not characters; Time is a flat 14; each resource counts.
        assert_eq!(
            entry_size("pos.capture", "SaleCompleted", "{}", &[], false),
            11 + 13 + 2
        );
        assert_eq!(
            entry_size("s", "t", "{\"a\":\"é\"}", &["arn:1", "arn:22"], true),
            14 + 1 + 1 + 10 + 5 + 6
        );
    }

    #[test]
    fn batches_hold_ten_entries_and_256_kib_at_most() {
        assert_eq!(batches(&[1; 25]), vec![0..10, 10..20, 20..25]);
        assert!(batches(&[]).is_empty());
        let big = 100 * 1024;
        // 100 + 100 KiB fit, a third does not; an entry over the limit is alone.
        assert_eq!(batches(&[big, big, big, 1]), vec![0..2, 2..4]);
        assert_eq!(
            batches(&[1, MAX_ENTRY_BYTES + 1, 1]),
            vec![0..1, 1..2, 2..3]
        );
        assert_eq!(batches(&[MAX_ENTRY_BYTES, 1]), vec![0..1, 1..2]);
        for sizes in [vec![big; 7], vec![30_000; 23], vec![1; 10]] {
            for b in batches(&sizes) {
                assert!(b.len() <= MAX_BATCH_ENTRIES);
                assert!(sizes[b].iter().sum::<usize>() <= MAX_ENTRY_BYTES);
            }
        }
    }
}
