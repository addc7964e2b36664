//! loyalty-accrual configuration, read once at cold start (bad rules stop the cold start, loudly).
//!
//! | variable             | meaning                                              | default |
//! |----------------------|------------------------------------------------------|---------|
//! | `POS_BACKEND`        | `aws` or `embedded`                                  | `aws`   |
//! | `LOYALTY_TABLE_NAME` | DynamoDB loyalty table (aws)                         | required |
//! | `TABLE_NAME`         | capture table, read for claim-checked lines (aws)    | required |
//! | `POS_DATA_DIR`       | embedded store directory (embedded)                  | `.local-data` |
//! | `LOYALTY_RULES`      | the rules JSON document (see [`super::rules`])       | built-in rules |

use super::LoyaltyAccrual;
use super::dynamodb::DynamoLoyaltyLedger;
use super::embedded::EmbeddedLoyaltyLedger;
use super::rules::{LoyaltyRules, default_rules_json};
use crate::config::{ConfigError, required, var};
use crate::metrics::{Metrics, Sink};
use std::sync::Arc;

/// Builds the consumer from the environment.
pub async fn loyalty_accrual_from_env() -> Result<LoyaltyAccrual, ConfigError> {
    let rules_text = var("LOYALTY_RULES").unwrap_or_else(|| default_rules_json().to_owned());
    let rules = LoyaltyRules::parse(&rules_text)
        .map_err(|e| ConfigError::Invalid("LOYALTY_RULES", e.to_string()))?;
    let metrics = Arc::new(Metrics::new("loyalty-accrual", Sink::Stdout));
    match var("POS_BACKEND").as_deref().unwrap_or("aws") {
        "aws" => {
            let table = required("LOYALTY_TABLE_NAME")?;
            let capture_table = required("TABLE_NAME")?;
            let sdk = crate::aws_sdk::aws_sdk_config().await;
            let lines = Arc::new(crate::store::dynamodb::DynamoStore::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                capture_table,
            ));
            Ok(LoyaltyAccrual::new(
                Arc::new(DynamoLoyaltyLedger::new(
                    aws_sdk_dynamodb::Client::new(&sdk),
                    table,
                )),
                rules,
                metrics,
            )
            .with_lines_source(lines))
        }
        "embedded" => {
            let dir = var("POS_DATA_DIR").unwrap_or_else(|| ".local-data".into());
            embedded_loyalty_accrual(std::path::Path::new(&dir), rules, metrics)
        }
        other => Err(ConfigError::Invalid(
            "POS_BACKEND",
            format!("{other:?} is not aws or embedded"),
        )),
    }
}

/// The consumer on the embedded stores of `dir`, opened shared (every function of a `cargo lambda watch`
/// session keeps them open at once): its ledger `loyalty.redb`, and `pos.redb` for claim-checked lines.
pub fn embedded_loyalty_accrual(
    dir: &std::path::Path,
    rules: LoyaltyRules,
    metrics: Arc<Metrics>,
) -> Result<LoyaltyAccrual, ConfigError> {
    let init =
        |e: crate::store::StoreError| ConfigError::Init("embedded loyalty store", e.to_string());
    let db = crate::store::embedded::EmbeddedStore::open_shared_file(&dir.join("loyalty.redb"))
        .map_err(init)?;
    let ledger = EmbeddedLoyaltyLedger::new(Arc::new(db))
        .map_err(|e| ConfigError::Init("embedded loyalty store", e.to_string()))?;
    let lines = crate::store::embedded::EmbeddedStore::open_shared(dir).map_err(init)?;
    Ok(LoyaltyAccrual::new(Arc::new(ledger), rules, metrics).with_lines_source(Arc::new(lines)))
}
