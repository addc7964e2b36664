//! EventBridge adapter: `PutEvents` on the configured bus, at most 10 entries and 256 KiB per call (the
//! API's limits, see [`super::batches`]).

use super::{EVENT_SOURCE, PublishError, batches, check_entry};
use crate::model::EventEnvelope;
use crate::ports::EventPublisher;
use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

/// Publishes on one EventBridge bus.
#[derive(Clone)]
pub struct EventBridgePublisher {
    client: Client,
    bus_name: String,
}

impl EventBridgePublisher {
    /// A publisher on `bus_name`.
    pub fn new(client: Client, bus_name: impl Into<String>) -> Self {
        Self {
            client,
            bus_name: bus_name.into(),
        }
    }
}

#[async_trait]
impl EventPublisher for EventBridgePublisher {
    /// Refuses the call if any entry is over the size limit (nothing sent), then sends requests of at
    /// most 10 entries and 256 KiB; entries EventBridge rejects one by one are reported together at the
    /// end, after every request was tried, so they never hold back the others.
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), PublishError> {
        let checked = events
            .iter()
            .map(check_entry)
            .collect::<Result<Vec<_>, _>>()?;
        let sizes: Vec<usize> = checked.iter().map(|(_, size)| *size).collect();
        let (mut rejected, mut first_error) = (Vec::new(), String::new());
        for batch in batches(&sizes) {
            let entries = batch
                .clone()
                .map(|i| {
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus_name)
                        .source(EVENT_SOURCE)
                        .detail_type(events[i].detail_type())
                        .detail(checked[i].0.clone())
                        .build()
                })
                .collect();
            let out = self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|err| {
                    PublishError::Unavailable(format!("PutEvents: {}", DisplayErrorContext(err)))
                })?;
            if out.failed_entry_count() == 0 {
                continue;
            }
            // Results come in the order of the request's entries.
            for (i, r) in batch.zip(out.entries()) {
                if let Some(code) = r.error_code() {
                    if first_error.is_empty() {
                        first_error = format!("{code}: {}", r.error_message().unwrap_or(""));
                    }
                    rejected.push(events[i].event_id.clone());
                }
            }
        }
        if rejected.is_empty() {
            return Ok(());
        }
        Err(PublishError::Rejected {
            failed: rejected.len(),
            total: events.len(),
            detail: first_error,
            rejected,
        })
    }
}
