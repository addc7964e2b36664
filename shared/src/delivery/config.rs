//! commercetools-sync configuration, read once at cold start. The function runs two destinations over
//! one API client: `commercetools` (orders and returns) and `commercetools-inventory` (stock movements),
//! each with its own ledger entries and breaker.
//!
//! | variable                | meaning                                                        | default |
//! |-------------------------|----------------------------------------------------------------|---------|
//! | `DELIVERIES_TABLE`      | DynamoDB table of the delivery ledger and the breakers          | required |
//! | `TABLE_NAME`            | capture table, read for claim-checked lines                    | required |
//! | `QUEUE_URL`             | the function's queue (visibility changes)                      | required |
//! | `DLQ_URL`               | its dead-letter queue (refused and given-up records)           | required |
//! | `MAX_RECEIVES`          | the queue's `maxReceiveCount` (the last receive gives up)      | required |
//! | `CTP_PROJECT_KEY`       | commercetools project                                           | required |
//! | `CTP_CLIENT_ID`         | API client id                                                   | required |
//! | `CTP_CLIENT_SECRET_ARN` | Secrets Manager secret holding the API client's secret (aws)   | required |
//! | `CTP_AUTH_URL`          | e.g. `https://auth.europe-west1.gcp.commercetools.com`          | required |
//! | `CTP_API_URL`           | e.g. `https://api.europe-west1.gcp.commercetools.com`           | required |
//! | `CTP_SCOPES`            | space-separated scopes: those commercetools lists for Orders, Inventory, Channels and Types (the marker type, created once) | the client's |
//! | `CTP_RATE_LIMIT`        | calls per second from one instance                             | 20      |
//! | `POS_BACKEND`           | `aws` or `embedded` (`cargo lambda watch`)                      | `aws`   |
//! | `POS_DATA_DIR`          | embedded: the store directory (`deliveries.redb`, `pos.redb`)   | `.local-data` |
//! | `CTP_CLIENT_SECRET`     | embedded only: the client secret itself                         | required (embedded) |
//!
//! The secret is read once per cold start and never logged; on AWS it never sits in the function's
//! environment (`CTP_CLIENT_SECRET` is read only by the embedded backend). The secret's string is the client secret, or a JSON object with `client_secret`
//! (the shape commercetools' "API client" download has when stored whole).

use super::breaker::{BreakerConfig, CircuitBreaker};
use super::client::DestinationClient;
use super::commercetools::{CommercetoolsConfig, CommercetoolsOrders};
use super::engine::Deliverer;
use super::inventory::CommercetoolsInventory;
use super::oauth::{ClientAuth, ClientCredentials, TokenProvider};
use super::retry::RetryPolicy;
use super::sync::DeliverySync;
use crate::config::{ConfigError, required, var};
use crate::metrics::{Metrics, Sink};
use crate::ports::{Clock, SystemClock};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;

/// The function's name in its metrics.
pub const FUNCTION: &str = "commercetools-sync";

/// Per-request timeout: a Lambda of 60 s must have time for its retries and its ledger writes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The commercetools connection settings from `var`, the secret aside.
pub fn commercetools_settings(
    var: impl Fn(&'static str) -> Option<String>,
) -> Result<(CommercetoolsConfig, String, Option<String>), ConfigError> {
    let required = |name: &'static str| var(name).ok_or(ConfigError::Missing(name));
    let url = |name: &'static str, value: String| -> Result<String, ConfigError> {
        let parsed = reqwest::Url::parse(&value)
            .map_err(|_| ConfigError::Invalid(name, "not a URL".into()))?;
        let loopback = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        if parsed.scheme() != "https" && !loopback {
            return Err(ConfigError::Invalid(
                name,
                "must be https (plain http only on loopback)".into(),
            ));
        }
        Ok(value.trim_end_matches('/').to_owned())
    };
    let project_key = required("CTP_PROJECT_KEY")?;
    // commercetools project keys: 2-36 of [a-z0-9_-]; anything else would change the URL's path.
    if !(2..=36).contains(&project_key.len())
        || !project_key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(ConfigError::Invalid(
            "CTP_PROJECT_KEY",
            "2 to 36 of a-z, 0-9, - and _".into(),
        ));
    }
    let config = CommercetoolsConfig {
        project_key,
        api_url: url("CTP_API_URL", required("CTP_API_URL")?)?,
        auth_url: url("CTP_AUTH_URL", required("CTP_AUTH_URL")?)?,
    };
    Ok((config, required("CTP_CLIENT_ID")?, var("CTP_SCOPES")))
}

