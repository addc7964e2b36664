//! The environment every delivery function reads on AWS beside its destination's own settings, and the
//! adapters built from it (one place, so each function's infra agreement test scans it with the
//! function's own config).

use super::dynamodb::DynamoDeliveries;
use super::sync::SqsQueueControl;
use crate::config::{ConfigError, required, var};
use std::sync::Arc;

fn positive(name: &'static str) -> Result<u32, ConfigError> {
    var(name)
        .ok_or(ConfigError::Missing(name))?
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ConfigError::Invalid(name, "a positive integer".into()))
}

/// What every delivery function reads and builds on AWS beside its destination's own settings: the
/// ledger and breakers (`DELIVERIES_TABLE`), claim-checked lines (`TABLE_NAME`), its queue and DLQ
/// (`QUEUE_URL`, `DLQ_URL`) and the queue's receive limit (`MAX_RECEIVES`, required: it must equal the
/// queue's `maxReceiveCount`).
pub(crate) struct AwsDeliveryParts {
    pub(crate) sdk: aws_config::SdkConfig,
    pub(crate) deliveries: Arc<DynamoDeliveries>,
    pub(crate) lines: Arc<crate::store::dynamodb::DynamoStore>,
    pub(crate) queue: Arc<SqsQueueControl>,
    pub(crate) max_receives: u32,
}

pub(crate) async fn aws_delivery_parts() -> Result<AwsDeliveryParts, ConfigError> {
    let table = required("DELIVERIES_TABLE")?;
    let capture_table = required("TABLE_NAME")?;
    let queue_url = required("QUEUE_URL")?;
    let dlq_url = required("DLQ_URL")?;
    let max_receives = positive("MAX_RECEIVES")?;
    let sdk = crate::aws_sdk::aws_sdk_config().await;
    Ok(AwsDeliveryParts {
        deliveries: Arc::new(DynamoDeliveries::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            table,
        )),
        lines: Arc::new(crate::store::dynamodb::DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            capture_table,
        )),
        queue: Arc::new(SqsQueueControl::new(
            aws_sdk_sqs::Client::new(&sdk),
            queue_url,
            dlq_url,
        )),
        max_receives,
        sdk,
    })
}

/// The string value of the Secrets Manager secret `secret_id` (`what` names it in errors).
pub(crate) async fn secret_string(
    sdk: &aws_config::SdkConfig,
    secret_id: String,
    what: &'static str,
) -> Result<String, ConfigError> {
    Ok(aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| {
            ConfigError::Init(
                what,
                aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
            )
        })?
        .secret_string
        .unwrap_or_default())
}
