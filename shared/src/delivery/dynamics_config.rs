//! dynamics-sync configuration, read once at cold start. The function runs one destination,
//! `dynamics` (sales and return orders, stock journals), over one Entra ID client.
//!
//! | variable                 | meaning                                                      | default  |
//! |--------------------------|--------------------------------------------------------------|----------|
//! | `DELIVERIES_TABLE`       | DynamoDB table of the delivery ledger and the breaker         | required |
//! | `TABLE_NAME`             | capture table, read for claim-checked lines                  | required |
//! | `QUEUE_URL`              | the function's queue (visibility changes)                    | required |
//! | `DLQ_URL`                | its dead-letter queue (refused and given-up records)         | required |
//! | `MAX_RECEIVES`           | the queue's `maxReceiveCount` (the last receive gives up)    | required |
//! | `D365_TENANT_ID`, `D365_CLIENT_ID`, `D365_ENVIRONMENT_URL`, `D365_LEGAL_ENTITY`, `D365_CUSTOMER_ACCOUNT` | see [`DynamicsConfig`] | required |
//! | `D365_WAREHOUSES`, `D365_AUTH_URL`, `D365_MOVEMENT_JOURNAL`, `D365_COUNTING_JOURNAL` | see [`DynamicsConfig`] | optional |
//! | `D365_CLIENT_SECRET_ARN` | Secrets Manager secret holding the client secret (aws)        | required |
//! | `D365_RATE_LIMIT`        | calls per second from one instance                           | 10       |
//!
//! The secret is read once per cold start and never logged; on AWS it never sits in the function's
//! environment (`D365_CLIENT_SECRET` is filled from the secret before the keys are checked). Its string
//! is the secret, or a JSON object with `client_secret`.

use super::breaker::{BreakerConfig, CircuitBreaker};
use super::config::{client_secret_from, http_client};
use super::dynamics::{DynamicsConfig, DynamicsOrders};
use super::dynamodb::DynamoDeliveries;
use super::engine::Deliverer;
use super::retry::RetryPolicy;
use super::sync::{DeliverySync, SqsQueueControl};
use crate::config::{ConfigError, required, var};
use crate::metrics::{Metrics, Sink};
use crate::ports::{Clock, SystemClock};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;

/// The function's name in its metrics.
pub const FUNCTION: &str = "dynamics-sync";

/// Per-request timeout: a Lambda of 60 s must have time for its retries and its ledger writes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The `D365_*` keys from `var`, with the client secret given apart (from Secrets Manager on AWS).
pub fn dynamics_settings(
    var: impl Fn(&str) -> Option<String>,
    client_secret: &secrecy::SecretString,
) -> Result<DynamicsConfig, ConfigError> {
    DynamicsConfig::from_env_map(|k| {
        if k == "D365_CLIENT_SECRET" {
            Some(client_secret.expose_secret().to_owned())
        } else {
            var(k)
        }
    })
    .map_err(|e| match e {
        super::dynamics::DynamicsConfigError::Missing(key) => ConfigError::Missing(key),
        super::dynamics::DynamicsConfigError::Invalid { key, reason } => {
            ConfigError::Invalid(key, reason.into())
        }
    })
}

fn positive(name: &'static str, default: u32) -> Result<u32, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ConfigError::Invalid(name, "a positive integer".into())),
    }
}

/// Builds dynamics-sync from the environment (the AWS backend).
pub async fn dynamics_sync_from_env() -> Result<DeliverySync, ConfigError> {
    let table = required("DELIVERIES_TABLE")?;
    let capture_table = required("TABLE_NAME")?;
    let queue_url = required("QUEUE_URL")?;
    let dlq_url = required("DLQ_URL")?;
    let max_receives = var("MAX_RECEIVES")
        .ok_or(ConfigError::Missing("MAX_RECEIVES"))
        .and_then(|_| positive("MAX_RECEIVES", 1))?;
    let rate = positive("D365_RATE_LIMIT", 10)?;
    let sdk = aws_config::load_from_env().await;
    let secret_text = aws_sdk_secretsmanager::Client::new(&sdk)
        .get_secret_value()
        .secret_id(required("D365_CLIENT_SECRET_ARN")?)
        .send()
        .await
        .map_err(|e| {
            ConfigError::Init(
                "D365 client secret",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
            )
        })?
        .secret_string
        .unwrap_or_default();
    let config = dynamics_settings(
        |k| std::env::var(k).ok(),
        &client_secret_from(&secret_text).map_err(|e| match e {
            // The parser is commercetools-sync's; the key to name is ours.
            ConfigError::Invalid(_, reason) => {
                ConfigError::Invalid("D365_CLIENT_SECRET_ARN", reason)
            }
            other => other,
        })?,
    )?;
    let deliveries = Arc::new(DynamoDeliveries::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        table,
    ));
    let lines = Arc::new(crate::store::dynamodb::DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        capture_table,
    ));
    Ok(dynamics_sync(
        config,
        rate,
        RetryPolicy::default(),
        deliveries,
        Arc::new(SqsQueueControl::new(
            aws_sdk_sqs::Client::new(&sdk),
            queue_url,
            dlq_url,
        )),
        lines,
        max_receives,
        http_client()?,
        Arc::new(SystemClock),
        Arc::new(Metrics::new(FUNCTION, Sink::Stdout)),
    ))
}

/// dynamics-sync from its parts: the `dynamics` destination, its ledger and breaker in `store`, records
/// from and back to `queue`, at most `rate` calls per second.
#[allow(clippy::too_many_arguments)]
pub fn dynamics_sync<S>(
    config: DynamicsConfig,
    rate: u32,
    policy: RetryPolicy,
    store: Arc<S>,
    queue: Arc<dyn super::sync::QueueControl>,
    lines: Arc<dyn crate::ports::LinesSource>,
    max_receives: u32,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> DeliverySync
where
    S: super::ledger::DeliveryLedger + super::breaker::BreakerStore + 'static,
{
    let destination = DynamicsOrders::connect(config, http, clock.clone(), REQUEST_TIMEOUT);
    let deliverer = Deliverer::new(
        Arc::new(destination),
        store.clone(),
        CircuitBreaker::new(store, clock.clone(), BreakerConfig::default()),
        policy,
        clock,
    )
    .with_limiter(Arc::new(super::engine::rate_limiter(rate)))
    .with_metrics(metrics.clone());
    DeliverySync::new(vec![deliverer], queue, lines, max_receives, metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_comes_apart_and_errors_name_the_key() {
        let vars = |k: &str| match k {
            "D365_TENANT_ID" => Some("contoso.onmicrosoft.com".to_owned()),
            "D365_CLIENT_ID" => Some("app".to_owned()),
            "D365_ENVIRONMENT_URL" => Some("https://contoso.operations.dynamics.com".to_owned()),
            "D365_LEGAL_ENTITY" => Some("usmf".to_owned()),
            "D365_CUSTOMER_ACCOUNT" => Some("US-RETAIL".to_owned()),
            // Never read from the environment on AWS.
            "D365_CLIENT_SECRET" => Some("from-the-environment".to_owned()),
            _ => None,
        };
        let secret = secrecy::SecretString::from("from-secrets-manager");
        let config = dynamics_settings(vars, &secret).expect("config");
        assert_eq!(config.client_secret.expose_secret(), "from-secrets-manager");
        let err = dynamics_settings(
            |k| (k != "D365_LEGAL_ENTITY").then(|| vars(k)).flatten(),
            &secret,
        )
        .expect_err("missing");
        assert!(
            matches!(err, ConfigError::Missing("D365_LEGAL_ENTITY")),
            "{err}"
        );
    }
}