/// The `commercetools` section of a connectors file (local runs: `pos-local --connectors FILE`), named
/// as commercetools names them: `{"commercetools": {"project_key", "client_id", "client_secret",
/// "auth_url", "api_url", "scopes"?, "rate_limit"?}}`. `None` when the file has no such section; the
/// same checks as the environment's, and errors never echo the secret.
pub fn commercetools_from_connectors(
    text: &str,
) -> Result<Option<CommercetoolsClient>, ConfigError> {
    let doc: serde_json::Value = serde_json::from_str(text)
        .map_err(|_| ConfigError::Invalid("connectors file", "not JSON".into()))?;
    let Some(section) = doc.get("commercetools") else {
        return Ok(None);
    };
    let field = |name: &str| {
        section
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    // The connectors keys are the environment's names without the `CTP_` prefix, lowercased.
    let (config, client_id, scopes) =
        commercetools_settings(|var| field(&var.trim_start_matches("CTP_").to_ascii_lowercase()))?;
    let client_secret = field("client_secret")
        .filter(|s| !s.is_empty())
        .map(SecretString::from)
        .ok_or(ConfigError::Missing("commercetools.client_secret"))?;
    let rate = match section.get("rate_limit") {
        None => 20,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                ConfigError::Invalid("commercetools.rate_limit", "a positive integer".into())
            })?,
    };
    Ok(Some(CommercetoolsClient {
        config,
        client_id,
        client_secret,
        scopes,
        rate,
        policy: RetryPolicy::default(),
    }))
}

/// The client secret from a Secrets Manager secret string: the secret itself, or `{"client_secret": …}`.
pub fn client_secret_from(text: &str) -> Result<SecretString, ConfigError> {
    let text = text.trim();
    if text.starts_with('{') {
        #[derive(serde::Deserialize)]
        struct Doc {
            client_secret: String,
        }
        let doc: Doc = serde_json::from_str(text).map_err(|_| {
            ConfigError::Invalid(
                "CTP_CLIENT_SECRET_ARN",
                "a JSON secret must be an object with a string client_secret".into(),
            )
        })?;
        return Ok(SecretString::from(doc.client_secret));
    }
    if text.is_empty() {
        return Err(ConfigError::Invalid(
            "CTP_CLIENT_SECRET_ARN",
            "the secret is empty (set it out of band)".into(),
        ));
    }
    Ok(SecretString::from(text.to_owned()))
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

/// The commercetools destinations (orders, inventory) over one client and one token cache; the
/// inventory keeps its per-line markers in `ledger`.
pub fn commercetools_destinations(
    config: CommercetoolsConfig,
    client_id: String,
    client_secret: SecretString,
    scopes: Option<String>,
    http: reqwest::Client,
    ledger: Arc<dyn super::ledger::DeliveryLedger>,
    clock: Arc<dyn Clock>,
) -> (CommercetoolsOrders, CommercetoolsInventory) {
    let tokens = Arc::new(TokenProvider::new(
        ClientCredentials {
            token_url: format!("{}/oauth/token", config.auth_url),
            client_id,
            client_secret,
            scope: scopes,
            auth: ClientAuth::Basic,
        },
        http.clone(),
        clock.clone(),
        chrono::Duration::seconds(60),
    ));
    let client = DestinationClient::new(http, tokens, clock.clone(), REQUEST_TIMEOUT);
    (
        CommercetoolsOrders::new(client.clone(), config.clone()),
        CommercetoolsInventory::new(client, config, ledger, clock),
    )
}

/// One HTTP client for every destination call of the process (rustls, compiled-in roots).
pub fn http_client() -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| ConfigError::Init("http client", e.to_string()))
}

