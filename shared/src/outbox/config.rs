//! outbox-relay and outbox-publisher configuration, read once at cold start. Both build the same
//! [`OutboxRelay`]: the publisher only publishes what its stream batch carries, the relay also sweeps
//! (`RELAY_*` apply to the relay alone).
//!
//! | variable                | meaning                                                | default |
//! |-------------------------|--------------------------------------------------------|---------|
//! | `POS_BACKEND`           | `aws` or `embedded`                                    | `aws`   |
//! | `TABLE_NAME`            | the capture table (aws)                                | required |
//! | `EVENT_BUS_NAME`        | the bus (aws)                                          | required |
//! | `POS_DATA_DIR`          | embedded store directory (embedded)                    | `.local-data` |
//! | `RELAY_MIN_AGE_SECONDS` | only entries pending longer than this are relayed      | 60      |
//! | `RELAY_BATCH_LIMIT`     | entries per run, shared fairly across the shards of `outbox-pending` | 500 |

use super::OutboxRelay;
use crate::bus::eventbridge::EventBridgePublisher;
use crate::bus::memory::RecordingBus;
use crate::config::{ConfigError, required, var};
use crate::metrics::{Metrics, Sink};
use crate::ports::SystemClock;
use crate::store::dynamodb::DynamoStore;
use crate::store::embedded::EmbeddedStore;
use std::sync::Arc;

fn positive(name: &'static str, default: i64) -> Result<i64, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError::Invalid(
                name,
                "must be a positive integer".into(),
            )),
        },
    }
}

/// Builds the relay (the scheduled sweep) from the environment.
pub async fn outbox_relay_from_env() -> Result<OutboxRelay, ConfigError> {
    let min_age = chrono::Duration::seconds(positive("RELAY_MIN_AGE_SECONDS", 60)?);
    let limit = usize::try_from(positive("RELAY_BATCH_LIMIT", 500)?).unwrap_or(500);
    from_env("outbox-relay", min_age, limit).await
}

/// Builds outbox-publisher (the stream path) from the environment: `POS_BACKEND`, `TABLE_NAME`,
/// `EVENT_BUS_NAME` (aws) or `POS_DATA_DIR` (embedded).
pub async fn outbox_publisher_from_env() -> Result<OutboxRelay, ConfigError> {
    // It never sweeps: the age and limit are unused.
    from_env("outbox-publisher", chrono::Duration::seconds(60), 0).await
}

async fn from_env(
    function: &'static str,
    min_age: chrono::Duration,
    limit: usize,
) -> Result<OutboxRelay, ConfigError> {
    let metrics = Arc::new(Metrics::new(function, Sink::Stdout));
    match var("POS_BACKEND").as_deref().unwrap_or("aws") {
        "aws" => {
            let table = required("TABLE_NAME")?;
            let bus = required("EVENT_BUS_NAME")?;
            let sdk = crate::aws_sdk::aws_sdk_config().await;
            let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table));
            Ok(OutboxRelay::new(
                store.clone(),
                store,
                Arc::new(EventBridgePublisher::new(
                    aws_sdk_eventbridge::Client::new(&sdk),
                    bus,
                )),
                Arc::new(SystemClock),
                min_age,
                limit,
                metrics,
            ))
        }
        "embedded" => {
            let dir = var("POS_DATA_DIR").unwrap_or_else(|| ".local-data".into());
            let store = Arc::new(
                // Shared with sale-capture's process under `cargo lambda watch`.
                EmbeddedStore::open_shared(std::path::Path::new(&dir))
                    .map_err(|e| ConfigError::Init("embedded store", e.to_string()))?,
            );
            Ok(OutboxRelay::new(
                store.clone(),
                store,
                Arc::new(RecordingBus::new()),
                Arc::new(SystemClock),
                min_age,
                limit,
                metrics,
            ))
        }
        other => Err(ConfigError::Invalid(
            "POS_BACKEND",
            format!("{other:?} is not aws or embedded"),
        )),
    }
}
