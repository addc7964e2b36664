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
