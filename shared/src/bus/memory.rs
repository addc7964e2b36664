//! An in-process event bus: keeps every published event in order (what `GET /_local/events` shows) and
//! can be told to fail, to test what happens when the bus is down. It refuses entries over EventBridge's
//! size limit like EventBridge does.

use super::PublishError;
use crate::model::EventEnvelope;
use crate::ports::EventPublisher;
use async_trait::async_trait;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// A bus that records what it is given.
#[derive(Debug, Default)]
pub struct RecordingBus {
    events: Mutex<Vec<EventEnvelope>>,
    fail_next: AtomicU32,
}

impl RecordingBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event published so far, in order.
    pub fn events(&self) -> Vec<EventEnvelope> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes the next `n` publish calls fail as if the bus were unavailable.
    pub fn fail_next(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
    }
}

#[async_trait]
impl EventPublisher for RecordingBus {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), PublishError> {
        let failing = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(PublishError::Unavailable("injected failure".into()));
        }
        // What EventBridge refuses, this bus refuses too (nothing recorded).
        for e in events {
            super::check_entry(e)?;
        }
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(events);
        Ok(())
    }
}