/// What every delivery function opens with the embedded backend (`cargo lambda watch`): in `dir`, the
/// ledger, breakers and endpoint health in `deliveries.redb` and claim-checked lines in `pos.redb`, both
/// opened shared (the other functions of the session, or pos-local, may hold them).
pub(crate) fn embedded_delivery_parts(
    dir: &std::path::Path,
) -> Result<
    (
        Arc<super::embedded::EmbeddedDeliveries>,
        Arc<crate::store::embedded::EmbeddedStore>,
    ),
    ConfigError,
> {
    let init = |e: String| ConfigError::Init("embedded delivery store", e);
    let db = crate::store::embedded::EmbeddedStore::open_shared_file(&dir.join("deliveries.redb"))
        .map_err(|e| init(e.to_string()))?;
    let deliveries = Arc::new(
        super::embedded::EmbeddedDeliveries::new(Arc::new(db)).map_err(|e| init(e.to_string()))?,
    );
    let lines =
        crate::store::embedded::EmbeddedStore::open_shared(dir).map_err(|e| init(e.to_string()))?;
    Ok((deliveries, Arc::new(lines)))
}

/// Builds commercetools-sync from the environment (the AWS backend).
pub async fn commercetools_sync_from_env() -> Result<DeliverySync, ConfigError> {
    match var("POS_BACKEND").as_deref().unwrap_or("aws") {
        "aws" => aws_commercetools_sync().await,
        "embedded" => embedded_commercetools_sync(),
        other => Err(ConfigError::Invalid(
            "POS_BACKEND",
            format!("{other:?} is not aws or embedded"),
        )),
    }
}

/// The function on the embedded stores of `POS_DATA_DIR` (a `cargo lambda watch` session): the ledger in
/// `deliveries.redb` and claim-checked lines in `pos.redb`, both opened shared; the secret from
/// `CTP_CLIENT_SECRET` (local only); no queue to requeue to, so requeues are logged and dead letters are
/// appended to `commercetools-sync-dlq.jsonl` in the data directory.
fn embedded_commercetools_sync() -> Result<DeliverySync, ConfigError> {
    let (config, client_id, scopes) = commercetools_settings(var)?;
    let client_secret = SecretString::from(required("CTP_CLIENT_SECRET")?);
    let dir = std::path::PathBuf::from(var("POS_DATA_DIR").unwrap_or_else(|| ".local-data".into()));
    let (deliveries, lines) = embedded_delivery_parts(&dir)?;
    Ok(commercetools_sync(
        CommercetoolsClient {
            config,
            client_id,
            client_secret,
            scopes,
            rate: positive("CTP_RATE_LIMIT", 20)?,
            policy: RetryPolicy::default(),
        },
        deliveries,
        Arc::new(FileDeadLetters {
            path: dir.join("commercetools-sync-dlq.jsonl"),
        }),
        lines,
        positive("MAX_RECEIVES", 30)?,
        http_client()?,
        Arc::new(SystemClock),
        Arc::new(Metrics::new(FUNCTION, Sink::Stdout)),
    ))
}

/// The queue side of a replayed invocation: there is no queue, so a requeue is logged (the record is
/// reported failed, as Lambda would see it) and a dead letter is appended to a JSON-lines file.
pub(crate) struct FileDeadLetters {
    pub(crate) path: std::path::PathBuf,
}

#[async_trait::async_trait]
impl super::sync::QueueControl for FileDeadLetters {
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        after: Duration,
    ) -> Result<(), super::sync::QueueError> {
        tracing::info!(
            receipt_handle,
            after_s = after.as_secs(),
            "requeue (no queue when replayed)"
        );
        Ok(())
    }

    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), super::sync::QueueError> {
        use std::io::Write;
        let line = serde_json::json!({"reason": reason, "body": body}).to_string() + "\n";
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| super::sync::QueueError(format!("{}: {e}", self.path.display())))
    }
}

