//! The event bus port's adapters: EventBridge ([`eventbridge`]) and an in-process bus ([`memory`]) used by
//! the local runner and by tests.

pub mod eventbridge;
pub mod memory;

/// The `source` of every event the capture function publishes.
pub const EVENT_SOURCE: &str = "pos.capture";

/// Why events could not be published. Always retryable: the outbox still holds them.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
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
