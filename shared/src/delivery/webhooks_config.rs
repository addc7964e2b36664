//! webhooks-sync configuration, read once at cold start. The function runs one destination per webhook
//! subscription (`webhooks:{id}`), each with its own ledger entries, breaker and endpoint health; the
//! subscriptions themselves are re-read every [`SUBSCRIPTIONS_TTL`] ([`super::subscriptions`]).
//!
//! | variable                      | meaning                                                          | default  |
//! |-------------------------------|------------------------------------------------------------------|----------|
//! | `DELIVERIES_TABLE`            | ledger, breakers, endpoint health and the subscriptions           | required |
//! | `TABLE_NAME`                  | capture table, read for claim-checked lines                      | required |
//! | `QUEUE_URL`                   | the function's queue (visibility changes)                        | required |
//! | `DLQ_URL`                     | its dead-letter queue (exhausted schedules, given-up records)     | required |
//! | `MAX_RECEIVES`                | the queue's `maxReceiveCount` (the last receive gives up)        | required |
//! | `WEBHOOKS_SECRET_ID`          | Secrets Manager secret of every subscription's ring, by id       | required |
//! | `WEBHOOKS_DISABLE_AFTER_HOURS`| an endpoint failing without a success this long is disabled       | 120 (5 days, the spec's) |
//! | `WEBHOOKS_RATE_LIMIT`         | calls per second from one instance, all subscriptions together   | 20       |
//! | `POS_BACKEND`                 | `aws` or `embedded` (`cargo lambda watch`)                        | `aws`    |
//! | `POS_DATA_DIR`                | embedded: the store directory (`deliveries.redb`, `pos.redb`)     | `.local-data` |
//! | `POS_CONNECTORS_FILE`         | embedded only: the subscriptions (`webhooks` section, secrets too) | required (embedded) |
//!
//! On AWS the secret is read with the subscriptions (every TTL), never logged, never in the environment;
//! the embedded backend's connectors file holds them for local runs only. With `embedded` the table,
//! queue and secret variables are not read (`MAX_RECEIVES` defaults to the spec schedule's 8 tries).

use super::breaker::{BreakerConfig, BreakerStore};
use super::client::DestinationClient;
use super::dynamodb::DynamoDeliveries;
use super::ledger::DeliveryLedger;
use super::subscriptions::{
    CachedSubscriptions, DynamoSubscriptions, ReloadingFanout, SubscriptionSource,
};
use super::sync::{DeliverySync, QueueControl, SqsQueueControl};
use super::webhooks::{EndpointHealth, FanoutParts, HealthStore};
use crate::config::{ConfigError, required, var};
use crate::metrics::{Metrics, Sink};
use crate::ports::{Clock, LinesSource, SystemClock};
use std::sync::Arc;
use std::time::Duration;

/// The function's name in its metrics (the `function` dimension).
pub const FUNCTION: &str = "webhooks-sync";

/// How long a copy of the subscriptions is used before the table and the secret are read again.
pub const SUBSCRIPTIONS_TTL: chrono::Duration = chrono::Duration::seconds(60);

/// Per-request timeout: the spec's receivers answer fast or are retried later; a Lambda of 60 s must
/// have time for every subscription of a record.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The tunables of webhooks-sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhooksSettings {
    /// The queue's `maxReceiveCount`.
    pub max_receives: u32,
    /// An endpoint failing without a success for longer than this is disabled.
    pub disable_after: chrono::Duration,
    /// Calls per second from one instance.
    pub rate: u32,
}

fn positive(
    var: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: Option<u32>,
) -> Result<u32, ConfigError> {
    match var(name) {
        None => default.ok_or(ConfigError::Missing(name)),
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ConfigError::Invalid(name, "a positive integer".into())),
    }
}

