//! EventBridge adapter: `PutEvents` on the configured bus, 10 entries per call (the API's limit).

use super::{EVENT_SOURCE, PublishError};
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
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), PublishError> {
        for chunk in events.chunks(10) {
            let mut entries = Vec::with_capacity(chunk.len());
            for e in chunk {
                let detail = serde_json::to_string(e)
                    .map_err(|err| PublishError::Unavailable(err.to_string()))?;
                entries.push(
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus_name)
                        .source(EVENT_SOURCE)
                        .detail_type(e.detail_type())
                        .detail(detail)
                        .build(),
                );
            }
            let out = self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|err| {
                    PublishError::Unavailable(format!("PutEvents: {}", DisplayErrorContext(err)))
                })?;
            let failed = usize::try_from(out.failed_entry_count()).unwrap_or(usize::MAX);
            if failed > 0 {
                let detail = out
                    .entries()
                    .iter()
                    .find_map(|r| {
                        r.error_code()
                            .map(|c| format!("{c}: {}", r.error_message().unwrap_or("")))
                    })
                    .unwrap_or_default();
                return Err(PublishError::Rejected {
                    failed,
                    total: chunk.len(),
                    detail,
                });
            }
        }
        Ok(())
    }
}
