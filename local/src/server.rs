//! The local server: the real sale-capture handler behind an emulated API Gateway, on the embedded
//! store and an in-process bus, plus read-only inspection endpoints.
//!
//! | route                       | what                                                             |
//! |-----------------------------|------------------------------------------------------------------|
//! | `POST /webhooks/{vendor}`   | sale-capture, exactly as in AWS (status contract in README)      |
//! | `GET /_local/sales`         | canonical records in the store (sales, returns, adjustments…)    |
//! | `GET /_local/events`        | events published on the bus since the server started            |
//! | `GET /_local/quarantine`    | signed deliveries that could not be mapped (422)                 |
//! | `GET /_local/outbox`        | outbox entries still pending publication                         |
//! | `GET /_local/health`        | liveness                                                         |

use crate::apigw;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use pos_shared::bus::memory::RecordingBus;
use pos_shared::capture::{CaptureService, CaptureSettings};
use pos_shared::ports::{Clock, SecretSource, SystemClock};
use pos_shared::secrets::file::FileSecrets;
use pos_shared::secrets::{CachedSecrets, StaticSecrets, dev_secrets};
use pos_shared::store::StoreInspect;
use pos_shared::store::embedded::EmbeddedStore;
use serde_json::json;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest request the emulated gateway passes on (the Lambda payload limit); the handler applies its own,
/// smaller limit and answers 413 itself.
const GATEWAY_BODY_LIMIT: usize = 6 * 1024 * 1024;

/// How to run the local platform.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Embedded store directory.
    pub data_dir: PathBuf,
    /// Secrets file in the Secrets Manager JSON shape; `None` = the built-in dev secrets.
    pub secrets_file: Option<PathBuf>,
    /// Capture behaviour.
    pub settings: CaptureSettings,
}

/// The running platform's parts, shared by the routes.
pub struct Platform {
    /// The sale-capture use case.
    pub capture: CaptureService,
    /// The embedded store.
    pub store: EmbeddedStore,
    /// The in-process bus.
    pub bus: Arc<RecordingBus>,
    requests: AtomicU64,
}

impl Platform {
    /// Opens the store and loads the secrets (checked now, so a bad file fails at start, not later).
    pub async fn open(opts: &LocalOptions) -> anyhow::Result<Self> {
        let store = EmbeddedStore::open(&opts.data_dir)?;
        let bus = Arc::new(RecordingBus::new());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let secrets: Arc<dyn SecretSource> = match &opts.secrets_file {
            Some(path) => {
                let source = CachedSecrets::new(
                    FileSecrets::new(path),
                    clock.clone(),
                    chrono::Duration::seconds(5),
                    chrono::Duration::seconds(1),
                );
                source
                    .load()
                    .await
                    .map_err(|e| anyhow::anyhow!("secrets file {}: {e}", path.display()))?;
                Arc::new(source)
            }
            None => Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
        };
        let capture = CaptureService::new(
            Arc::new(store.clone()),
            bus.clone(),
            secrets,
            clock,
            opts.settings.clone(),
        );
        Ok(Self {
            capture,
            store,
            bus,
            requests: AtomicU64::new(0),
        })
    }
}

/// The router of the local platform.
pub fn router(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/webhooks/{vendor}", any(webhook))
        .route("/_local/sales", get(sales))
        .route("/_local/events", get(events))
        .route("/_local/quarantine", get(quarantine))
        .route("/_local/outbox", get(outbox))
        .route(
            "/_local/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(GATEWAY_BODY_LIMIT))
        .with_state(platform)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    platform: Arc<Platform>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(platform))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn webhook(
    State(p): State<Arc<Platform>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = p.requests.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("local-{}-{n}", std::process::id());
    let event = apigw::webhook_event(
        &method,
        uri.path(),
        uri.query().unwrap_or(""),
        &headers,
        &body,
        &request_id,
    );
    let req = match pos_shared::http::request_from_event_json(&event.to_string()) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "emulated gateway built an invalid event");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let resp = pos_shared::http::handle(&p.capture, req).await;
    let (parts, body) = resp.into_parts();
    let bytes = match body {
        lambda_http::Body::Text(t) => t.into_bytes(),
        lambda_http::Body::Binary(b) => b,
        _ => Vec::new(),
    };
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

fn json_or_503<T: serde::Serialize>(r: Result<T, pos_shared::store::StoreError>) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "store read failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": "store unavailable"})),
            )
                .into_response()
        }
    }
}

async fn sales(State(p): State<Arc<Platform>>) -> Response {
    json_or_503(p.store.records().await)
}

async fn events(State(p): State<Arc<Platform>>) -> Response {
    axum::Json(p.bus.events()).into_response()
}

async fn quarantine(State(p): State<Arc<Platform>>) -> Response {
    json_or_503(p.store.quarantined().await)
}

async fn outbox(State(p): State<Arc<Platform>>) -> Response {
    json_or_503(p.store.pending_outbox().await)
}

async fn not_found(uri: Uri) -> Response {
    let body = json!({
        "type": "urn:pos-platform:problem:unknown-route",
        "title": "Not Found",
        "status": 404,
        "detail": format!("no route for {}", uri.path().chars().take(100).collect::<String>()),
    });
    let mut resp = (StatusCode::NOT_FOUND, body.to_string()).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/problem+json"),
    );
    resp
}
