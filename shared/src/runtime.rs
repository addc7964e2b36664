//! Cold-start wiring: turns a [`CaptureConfig`] into a ready [`CaptureService`], and sets up JSON logs.
//! Function binaries call this once, before `lambda_runtime::run`.

use crate::bus::eventbridge::EventBridgePublisher;
use crate::bus::memory::RecordingBus;
use crate::capture::CaptureService;
use crate::config::{Backend, CaptureConfig, ConfigError};
use crate::metrics::{Metrics, Sink};
use crate::ports::{Clock, QuarantineStore, SystemClock};
use crate::quarantine::{ReportResult, ReprocessReport, Reprocessor};
use crate::secrets::aws::SecretsManagerSecrets;
use crate::secrets::file::FileSecrets;
use crate::secrets::{CachedSecrets, StaticSecrets, dev_secrets};
use crate::store::dynamodb::DynamoStore;
use crate::store::embedded::EmbeddedStore;
use std::sync::Arc;

/// How long a failed signature must wait before it may trigger another secret refresh.
const MIN_SECRET_REFRESH: chrono::Duration = chrono::Duration::seconds(30);

/// Builds the capture service for `config`. AWS clients honour the standard AWS environment
/// (`AWS_REGION`, `AWS_ENDPOINT_URL` for moto or LocalStack, credentials chain).
pub async fn capture_service(config: &CaptureConfig) -> Result<CaptureService, ConfigError> {
    Ok(capture_parts(config).await?.0)
}

/// Reprocesses quarantined deliveries ([`crate::quarantine`]) with the capture function's configuration:
/// the one named, or every open one. The operator path: `pos-local reprocess --aws` runs this with the
/// deployed function's environment.
pub async fn reprocess_quarantine(
    config: &CaptureConfig,
    one: Option<(crate::model::Vendor, String)>,
) -> Result<Vec<ReprocessReport>, ConfigError> {
    let (capture, quarantine) = capture_parts(config).await?;
    let reprocessor = Reprocessor::new(&capture, quarantine.as_ref(), &SystemClock);
    let store_failed = |e: crate::store::StoreError| ConfigError::Init("quarantine", e.to_string());
    match one {
        None => reprocessor.reprocess_all().await.map_err(store_failed),
        Some((vendor, delivery_key)) => {
            let result = match reprocessor.reprocess(vendor, &delivery_key).await {
                Ok(done) => ReportResult::Done(done),
                Err(e) => ReportResult::Failed {
                    error: e.to_string(),
                },
            };
            Ok(vec![ReprocessReport {
                vendor,
                delivery_key,
                result,
            }])
        }
    }
}

async fn capture_parts(
    config: &CaptureConfig,
) -> Result<(CaptureService, Arc<dyn QuarantineStore>), ConfigError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match &config.backend {
        Backend::Aws {
            table,
            bus,
            secret_id,
        } => {
            let sdk = aws_config::load_from_env().await;
            let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table));
            let publisher = EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&sdk), bus);
            let secrets = CachedSecrets::new(
                SecretsManagerSecrets::new(aws_sdk_secretsmanager::Client::new(&sdk), secret_id),
                clock.clone(),
                config.secrets_ttl,
                MIN_SECRET_REFRESH,
            );
            let capture = CaptureService::new(
                store.clone(),
                Arc::new(publisher),
                Arc::new(secrets),
                clock,
                config.settings.clone(),
            )
            .with_metrics(Arc::new(Metrics::new("sale-capture", Sink::Stdout)));
            Ok((capture, store))
        }
        Backend::Embedded {
            data_dir,
            secrets_file,
        } => {
            let store = Arc::new(
                EmbeddedStore::open(data_dir)
                    .map_err(|e| ConfigError::Init("embedded store", e.to_string()))?,
            );
            let secrets: Arc<dyn crate::ports::SecretSource> = match secrets_file {
                Some(path) => Arc::new(CachedSecrets::new(
                    FileSecrets::new(path),
                    clock.clone(),
                    config.secrets_ttl,
                    MIN_SECRET_REFRESH,
                )),
                None => Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
            };
            let capture = CaptureService::new(
                store.clone(),
                Arc::new(RecordingBus::new()),
                secrets,
                clock,
                config.settings.clone(),
            )
            .with_metrics(Arc::new(Metrics::new("sale-capture", Sink::Stdout)));
            Ok((capture, store))
        }
    }
}

static COLD_START: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// The span of one invocation: function name, Lambda request id and whether this is the cold start,
/// on every log line written inside it.
pub fn invocation_span(function: &'static str, request_id: &str) -> tracing::Span {
    let cold_start = COLD_START.swap(false, std::sync::atomic::Ordering::Relaxed);
    tracing::info_span!("invocation", function, request_id, cold_start)
}

/// JSON logs on stdout (CloudWatch), level from `RUST_LOG` (default `info`), with the Lambda function name
/// on every line. Safe to call more than once (later calls are no-ops).
pub fn init_logging(function: &'static str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(true)
        .with_target(false)
        .without_time()
        .try_init();
    tracing::info!(function, "logging initialised");
}
