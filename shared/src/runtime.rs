//! Cold-start wiring: turns a [`CaptureConfig`] into a ready [`CaptureService`], and sets up JSON logs.
//! Function binaries call this once, before `lambda_runtime::run`.

use crate::capture::CaptureService;
use crate::config::{Backend, CaptureConfig, ConfigError};
use crate::metrics::{Metrics, Sink};
use crate::ports::{Clock, QuarantineStore, SystemClock};
use crate::quarantine::{ReprocessReport, Reprocessor};
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
        Some((vendor, delivery_key)) => Ok(vec![reprocessor.report(vendor, delivery_key).await]),
    }
}

async fn capture_parts(
    config: &CaptureConfig,
) -> Result<(CaptureService, Arc<dyn QuarantineStore>), ConfigError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match &config.backend {
        Backend::Aws { table, secret_id } => {
            let sdk = crate::aws_sdk::aws_sdk_config().await;
            let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table));
            let secrets = CachedSecrets::new(
                SecretsManagerSecrets::new(aws_sdk_secretsmanager::Client::new(&sdk), secret_id),
                clock.clone(),
                config.secrets_ttl,
                MIN_SECRET_REFRESH,
            );
            let capture = CaptureService::new(
                store.clone(),
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
            standard_replay_at,
        } => {
            // Shared: under `cargo lambda watch`, outbox-relay is another process on the same outbox.
            let store = Arc::new(
                EmbeddedStore::open_shared(data_dir)
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
            let capture =
                CaptureService::new(store.clone(), secrets, clock, config.settings.clone())
                    .with_metrics(Arc::new(Metrics::new("sale-capture", Sink::Stdout)));
            let capture = match standard_replay_at {
                Some(at) => capture.with_standard_replay_instant(*at),
                None => capture,
            };
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

/// The log filter of `RUST_LOG`: a level (`info`) or `target=level` pairs (`info,pos_shared=debug`).
/// A value that does not parse falls back to `info` (said in the first log line). This is
/// `tracing_subscriber`'s `Targets`, not `EnvFilter`: no regex engine in every binary and no regex work
/// per log call, at the cost of `EnvFilter`'s span and field directives, which nothing here uses.
pub fn log_filter(value: Option<&str>) -> (tracing_subscriber::filter::Targets, bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let default = || Targets::new().with_default(LevelFilter::INFO);
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => (default(), true),
        Some(v) => match v.parse::<Targets>() {
            Ok(t) => (t, true),
            Err(_) => (default(), false),
        },
    }
}

/// JSON logs on stdout (CloudWatch), level from `RUST_LOG` (default `info`, see [`log_filter`]), with the
/// Lambda function name on every line. Safe to call more than once (later calls are no-ops).
pub fn init_logging(function: &'static str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, understood) = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let format = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_target(false)
        .without_time();
    let _ = tracing_subscriber::registry()
        .with(format)
        .with(filter)
        .try_init();
    if understood {
        tracing::info!(function, "logging initialised");
    } else {
        tracing::warn!(function, "RUST_LOG not understood; logging at info");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_levels_and_targets_parse_and_anything_else_falls_back_to_info() {
        use tracing::Level;
        use tracing_subscriber::filter::LevelFilter;
        let (f, ok) = log_filter(None);
        assert!(ok);
        assert!(f.would_enable("pos_shared::capture", &Level::INFO));
        assert!(!f.would_enable("pos_shared::capture", &Level::DEBUG));
        let (f, ok) = log_filter(Some("warn,pos_shared::outbox=debug"));
        assert!(ok);
        assert!(f.would_enable("pos_shared::outbox::stream", &Level::DEBUG));
        assert!(!f.would_enable("pos_shared::capture", &Level::INFO));
        let (f, ok) = log_filter(Some("pos_shared[{x}]=nonsense"));
        assert!(!ok, "not understood: said so");
        assert_eq!(f.default_level(), Some(LevelFilter::INFO));
    }
    use crate::bus::memory::RecordingBus;
    use crate::capture::{CaptureSettings, Captured, WebhookRequest};
    use crate::outbox::OutboxRelay;
    use crate::ports::CaptureStore;
    use crate::samples::{self, SignedDelivery};
    use crate::store::StoreInspect;

    fn request(d: &SignedDelivery) -> WebhookRequest {
        let mut headers = http::HeaderMap::new();
        for (k, v) in &d.headers {
            headers.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                http::HeaderValue::from_str(v).expect("value"),
            );
        }
        WebhookRequest {
            method: http::Method::POST,
            vendor: d.vendor.as_str().to_owned(),
            headers,
            body: d.body.clone(),
            correlation_id: "test".into(),
        }
    }

    fn sale(n: u32) -> SignedDelivery {
        samples::standard(
            &format!("msg_watch_{n}"),
            &samples::standard_sale(&format!("watch-{n}"), "store-1", None, 1),
            chrono::Utc::now(),
            None,
        )
    }

    fn embedded(dir: &std::path::Path) -> CaptureConfig {
        CaptureConfig {
            backend: Backend::Embedded {
                data_dir: dir.to_path_buf(),
                secrets_file: None,
                standard_replay_at: None,
            },
            settings: CaptureSettings::default(),
            secrets_ttl: chrono::Duration::seconds(300),
        }
    }

    /// `cargo lambda watch` runs every function as its own process on one data dir: sale-capture and
    /// outbox-relay must both open `pos.redb` and answer, in any order (each handle stands for a process:
    /// redb's locks are per open file, so two handles in one process exclude each other like two
    /// processes would).
    #[tokio::test]
    async fn sale_capture_and_outbox_relay_share_one_data_dir_and_answer_in_turn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let capture = capture_service(&embedded(dir.path()))
            .await
            .expect("sale-capture cold start");
        // What outbox-relay's cold start opens (shared/src/outbox/config.rs).
        let relay_store = Arc::new(
            EmbeddedStore::open_shared(dir.path())
                .expect("outbox-relay opens the file sale-capture holds"),
        );
        let relay_bus = Arc::new(RecordingBus::new());
        let relay = OutboxRelay::new(
            relay_store.clone(),
            relay_store.clone(),
            relay_bus.clone(),
            Arc::new(SystemClock),
            chrono::Duration::zero(),
            500,
            Arc::new(Metrics::new("outbox-relay", Sink::Off)),
        );

        // No stream between processes: the relay's sweep publishes what sale-capture stored.
        assert!(matches!(
            capture.handle(&request(&sale(1))).await,
            Ok(Captured::Accepted { .. })
        ));
        let report = relay.run().await.expect("relay answers");
        assert_eq!((report.found, report.published), (1, 1));
        assert_eq!(relay_store.records().await.expect("records").len(), 1);

        // A capture by a third process on the same file...
        let other = CaptureService::new(
            Arc::new(EmbeddedStore::open_shared(dir.path()).expect("a third handle")),
            Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
            Arc::new(SystemClock),
            CaptureSettings::default(),
        );
        assert!(matches!(
            other.handle(&request(&sale(2))).await,
            Ok(Captured::Accepted { .. })
        ));
        // ...which the relay publishes and marks, and sale-capture then sees as a duplicate.
        let report = relay.run().await.expect("relay answers");
        assert_eq!((report.found, report.published), (1, 1));
        assert_eq!(relay_bus.events().len(), 2);
        let entry = relay_store
            .outbox_entry(&relay_bus.events()[1].event_id)
            .await
            .expect("read")
            .expect("entry");
        assert_ne!(entry.status, crate::store::OutboxStatus::Pending);
        assert!(matches!(
            capture.handle(&request(&sale(2))).await,
            Ok(Captured::Duplicate { .. })
        ));
        assert!(matches!(
            capture.handle(&request(&sale(3))).await,
            Ok(Captured::Accepted { .. })
        ));
        assert_eq!(relay.run().await.expect("relay answers").found, 1);
        assert_eq!(relay_store.records().await.expect("records").len(), 3);
    }

    /// All five functions of one `cargo lambda watch` session hold the one data dir at once (each handle
    /// stands for a process): a big sale captured by sale-capture is applied by stock-sync and
    /// loyalty-accrual, which read its claim-checked lines from `pos.redb`, and query-api's handles see
    /// the sale and the stock they wrote.
    #[tokio::test]
    async fn every_function_of_a_watch_session_shares_the_data_dir_and_sees_the_others_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let capture = capture_service(&embedded(dir.path()))
            .await
            .expect("sale-capture cold start");
        let off = || Arc::new(Metrics::new("watch", Sink::Off));
        let stock = crate::stock::config::embedded_stock_sync(dir.path(), 5, off())
            .expect("stock-sync cold start beside sale-capture");
        let loyalty = crate::loyalty::config::embedded_loyalty_accrual(
            dir.path(),
            crate::loyalty::rules::LoyaltyRules::default_rules(),
            off(),
        )
        .expect("loyalty-accrual cold start beside them");
        // What outbox-relay and query-api open (outbox/config.rs, api/config.rs).
        let relay_store = EmbeddedStore::open_shared(dir.path()).expect("outbox-relay");
        let api_stock = crate::stock::embedded::EmbeddedStockLedger::new(Arc::new(
            EmbeddedStore::open_shared_file(&dir.path().join("stock.redb")).expect("query-api"),
        ))
        .expect("ledger");

        // 2 000 lines: over the bus limit, so the event carries a reference to lines in pos.redb.
        let body = samples::standard_sale("watch-big", "store-1", Some("m-1"), 2000);
        let d = samples::standard("msg_watch_big", &body, chrono::Utc::now(), None);
        let Ok(Captured::Accepted { event_id }) = capture.handle(&request(&d)).await else {
            panic!("not accepted");
        };
        let envelope = relay_store
            .outbox_entry(&event_id)
            .await
            .expect("read")
            .expect("entry")
            .envelope;
        assert!(envelope.lines_ref.is_some(), "claim-checked");
        let message = serde_json::to_string(&crate::bus::BusMessage::new("eb-watch", envelope))
            .expect("json");
        stock
            .handle_body(&message)
            .await
            .expect("stock-sync applies it");
        loyalty
            .handle_body(&message)
            .await
            .expect("loyalty-accrual applies it");
        let sku = crate::ids::Sku::parse("SKU-001").expect("sku");
        let store = crate::ids::StoreId::parse("store-1").expect("store");
        assert_eq!(
            crate::stock::StockLedger::on_hand(&api_stock, &store, &sku)
                .await
                .expect("query-api reads stock-sync's commit"),
            -1
        );
        let api_loyalty = crate::loyalty::embedded::EmbeddedLoyaltyLedger::new(Arc::new(
            EmbeddedStore::open_shared_file(&dir.path().join("loyalty.redb")).expect("query-api"),
        ))
        .expect("ledger");
        let member = crate::ids::MemberId::parse("m-1").expect("member");
        assert_eq!(
            crate::loyalty::LoyaltyLedger::balance(&api_loyalty, &member)
                .await
                .expect("query-api reads loyalty-accrual's commit"),
            25_000,
            "2 000 lines of 12.50 EUR earn 1 point per EUR"
        );
    }

    /// The `[package.metadata.lambda.env]` of sale-capture (what `cargo lambda watch` sets) as vars.
    fn watch_env(dir: &std::path::Path) -> impl Fn(&'static str) -> Option<String> {
        let manifest = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../functions/sale-capture/Cargo.toml"),
        )
        .expect("sale-capture manifest");
        let section = manifest
            .split("[package.metadata.lambda.env]")
            .nth(1)
            .expect("a lambda env section");
        let mut vars: std::collections::HashMap<String, String> = section
            .lines()
            .take_while(|l| !l.trim_start().starts_with('['))
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                Some((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
            })
            .collect();
        vars.insert("POS_DATA_DIR".into(), dir.display().to_string());
        move |name| vars.get(name).cloned()
    }

    async fn replay(service: &CaptureService, file: &str) -> u16 {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../events")
            .join(file);
        let text = std::fs::read_to_string(&path).expect("sample");
        let req = crate::http::request_from_event_json(&text).expect("an API Gateway event");
        crate::http::handle(service, req).await.status().as_u16()
    }

    /// `cargo lambda invoke sale-capture --data-file events/standard/...` under watch: every committed
    /// Standard Webhooks sample answers what the manifest says, today, with the real clock (the stale and
    /// future samples are still refused: the 5-minute window holds around the replay instant).
    #[tokio::test]
    async fn under_watch_the_committed_standard_samples_answer_as_the_manifest_says() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = CaptureConfig::from_vars(watch_env(dir.path())).expect("watch config");
        let service = capture_service(&config).await.expect("cold start");
        let manifest: Vec<serde_json::Value> = serde_json::from_str(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/manifest.json"),
            )
            .expect("manifest"),
        )
        .expect("manifest JSON");
        let mut replayed = 0;
        for case in manifest.iter().filter(|c| {
            c["file"]
                .as_str()
                .is_some_and(|f| f.starts_with("standard/"))
        }) {
            let file = case["file"].as_str().expect("file");
            assert_eq!(
                u64::from(replay(&service, file).await),
                case["status"].as_u64().expect("status"),
                "{file}"
            );
            replayed += 1;
        }
        assert!(replayed >= 6, "the manifest lists the Standard samples");
        // The allowance is about time only: a sample whose body was changed is still refused.
        let mut event: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../events/standard/return.json"),
            )
            .expect("sample"),
        )
        .expect("JSON");
        let body = event["body"]
            .as_str()
            .expect("text body")
            .replace("12.50", "1.25");
        event["body"] = serde_json::Value::String(body);
        let req = crate::http::request_from_event_json(&event.to_string()).expect("event");
        assert_eq!(
            crate::http::handle(&service, req).await.status().as_u16(),
            401
        );
    }

    #[tokio::test]
    async fn without_the_replay_instant_the_committed_sample_is_refused_as_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let service = capture_service(&embedded(dir.path()))
            .await
            .expect("cold start");
        assert_eq!(replay(&service, "standard/sale.json").await, 401);
    }
}
