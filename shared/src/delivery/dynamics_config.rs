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
//! | `POS_BACKEND`            | `aws` or `embedded` (`cargo lambda watch`)                    | `aws`    |
//! | `POS_DATA_DIR`           | embedded: the store directory (`deliveries.redb`, `pos.redb`) | `.local-data` |
//! | `D365_CLIENT_SECRET`     | embedded only: the client secret itself                      | required (embedded) |
//!
//! The secret is read once per cold start and never logged; on AWS it never sits in the function's
//! environment (`D365_CLIENT_SECRET` is read only by the embedded backend). The secret's string is the
//! secret, or a JSON object with `client_secret`.
//!
//! pos-local configures the same function from the `dynamics` section of its connectors file
//! ([`dynamics_from_connectors`]).

use super::breaker::{BreakerConfig, CircuitBreaker};
use super::config::{FileDeadLetters, client_secret_from, http_client};
use super::dynamics::{DynamicsConfig, DynamicsOrders};
use super::engine::Deliverer;
use super::retry::RetryPolicy;
use super::sync::DeliverySync;
use crate::config::{ConfigError, required, var};
use crate::metrics::{Metrics, Sink};
use crate::ports::{Clock, SystemClock};
use secrecy::{ExposeSecret, SecretString};
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
    positive_in(&env, name, default)
}

/// A non-empty environment variable (the embedded backend's getter; tests give their own).
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn positive_in(
    get: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    default: u32,
) -> Result<u32, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ConfigError::Invalid(name, "a positive integer".into())),
    }
}

/// How pos-local reaches Dynamics: the `dynamics` section of its connectors file.
#[derive(Debug)]
pub struct DynamicsConnection {
    /// Environment, tenant, client and mapping.
    pub config: DynamicsConfig,
    /// Calls per second.
    pub rate: u32,
}

/// The `dynamics` section of a connectors file (local runs: `pos-local --connectors FILE`), its keys
/// the `D365_*` variables without the prefix, lowercased: `{"dynamics": {"tenant_id", "client_id",
/// "client_secret", "environment_url", "legal_entity", "customer_account", "warehouses"?, "auth_url"?,
/// "movement_journal"?, "counting_journal"?, "rate_limit"?}}`, every value a string but `rate_limit`.
/// `None` when the file has no such section; the environment's checks, and errors never echo a value.
pub fn dynamics_from_connectors(text: &str) -> Result<Option<DynamicsConnection>, ConfigError> {
    let doc: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ConfigError::Invalid("connectors file", format!("not JSON: {e}")))?;
    let Some(section) = doc.get("dynamics") else {
        return Ok(None);
    };
    let Some(fields) = section.as_object() else {
        return Err(ConfigError::Invalid("dynamics", "an object".into()));
    };
    if let Some((key, _)) = fields
        .iter()
        .find(|(k, v)| k.as_str() != "rate_limit" && !v.is_string())
    {
        // The key only: the value may be the secret.
        return Err(ConfigError::Invalid(
            "dynamics",
            format!("{key} must be a string"),
        ));
    }
    let field = |env: &str| {
        let key = env.trim_start_matches("D365_").to_ascii_lowercase();
        fields.get(&key).and_then(|v| v.as_str()).map(str::to_owned)
    };
    let secret = SecretString::from(field("D365_CLIENT_SECRET").unwrap_or_default());
    let config = dynamics_settings(field, &secret)?;
    let rate = match fields.get("rate_limit") {
        None => 10,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                ConfigError::Invalid("dynamics.rate_limit", "a positive integer".into())
            })?,
    };
    Ok(Some(DynamicsConnection { config, rate }))
}

/// Builds dynamics-sync from the environment: the AWS backend, or the embedded one
/// (`POS_BACKEND=embedded`, a `cargo lambda watch` session).
pub async fn dynamics_sync_from_env() -> Result<DeliverySync, ConfigError> {
    match var("POS_BACKEND").as_deref().unwrap_or("aws") {
        "aws" => aws_dynamics_sync().await,
        "embedded" => embedded_dynamics_sync(&env),
        other => Err(ConfigError::Invalid(
            "POS_BACKEND",
            format!("{other:?} is not aws or embedded"),
        )),
    }
}