/// The tunables from `var`.
pub fn webhooks_settings(
    var: impl Fn(&'static str) -> Option<String>,
) -> Result<WebhooksSettings, ConfigError> {
    Ok(WebhooksSettings {
        max_receives: positive(&var, "MAX_RECEIVES", None)?,
        disable_after: chrono::Duration::hours(i64::from(positive(
            &var,
            "WEBHOOKS_DISABLE_AFTER_HOURS",
            Some(120),
        )?)),
        rate: positive(&var, "WEBHOOKS_RATE_LIMIT", Some(20))?,
    })
}

/// Builds webhooks-sync from the environment (the AWS backend).
pub async fn webhooks_sync_from_env() -> Result<DeliverySync, ConfigError> {
    match var("POS_BACKEND").as_deref().unwrap_or("aws") {
        "aws" => aws_webhooks_sync().await,
        "embedded" => embedded_webhooks_sync(),
        other => Err(ConfigError::Invalid(
            "POS_BACKEND",
            format!("{other:?} is not aws or embedded"),
        )),
    }
}

/// The function on the embedded stores of `POS_DATA_DIR` (a `cargo lambda watch` session): the
/// subscriptions of the connectors file `POS_CONNECTORS_FILE` (its `webhooks` section, secrets
/// included: local only), the ledger, breakers and endpoint health in `deliveries.redb` and claim-checked
/// lines in `pos.redb`, both opened shared; `MAX_RECEIVES` defaults to the spec schedule's 8 tries; with
/// no queue to requeue to, requeues are logged and dead letters appended to `webhooks-sync-dlq.jsonl`.
fn embedded_webhooks_sync() -> Result<DeliverySync, ConfigError> {
    let settings = webhooks_settings(|name| {
        var(name).or_else(|| (name == "MAX_RECEIVES").then(|| "8".to_owned()))
    })?;
    let file = required("POS_CONNECTORS_FILE")?;
    let text = std::fs::read_to_string(&file).map_err(|e| {
        ConfigError::Invalid("POS_CONNECTORS_FILE", format!("cannot read {file}: {e}"))
    })?;
    let subscriptions = super::webhooks::subscriptions_from_connectors(&text)
        .map_err(|e| ConfigError::Invalid("POS_CONNECTORS_FILE", e.to_string()))?;
    let dir = std::path::PathBuf::from(var("POS_DATA_DIR").unwrap_or_else(|| ".local-data".into()));
    let (deliveries, lines) = super::config::embedded_delivery_parts(&dir)?;
    webhooks_sync(
        Arc::new(super::subscriptions::StaticSubscriptions(Arc::new(
            subscriptions,
        ))),
        deliveries,
        Arc::new(super::config::FileDeadLetters {
            path: dir.join("webhooks-sync-dlq.jsonl"),
        }),
        lines,
        settings,
        Arc::new(SystemClock),
        Arc::new(Metrics::new(FUNCTION, Sink::Stdout)),
    )
}

async fn aws_webhooks_sync() -> Result<DeliverySync, ConfigError> {
    let settings = webhooks_settings(var)?;
    let table = required("DELIVERIES_TABLE")?;
    let capture_table = required("TABLE_NAME")?;
    let queue_url = required("QUEUE_URL")?;
    let dlq_url = required("DLQ_URL")?;
    let secret_id = required("WEBHOOKS_SECRET_ID")?;
    let sdk = crate::aws_sdk::aws_sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let source = Arc::new(CachedSubscriptions::new(
        DynamoSubscriptions::new(
            ddb.clone(),
            table.clone(),
            aws_sdk_secretsmanager::Client::new(&sdk),
            secret_id,
        ),
        clock.clone(),
        SUBSCRIPTIONS_TTL,
    ));
    webhooks_sync(
        source,
        Arc::new(DynamoDeliveries::new(ddb.clone(), table)),
        Arc::new(SqsQueueControl::new(
            aws_sdk_sqs::Client::new(&sdk),
            queue_url,
            dlq_url,
        )),
        Arc::new(crate::store::dynamodb::DynamoStore::new(ddb, capture_table)),
        settings,
        clock,
        Arc::new(Metrics::new(FUNCTION, Sink::Stdout)),
    )
}

/// webhooks-sync from its parts: the subscriptions of `source`, their ledger entries, breakers and
/// endpoint health in `store`, records from and back to `queue`.
pub fn webhooks_sync<S>(
    source: Arc<dyn SubscriptionSource>,
    store: Arc<S>,
    queue: Arc<dyn QueueControl>,
    lines: Arc<dyn LinesSource>,
    settings: WebhooksSettings,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> Result<DeliverySync, ConfigError>
where
    S: DeliveryLedger + BreakerStore + HealthStore + 'static,
{
    let http = super::webhooks::http_client()
        .map_err(|e| ConfigError::Init("webhooks http client", e.to_string()))?;
    let parts = FanoutParts {
        client: DestinationClient::unauthenticated(http, clock.clone(), REQUEST_TIMEOUT),
        ledger: store.clone(),
        breakers: store.clone(),
        breaker_config: BreakerConfig::default(),
        health: EndpointHealth::new(store, settings.disable_after),
        clock,
        metrics: metrics.clone(),
    };
    // One budget for every subscription: they share the instance's outbound connections.
    let limiter = Arc::new(super::engine::rate_limiter(settings.rate));
    Ok(DeliverySync::new(
        ReloadingFanout::new(source, parts, Some(limiter)),
        queue,
        lines,
        settings.max_receives,
        metrics,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&'static str, &str)]) -> impl Fn(&'static str) -> Option<String> {
        let map: std::collections::HashMap<&'static str, String> =
            pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn settings_have_the_specs_defaults_and_refuse_bad_values() {
        let s = webhooks_settings(vars(&[("MAX_RECEIVES", "60")])).expect("defaults");
        assert_eq!(
            s,
            WebhooksSettings {
                max_receives: 60,
                disable_after: chrono::Duration::days(5),
                rate: 20
            }
        );
        let s = webhooks_settings(vars(&[
            ("MAX_RECEIVES", "60"),
            ("WEBHOOKS_DISABLE_AFTER_HOURS", "24"),
            ("WEBHOOKS_RATE_LIMIT", "5"),
        ]))
        .expect("set");
        assert_eq!((s.disable_after, s.rate), (chrono::Duration::hours(24), 5));
        assert!(matches!(
            webhooks_settings(vars(&[])),
            Err(ConfigError::Missing("MAX_RECEIVES"))
        ));
        for (name, bad) in [
            ("MAX_RECEIVES", "0"),
            ("WEBHOOKS_DISABLE_AFTER_HOURS", "-1"),
            ("WEBHOOKS_DISABLE_AFTER_HOURS", "5d"),
            ("WEBHOOKS_RATE_LIMIT", "0"),
        ] {
            let mut pairs = vec![("MAX_RECEIVES", "60")];
            pairs.retain(|(k, _)| *k != name);
            pairs.push((name, bad));
            assert!(
                matches!(webhooks_settings(vars(&pairs)), Err(ConfigError::Invalid(n, _)) if n == name),
                "{name}={bad}"
            );
        }
    }
}
