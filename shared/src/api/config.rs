//! query-api configuration, read once at cold start (fail fast on anything missing or invalid).
//!
//! | variable                 | meaning                                                         | default |
//! |--------------------------|-----------------------------------------------------------------|---------|
//! | `POS_BACKEND`            | `aws` or `embedded`                                             | `aws`   |
//! | `TABLE_NAME`             | capture table: the sales read model (aws)                       | required |
//! | `STOCK_TABLE_NAME`       | stock table (aws)                                               | required |
//! | `LOYALTY_TABLE_NAME`     | loyalty table (aws)                                             | required |
//! | `DELIVERIES_TABLE`       | deliveries table: the delivery ledger, read through its `gsi1` (aws) | required |
//! | `JWT_ISSUER`             | expected `iss`                                                  | required (aws); dev issuer (embedded) |
//! | `JWT_AUDIENCE`           | expected `aud`                                                  | `pos-platform` |
//! | `JWKS_URL`               | the issuer's key set, https                                     | `{JWT_ISSUER}/.well-known/jwks.json` |
//! | `JWKS_FILE`              | a JWKS file instead (embedded)                                  | dev issuer's keys |
//! | `CURSOR_SECRET_ID`       | Secrets Manager secret holding the cursor signing key, ≥ 32 bytes (aws) | required |
//! | `JWKS_MAX_STALE_HOURS`   | how long cached keys stay trusted while the issuer is unreachable (1–168) | 24 |
//! | `GRAPHQL_MAX_DEPTH`      | deepest GraphQL selection                                       | 8 |
//! | `GRAPHQL_MAX_COMPLEXITY` | costliest GraphQL query                                         | 2000 |
//! | `GRAPHQL_INTROSPECTION`  | `true` serves introspection                                     | `false` |
//! | `POS_DATA_DIR`           | embedded store directory (embedded)                             | `.local-data` |
//!
//! The cursor key is shared by every instance (a cursor from one must work on the next), so it lives in
//! Secrets Manager; the embedded backend derives one per process.

use super::ApiState;
use super::graphql::GraphqlConfig;
use crate::auth::http::HttpJwks;
use crate::auth::{
    API_AUDIENCE, AuthConfig, Authenticator, DEV_ISSUER, DEV_JWKS_JSON, JwksSource, StaticJwks,
};
use crate::config::{ConfigError, required, var};
use crate::ports::SystemClock;
use crate::read::CursorCodec;
use std::sync::Arc;

fn positive(name: &'static str, default: usize) -> Result<usize, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError::Invalid(name, "not a positive integer".into())),
        },
    }
}

fn flag(name: &'static str) -> Result<bool, ConfigError> {
    match var(name).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ConfigError::Invalid(name, "must be true or false".into())),
    }
}

/// GraphQL limits from the environment.
pub fn graphql_from_env() -> Result<GraphqlConfig, ConfigError> {
    let defaults = GraphqlConfig::default();
    Ok(GraphqlConfig {
        max_depth: positive("GRAPHQL_MAX_DEPTH", defaults.max_depth)?,
        max_complexity: positive("GRAPHQL_MAX_COMPLEXITY", defaults.max_complexity)?,
        introspection: flag("GRAPHQL_INTROSPECTION")?,
    })
}

fn authenticator(
    source: Arc<dyn JwksSource>,
    issuer: String,
) -> Result<Arc<Authenticator>, ConfigError> {
    let mut config = AuthConfig::standard(
        issuer,
        var("JWT_AUDIENCE").unwrap_or_else(|| API_AUDIENCE.to_owned()),
    );
    if let Some(max_stale) = jwks_max_stale(var("JWKS_MAX_STALE_HOURS").as_deref())? {
        config.jwks_max_stale = max_stale;
    }
    Ok(Arc::new(Authenticator::new(
        source,
        Arc::new(SystemClock),
        config,
    )))
}

/// `JWKS_MAX_STALE_HOURS`: whole hours from 1 to 168 (a week); `None` keeps the default (24 h).
fn jwks_max_stale(value: Option<&str>) -> Result<Option<chrono::Duration>, ConfigError> {
    let Some(text) = value else { return Ok(None) };
    match text.trim().parse::<i64>() {
        Ok(hours) if (1..=168).contains(&hours) => Ok(Some(chrono::Duration::hours(hours))),
        _ => Err(ConfigError::Invalid(
            "JWKS_MAX_STALE_HOURS",
            "must be whole hours from 1 to 168".into(),
        )),
    }
}

