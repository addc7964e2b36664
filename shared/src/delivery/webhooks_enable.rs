//! The operator's re-enable of a disabled webhook endpoint (`pos-local webhooks enable <id> [--aws]`):
//! its health is reset ([`EndpointHealth::enable`]), then every ledger entry of `webhooks:{id}` that is
//! `dead` with [`ENDPOINT_DISABLED`] is replayed: the ledger knows the event only by id, so the event is
//! re-read from the capture store's outbox and put back on webhooks-sync's queue as the bus delivers it
//! (the engine retries `dead` entries, and the ledger keeps other subscriptions from a second call).
//! Events the outbox does not hold (not captured by us, e.g. `StockLow`, or gone) are reported as
//! `not_replayed`: replay those from the bus archive (infra/README.md#webhooks).

use super::ledger::{DeliveryEntry, LedgerError};
use super::sync::QueueError;
use super::webhooks::{ENDPOINT_DISABLED, EndpointHealth, HealthStoreError};
use crate::ids::EventId;
use crate::ports::CaptureStore;
use crate::store::StoreError;
use async_trait::async_trait;
use serde::Serialize;

/// A ledger that can list one destination's dead entries of one reason (a scan: run by hand).
#[async_trait]
pub trait DeadEntries: Send + Sync {
    /// The entries of `destination` that are `dead` with `reason`.
    async fn dead_entries(
        &self,
        destination: &str,
        reason: &str,
    ) -> Result<Vec<DeliveryEntry>, LedgerError>;
}

/// Where a replayed event goes: webhooks-sync's queue.
#[async_trait]
pub trait Requeue: Send + Sync {
    /// Sends `body` (a bus message) to the queue.
    async fn requeue(&self, body: String) -> Result<(), QueueError>;
}

/// webhooks-sync's SQS queue (`QUEUE_URL`).
pub struct SqsRequeue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsRequeue {
    /// The queue at `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl Requeue for SqsRequeue {
    async fn requeue(&self, body: String) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                QueueError(format!(
                    "SendMessage: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                ))
            })
    }
}

/// What a re-enable did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnableReport {
    /// The subscription.
    pub subscription: String,
    /// Always true once returned: the endpoint is enabled.
    pub enabled: bool,
    /// Events put back on the queue.
    pub replayed: Vec<EventId>,
    /// Dead events the outbox does not hold (replay them from the bus archive).
    pub not_replayed: Vec<EventId>,
}

/// Why a re-enable failed (it may be run again: enabling and replaying are idempotent in effect).
#[derive(Debug, thiserror::Error)]
pub enum EnableError {
    /// Not a subscription id (1 to 64 of `a-z`, `0-9`, `-`, `_`).
    #[error("not a subscription id")]
    Id,
    /// The health store failed.
    #[error(transparent)]
    Health(#[from] HealthStoreError),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The capture store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The environment is incomplete.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The event could not be encoded.
    #[error("encode: {0}")]
    Encode(String),
}

/// Whether `id` may be a subscription id.
pub fn is_subscription_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Enables subscription `id` and replays its records dead as "endpoint disabled".
pub async fn enable_and_replay(
    id: &str,
    health: &EndpointHealth,
    ledger: &dyn DeadEntries,
    events: &dyn CaptureStore,
    queue: &dyn Requeue,
) -> Result<EnableReport, EnableError> {
    if !is_subscription_id(id) {
        return Err(EnableError::Id);
    }
    // Enabled first: a replayed record reaching a still-disabled endpoint would be dead again.
    health.enable(id).await?;
    let dead = ledger
        .dead_entries(&format!("webhooks:{id}"), ENDPOINT_DISABLED)
        .await?;
    let (mut replayed, mut not_replayed) = (Vec::new(), Vec::new());
    for entry in dead {
        match events.outbox_entry(&entry.event_id).await? {
            Some(outbox) => {
                let message = crate::bus::BusMessage::new(
                    format!("replay-{}", entry.event_id),
                    outbox.envelope,
                );
                let body = serde_json::to_string(&message)
                    .map_err(|e| EnableError::Encode(e.to_string()))?;
                queue.requeue(body).await?;
                replayed.push(entry.event_id);
            }
            None => not_replayed.push(entry.event_id),
        }
    }
    Ok(EnableReport {
        subscription: id.to_owned(),
        enabled: true,
        replayed,
        not_replayed,
    })
}

/// [`enable_and_replay`] on AWS with webhooks-sync's environment (`DELIVERIES_TABLE`, `TABLE_NAME`,
/// `QUEUE_URL`) and the caller's credentials (`pos-local webhooks enable <id> --aws`).
pub async fn enable_on_aws_from_env(id: &str) -> Result<EnableReport, EnableError> {
    use crate::config::required;
    let table = required("DELIVERIES_TABLE")?;
    let capture = required("TABLE_NAME")?;
    let queue_url = required("QUEUE_URL")?;
    let sdk = crate::aws_sdk::aws_sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let deliveries =
        std::sync::Arc::new(super::dynamodb::DynamoDeliveries::new(ddb.clone(), table));
    let health = EndpointHealth::new(deliveries.clone(), EndpointHealth::DEFAULT_DISABLE_AFTER);
    enable_and_replay(
        id,
        &health,
        deliveries.as_ref(),
        &crate::store::dynamodb::DynamoStore::new(ddb, capture),
        &SqsRequeue::new(aws_sdk_sqs::Client::new(&sdk), queue_url),
    )
    .await
}