async fn aws_commercetools_sync() -> Result<DeliverySync, ConfigError> {
    let (config, client_id, scopes) = commercetools_settings(var)?;
    let rate = positive("CTP_RATE_LIMIT", 20)?;
    let parts = super::aws_env::aws_delivery_parts().await?;
    let secret = super::aws_env::secret_string(
        &parts.sdk,
        required("CTP_CLIENT_SECRET_ARN")?,
        "commercetools client secret",
    )
    .await?;
    Ok(commercetools_sync(
        CommercetoolsClient {
            config,
            client_id,
            client_secret: client_secret_from(&secret)?,
            scopes,
            rate,
            policy: RetryPolicy::default(),
        },
        parts.deliveries,
        parts.queue,
        parts.lines,
        parts.max_receives,
        http_client()?,
        Arc::new(SystemClock),
        Arc::new(Metrics::new(FUNCTION, Sink::Stdout)),
    ))
}

/// How commercetools-sync reaches commercetools.
pub struct CommercetoolsClient {
    /// Project and URLs.
    pub config: CommercetoolsConfig,
    /// API client id.
    pub client_id: String,
    /// API client secret.
    pub client_secret: SecretString,
    /// Scopes asked for.
    pub scopes: Option<String>,
    /// Calls per second from this instance, both destinations together.
    pub rate: u32,
    /// Retries.
    pub policy: RetryPolicy,
}