/// The function on the embedded stores of `POS_DATA_DIR`: the ledger and breaker in `deliveries.redb`,
/// claim-checked lines in `pos.redb`, both opened shared (pos-local may hold them); the secret from
/// `D365_CLIENT_SECRET` (local only); no queue, so requeues are logged and dead letters appended to
/// `dynamics-sync-dlq.jsonl` in the data directory.
fn embedded_dynamics_sync(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<DeliverySync, ConfigError> {
    let secret = get("D365_CLIENT_SECRET").ok_or(ConfigError::Missing("D365_CLIENT_SECRET"))?;
    let config = dynamics_settings(get, &SecretString::from(secret))?;
    let dir = std::path::PathBuf::from(get("POS_DATA_DIR").unwrap_or_else(|| ".local-data".into()));
    let (deliveries, lines) = super::config::embedded_delivery_parts(&dir)?;
    Ok(dynamics_sync(
        config,
        positive_in(get, "D365_RATE_LIMIT", 10)?,
        RetryPolicy::default(),
        deliveries,
        Arc::new(FileDeadLetters {
            path: dir.join("dynamics-sync-dlq.jsonl"),
        }),
        lines,
        positive_in(get, "MAX_RECEIVES", 30)?,
        http_client()?,
        Arc::new(SystemClock),
        Arc::new(Metrics::new(FUNCTION, Sink::Stdout)),
    ))
}

async fn aws_dynamics_sync() -> Result<DeliverySync, ConfigError> {
    let rate = positive("D365_RATE_LIMIT", 10)?;
    let parts = super::aws_env::aws_delivery_parts().await?;
    let secret = super::aws_env::secret_string(
        &parts.sdk,
        required("D365_CLIENT_SECRET_ARN")?,
        "D365 client secret",
    )
    .await?;
    let config = dynamics_settings(
        |k| std::env::var(k).ok(),
        &client_secret_from(&secret).map_err(|e| match e {
            // The parser is commercetools-sync's; the key to name is ours.
            ConfigError::Invalid(_, reason) => {
                ConfigError::Invalid("D365_CLIENT_SECRET_ARN", reason)
            }
            other => other,
        })?,
    )?;
    Ok(dynamics_sync(
        config,
        rate,
        RetryPolicy::default(),
        parts.deliveries,
        parts.queue,
        parts.lines,
        parts.max_receives,
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

    #[test]
    fn the_connectors_file_names_the_keys_as_the_environment_does_without_the_prefix() {
        let text = r#"{"dynamics": {"tenant_id": "contoso.onmicrosoft.com", "client_id": "app",
            "client_secret": "s3cr3t", "environment_url": "http://127.0.0.1:9/",
            "legal_entity": "usmf", "customer_account": "US-RETAIL",
            "warehouses": "store-001=WH-01", "auth_url": "http://127.0.0.1:9", "rate_limit": 4},
            "commercetools": {}}"#;
        let conn = dynamics_from_connectors(text)
            .expect("valid")
            .expect("configured");
        assert_eq!(conn.config.environment_url, "http://127.0.0.1:9");
        assert_eq!(conn.config.client_secret.expose_secret(), "s3cr3t");
        assert_eq!(
            conn.config.warehouses.get("store-001").map(String::as_str),
            Some("WH-01")
        );
        assert_eq!((conn.config.legal_entity.as_str(), conn.rate), ("usmf", 4));
        assert!(!format!("{conn:?}").contains("s3cr3t"), "Debug redacts");
        let defaulted = dynamics_from_connectors(&text.replace(r#", "rate_limit": 4"#, ""))
            .expect("valid")
            .expect("configured");
        assert_eq!(defaulted.rate, 10);
        assert!(
            dynamics_from_connectors(r#"{"commercetools": {}}"#)
                .expect("valid")
                .is_none()
        );
        for (bad, named) in [
            (
                text.replace(r#""client_secret": "s3cr3t", "#, ""),
                "D365_CLIENT_SECRET",
            ),
            (text.replace("usmf", "toolong"), "D365_LEGAL_ENTITY"),
            (
                text.replace(r#""client_id": "app""#, r#""client_id": 7"#),
                "client_id",
            ),
            (
                text.replace(r#""rate_limit": 4"#, r#""rate_limit": 0"#),
                "rate_limit",
            ),
            (text.replace("s3cr3t\"", "s3cr3t\" oops"), "JSON"),
            (r#"{"dynamics": "s3cr3t"}"#.to_owned(), "dynamics"),
        ] {
            let err = dynamics_from_connectors(&bad).expect_err(named);
            let msg = err.to_string();
            assert!(msg.contains(named), "{named}: {msg}");
            assert!(!msg.contains("s3cr3t"), "{msg}");
        }
    }

    #[tokio::test]
    async fn the_embedded_backend_keeps_its_ledger_in_the_data_dir_and_dead_letters_in_a_file() {
        use super::super::ledger::{DeliveryLedger, DeliveryStatus};
        let dir = tempfile::tempdir().expect("dir");
        // A loopback port nothing listens on: D365 is down.
        let down = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://127.0.0.1:{}", l.local_addr().expect("addr").port())
        };
        let data_dir = dir.path().display().to_string();
        let vars = |k: &str| -> Option<String> {
            Some(match k {
                "D365_TENANT_ID" => "contoso.onmicrosoft.com".to_owned(),
                "D365_CLIENT_ID" => "app".to_owned(),
                "D365_CLIENT_SECRET" => "local-secret".to_owned(),
                "D365_ENVIRONMENT_URL" | "D365_AUTH_URL" => down.clone(),
                "D365_LEGAL_ENTITY" => "usmf".to_owned(),
                "D365_CUSTOMER_ACCOUNT" => "US-RETAIL".to_owned(),
                "POS_DATA_DIR" => data_dir.clone(),
                // The first receive is the last: given up at once.
                "MAX_RECEIVES" => "1".to_owned(),
                _ => return None,
            })
        };
        let missing =
            embedded_dynamics_sync(&|k| (k != "D365_CLIENT_SECRET").then(|| vars(k)).flatten())
                .err()
                .expect("no secret");
        assert!(
            matches!(missing, ConfigError::Missing("D365_CLIENT_SECRET")),
            "{missing}"
        );
        let sync = embedded_dynamics_sync(&vars).expect("embedded");
        let body = crate::samples::standard_sale("emb-1", "store-001", None, 1);
        let envelope = crate::samples::envelope_of(&crate::samples::standard(
            "m",
            &body,
            crate::samples::sample_time(),
            None,
        ))
        .expect("a sale");
        let record = serde_json::to_value(crate::bus::BusMessage::new("1", envelope.clone()))
            .expect("a bus message");
        let mut message = aws_lambda_events::event::sqs::SqsMessage::default();
        message.message_id = Some("m1".into());
        message.receipt_handle = Some("rh".into());
        message.body = Some(record.to_string());
        message
            .attributes
            .insert("ApproximateReceiveCount".into(), "1".into());
        let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
        event.records = vec![message];
        let response = sync.handle_batch(&event).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        let letters = std::fs::read_to_string(dir.path().join("dynamics-sync-dlq.jsonl"))
            .expect("the dead letter file");
        let letter: serde_json::Value =
            serde_json::from_str(letters.lines().next().unwrap_or_default()).expect("json line");
        assert_eq!(letter["reason"], "dynamics: gave up after 1 receives");
        assert!(!letters.contains("local-secret"));
        drop(sync);
        let db = crate::store::embedded::EmbeddedStore::open_shared_file(
            &dir.path().join("deliveries.redb"),
        )
        .expect("deliveries.redb");
        let ledger = super::super::embedded::EmbeddedDeliveries::new(Arc::new(db)).expect("ledger");
        let entry = ledger
            .get(&envelope.event_id, "dynamics")
            .await
            .expect("read")
            .expect("entry");
        assert_eq!(entry.status, DeliveryStatus::Dead);
    }
}
