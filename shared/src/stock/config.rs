//! stock-sync configuration, read once at cold start.
//!
//! | variable              | meaning                                              | default |
//! |-----------------------|------------------------------------------------------|---------|
//! | `POS_BACKEND`         | `aws` or `embedded`                                  | `aws`   |
//! | `STOCK_TABLE_NAME`    | DynamoDB stock table (aws)                           | required |
//! | `TABLE_NAME`          | capture table, read for claim-checked lines (aws)    | required |
//! | `EVENT_BUS_NAME`      | bus for `StockLow` / `StockNegative` (aws)           | required |
//! | `POS_DATA_DIR`        | embedded store directory (embedded)                  | `.local-data` |
//! | `LOW_STOCK_THRESHOLD` | at or below it a SKU is low                          | 5       |

use crate::bus::eventbridge::EventBridgePublisher;
use crate::bus::memory::RecordingBus;
use crate::config::{ConfigError, required, var};
use crate::metrics::{Metrics, Sink};
use crate::ports::SystemClock;
use crate::stock::StockSync;
use crate::stock::dynamodb::DynamoStockLedger;
use crate::stock::embedded::EmbeddedStockLedger;
use std::sync::Arc;

/// Builds the consumer from the environment.
pub async fn stock_sync_from_env() -> Result<StockSync, ConfigError> {
    let threshold: i64 = match var("LOW_STOCK_THRESHOLD") {
        None => 5,
        Some(v) => v
            .parse()
            .map_err(|_| ConfigError::Invalid("LOW_STOCK_THRESHOLD", "not an integer".into()))?,
    };
    let metrics = Arc::new(Metrics::new("stock-sync", Sink::Stdout));
    match var("POS_BACKEND").as_deref().unwrap_or("aws") {
        "aws" => {
            let table = required("STOCK_TABLE_NAME")?;
            let capture_table = required("TABLE_NAME")?;
            let bus = required("EVENT_BUS_NAME")?;
            let sdk = crate::aws_sdk::aws_sdk_config().await;
            let lines = Arc::new(crate::store::dynamodb::DynamoStore::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                capture_table,
            ));
            Ok(StockSync::new(
                Arc::new(DynamoStockLedger::new(
                    aws_sdk_dynamodb::Client::new(&sdk),
                    table,
                )),
                Arc::new(EventBridgePublisher::new(
                    aws_sdk_eventbridge::Client::new(&sdk),
                    bus,
                )),
                Arc::new(SystemClock),
                threshold,
                metrics,
            )
            .with_lines_source(lines))
        }
        "embedded" => {
            let dir = var("POS_DATA_DIR").unwrap_or_else(|| ".local-data".into());
            embedded_stock_sync(std::path::Path::new(&dir), threshold, metrics)
        }
        other => Err(ConfigError::Invalid(
            "POS_BACKEND",
            format!("{other:?} is not aws or embedded"),
        )),
    }
}

/// The consumer on the embedded stores of `dir`, opened shared (every function of a `cargo lambda watch`
/// session keeps them open at once): its ledger `stock.redb`, and `pos.redb` for claim-checked lines.
pub fn embedded_stock_sync(
    dir: &std::path::Path,
    threshold: i64,
    metrics: Arc<Metrics>,
) -> Result<StockSync, ConfigError> {
    let init =
        |e: crate::store::StoreError| ConfigError::Init("embedded stock store", e.to_string());
    let db = crate::store::embedded::EmbeddedStore::open_shared_file(&dir.join("stock.redb"))
        .map_err(init)?;
    let ledger = EmbeddedStockLedger::new(Arc::new(db))
        .map_err(|e| ConfigError::Init("embedded stock store", e.to_string()))?;
    let lines = crate::store::embedded::EmbeddedStore::open_shared(dir).map_err(init)?;
    Ok(StockSync::new(
        Arc::new(ledger),
        Arc::new(RecordingBus::new()),
        Arc::new(SystemClock),
        threshold,
        metrics,
    )
    .with_lines_source(Arc::new(lines)))
}