/// commercetools-sync from its parts: the orders and inventory destinations over one client, their
/// ledger and breakers in `store`, records from and back to `queue`.
#[allow(clippy::too_many_arguments)]
pub fn commercetools_sync<S>(
    client: CommercetoolsClient,
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
    let (orders, inventory) = commercetools_destinations(
        client.config,
        client.client_id,
        client.client_secret,
        client.scopes,
        http,
        store.clone(),
        clock.clone(),
    );
    // One budget for both: they call the same API with the same client.
    let limiter = Arc::new(super::engine::rate_limiter(client.rate));
    let deliverer = |destination: Arc<dyn super::engine::Destination>| {
        Deliverer::new(
            destination,
            store.clone(),
            CircuitBreaker::new(store.clone(), clock.clone(), BreakerConfig::default()),
            client.policy,
            clock.clone(),
        )
        .with_limiter(limiter.clone())
        .with_metrics(metrics.clone())
    };
    let deliverers = vec![deliverer(Arc::new(orders)), deliverer(Arc::new(inventory))];
    DeliverySync::new(deliverers, queue, lines, max_receives, metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn vars(pairs: &[(&'static str, &str)]) -> impl Fn(&'static str) -> Option<String> {
        let map: std::collections::HashMap<&'static str, String> =
            pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    const GOOD: [(&str, &str); 4] = [
        ("CTP_PROJECT_KEY", "pos-demo"),
        ("CTP_CLIENT_ID", "client"),
        (
            "CTP_AUTH_URL",
            "https://auth.europe-west1.gcp.commercetools.com/",
        ),
        (
            "CTP_API_URL",
            "https://api.europe-west1.gcp.commercetools.com",
        ),
    ];

    #[test]
    fn settings_are_read_and_checked() {
        let (config, client, scopes) = commercetools_settings(vars(&GOOD)).expect("good");
        assert_eq!(config.project_key, "pos-demo");
        assert_eq!(
            config.auth_url,
            "https://auth.europe-west1.gcp.commercetools.com"
        );
        assert_eq!((client.as_str(), scopes), ("client", None));
        for (name, bad) in [
            ("CTP_PROJECT_KEY", "Pos Demo"),
            ("CTP_PROJECT_KEY", "x"),
            ("CTP_PROJECT_KEY", "a/../b"),
            ("CTP_API_URL", "http://api.example.com"),
            ("CTP_AUTH_URL", "not a url"),
        ] {
            let mut pairs = GOOD.to_vec();
            pairs.retain(|(k, _)| *k != name);
            pairs.push((name, bad));
            let err = commercetools_settings(vars(&pairs)).expect_err(bad);
            assert!(
                matches!(err, ConfigError::Invalid(n, _) if n == name),
                "{name}={bad}: {err}"
            );
        }
        let mut local = GOOD.to_vec();
        local.retain(|(k, _)| *k != "CTP_API_URL");
        local.push(("CTP_API_URL", "http://localhost:8989"));
        assert!(
            commercetools_settings(vars(&local)).is_ok(),
            "loopback http"
        );
        let mut missing = GOOD.to_vec();
        missing.retain(|(k, _)| *k != "CTP_CLIENT_ID");
        assert!(matches!(
            commercetools_settings(vars(&missing)),
            Err(ConfigError::Missing("CTP_CLIENT_ID"))
        ));
    }

    #[test]
    fn the_connectors_file_names_the_keys_as_commercetools_does() {
        let text = r#"{"commercetools": {"project_key": "pos-demo", "client_id": "c",
            "client_secret": "s3cr3t", "auth_url": "http://localhost:8989",
            "api_url": "http://localhost:8989", "scopes": "manage_orders:pos-demo", "rate_limit": 5},
            "webhooks": {"subscriptions": []}}"#;
        let client = commercetools_from_connectors(text)
            .expect("valid")
            .expect("configured");
        assert_eq!(client.config.project_key, "pos-demo");
        assert_eq!(client.client_secret.expose_secret(), "s3cr3t");
        assert_eq!(
            (client.rate, client.scopes.as_deref()),
            (5, Some("manage_orders:pos-demo"))
        );
        assert!(
            commercetools_from_connectors("{}")
                .expect("valid")
                .is_none()
        );
        for bad in [
            r#"{"commercetools": {"project_key": "pos-demo"}}"#,
            r#"{"commercetools": {"project_key": "pos-demo", "client_id": "c", "auth_url": "http://localhost:1", "api_url": "http://localhost:1"}}"#,
            r#"{"commercetools": {"project_key": "pos-demo", "client_id": "c", "client_secret": "s3cr3t", "auth_url": "http://example.com", "api_url": "http://localhost:1"}}"#,
            "not json",
        ] {
            let err = commercetools_from_connectors(bad).err().expect(bad);
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
        }
    }

    #[tokio::test]
    async fn replayed_dead_letters_are_appended_to_a_file_and_requeues_only_logged() {
        use super::super::sync::QueueControl;
        let dir = tempfile::tempdir().expect("dir");
        let letters = FileDeadLetters {
            path: dir.path().join("dlq.jsonl"),
        };
        letters
            .change_visibility("rh", Duration::from_secs(30))
            .await
            .expect("logged");
        assert!(!letters.path.exists(), "a requeue writes nothing");
        letters
            .dead_letter("{\"a\":1}", "commercetools: HTTP 400")
            .await
            .expect("one");
        letters.dead_letter("b", "gave up").await.expect("two");
        let text = std::fs::read_to_string(&letters.path).expect("file");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["reason"], "commercetools: HTTP 400");
        assert_eq!(lines[0]["body"], "{\"a\":1}");
        let unwritable = FileDeadLetters {
            path: dir.path().join("missing/dir/dlq.jsonl"),
        };
        assert!(
            unwritable.dead_letter("x", "y").await.is_err(),
            "kept, not lost"
        );
    }

    #[test]
    fn the_secret_is_the_string_or_its_client_secret_field() {
        assert_eq!(
            client_secret_from("s3cr3t\n")
                .expect("plain")
                .expose_secret(),
            "s3cr3t"
        );
        assert_eq!(
            client_secret_from(r#"{"client_secret":"abc","client_id":"x"}"#)
                .expect("json")
                .expose_secret(),
            "abc"
        );
        for bad in ["", "  ", "{\"secret\": 1}", "{not json"] {
            let err = client_secret_from(bad).expect_err(bad);
            assert!(!err.to_string().contains("abc"));
        }
    }
}