/// Builds the read models, the authenticator and the cursor codec from the environment.
pub async fn api_state_from_env() -> Result<Arc<ApiState>, ConfigError> {
    let graphql = graphql_from_env()?;
    match var("POS_BACKEND").as_deref().unwrap_or("aws") {
        "aws" => {
            let table = required("TABLE_NAME")?;
            let stock_table = required("STOCK_TABLE_NAME")?;
            let loyalty_table = required("LOYALTY_TABLE_NAME")?;
            let deliveries_table = required("DELIVERIES_TABLE")?;
            let issuer = required("JWT_ISSUER")?;
            let jwks_url = var("JWKS_URL").unwrap_or_else(|| HttpJwks::default_url(&issuer));
            let jwks = HttpJwks::new(&jwks_url, std::time::Duration::from_secs(3))
                .map_err(|e| ConfigError::Invalid("JWKS_URL", e))?;
            let cursor_secret = required("CURSOR_SECRET_ID")?;
            let sdk = crate::aws_sdk::aws_sdk_config().await;
            let key = aws_sdk_secretsmanager::Client::new(&sdk)
                .get_secret_value()
                .secret_id(&cursor_secret)
                .send()
                .await
                .map_err(|e| {
                    ConfigError::Init(
                        "cursor key",
                        aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                    )
                })?
                .secret_string
                .ok_or(ConfigError::Init(
                    "cursor key",
                    "the secret has no value".into(),
                ))?;
            let cursors = CursorCodec::new(key.into_bytes())
                .map_err(|e| ConfigError::Invalid("CURSOR_SECRET_ID", e))?;
            let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
            Ok(Arc::new(ApiState {
                sales: Arc::new(crate::store::dynamodb::DynamoStore::new(
                    dynamo.clone(),
                    table,
                )),
                stock: Arc::new(crate::stock::dynamodb::DynamoStockLedger::new(
                    dynamo.clone(),
                    stock_table,
                )),
                loyalty: Arc::new(crate::loyalty::dynamodb::DynamoLoyaltyLedger::new(
                    dynamo.clone(),
                    loyalty_table,
                )),
                deliveries: Arc::new(crate::delivery::dynamodb::DynamoDeliveries::new(
                    dynamo,
                    deliveries_table,
                )),
                auth: authenticator(Arc::new(jwks), issuer)?,
                cursors: Arc::new(cursors),
                graphql,
            }))
        }
        "embedded" => {
            let dir = std::path::PathBuf::from(
                var("POS_DATA_DIR").unwrap_or_else(|| ".local-data".into()),
            );
            std::fs::create_dir_all(&dir)
                .map_err(|e| ConfigError::Init("data dir", e.to_string()))?;
            let init =
                |e: &dyn std::fmt::Display| ConfigError::Init("embedded store", e.to_string());
            // Shared opens: under `cargo lambda watch` the capture and the consumers write these files
            // while this function reads them.
            let open = |file: &str| {
                crate::store::embedded::EmbeddedStore::open_shared_file(&dir.join(file))
                    .map(Arc::new)
                    .map_err(|e| init(&e))
            };
            let sales =
                crate::store::embedded::EmbeddedStore::open_shared(&dir).map_err(|e| init(&e))?;
            let stock = crate::stock::embedded::EmbeddedStockLedger::new(open("stock.redb")?)
                .map_err(|e| init(&e))?;
            let loyalty =
                crate::loyalty::embedded::EmbeddedLoyaltyLedger::new(open("loyalty.redb")?)
                    .map_err(|e| init(&e))?;
            let deliveries =
                crate::delivery::embedded::EmbeddedDeliveries::new(open("deliveries.redb")?)
                    .map_err(|e| init(&e))?;
            let jwks_text = match var("JWKS_FILE") {
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|e| ConfigError::Invalid("JWKS_FILE", e.to_string()))?,
                None => DEV_JWKS_JSON.to_owned(),
            };
            let jwks =
                StaticJwks::parse(&jwks_text).map_err(|e| ConfigError::Invalid("JWKS_FILE", e))?;
            let issuer = var("JWT_ISSUER").unwrap_or_else(|| DEV_ISSUER.to_owned());
            let cursor_key = crate::vendors::signing::sha256_hex(
                format!("{:?}{}", std::time::SystemTime::now(), std::process::id()).as_bytes(),
            );
            Ok(Arc::new(ApiState {
                sales: Arc::new(sales),
                stock: Arc::new(stock),
                loyalty: Arc::new(loyalty),
                deliveries: Arc::new(deliveries),
                auth: authenticator(Arc::new(jwks), issuer)?,
                cursors: Arc::new(
                    CursorCodec::new(cursor_key.into_bytes())
                        .map_err(|e| ConfigError::Init("cursor key", e))?,
                ),
                graphql,
            }))
        }
        other => Err(ConfigError::Invalid(
            "POS_BACKEND",
            format!("{other:?} is not aws or embedded"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_max_stale_is_whole_hours_within_a_week() {
        assert_eq!(jwks_max_stale(None).ok(), Some(None));
        assert_eq!(
            jwks_max_stale(Some("6")).ok(),
            Some(Some(chrono::Duration::hours(6)))
        );
        assert_eq!(
            jwks_max_stale(Some("168")).ok(),
            Some(Some(chrono::Duration::hours(168)))
        );
        for bad in ["0", "169", "-1", "1.5", "forever", ""] {
            assert!(jwks_max_stale(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
