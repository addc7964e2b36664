//! The local server: the real sale-capture handler behind an emulated API Gateway, on the embedded
//! store and an in-process bus whose queues are durable tables of the same store, plus read-only
//! inspection endpoints.
//!
//! | route                       | what                                                             |
//! |-----------------------------|------------------------------------------------------------------|
//! | `POST /webhooks/{vendor}`   | sale-capture, exactly as in AWS (status contract in README)      |
//! | `GET /_local/sales`         | canonical records in the store (sales, returns, adjustments…)    |
//! | `GET /_local/events`        | events published on the bus since the server started            |
//! | `GET /_local/quarantine`    | signed deliveries that could not be mapped (and how each was resolved) |
//! | `POST /_local/quarantine/reprocess` | reprocess quarantined deliveries after a mapping fix: every open one, or `{"vendor", "delivery_key"}` |
//! | `GET /_local/outbox`        | outbox entries still pending publication                         |
//! | `GET /_local/queues`        | per consumer queue: visible, in flight, DLQ contents             |
//! | `POST /_local/queues/{q}/redrive`  | moves the DLQ's messages back to the queue                |
//! | `POST /_local/queues/{q}/messages` | enqueues a raw body (to try a poison message)             |
//! | `GET /_local/stock`         | on-hand per store + SKU (stock-sync's ledger)                    |
//! | `GET /_local/loyalty`       | balance per member; `GET /_local/loyalty/{member}`: the ledger   |
//! | `GET /_local/deliveries`    | per destination, the delivery ledger's entries by status (`delivered_for_sales`: those of a sale or return) |
//! | `GET /_local/health`        | liveness                                                         |
//! | `POST /_local/webhooks/{id}/enable` | re-enables a webhook endpoint and replays its records dead as "endpoint disabled" |

use crate::apigw;
use crate::pipeline::{BatchConsumer, LocalBus, LocalQueue};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use pos_shared::capture::{CaptureService, CaptureSettings};
use pos_shared::delivery::embedded::EmbeddedDeliveries;
use pos_shared::loyalty::rules::LoyaltyRules;
use pos_shared::loyalty::{LoyaltyAccrual, LoyaltyLedger, embedded::EmbeddedLoyaltyLedger};
use pos_shared::metrics::{Metrics, Sink};
use pos_shared::outbox::OutboxRelay;
use pos_shared::ports::{Clock, SecretSource, SystemClock};
use pos_shared::secrets::file::FileSecrets;
use pos_shared::secrets::{CachedSecrets, StaticSecrets, dev_secrets};
use pos_shared::stock::{StockSync, embedded::EmbeddedStockLedger};
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

/// Entries per relay run (one page of the pending index).
const RELAY_PAGE: usize = 500;
/// Pages one scheduled sweep may publish before the next interval (a backlog of 50 000 entries).
const RELAY_MAX_PAGES: usize = 100;

/// How to run the local platform.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Embedded store directory.
    pub data_dir: PathBuf,
    /// Secrets file in the Secrets Manager JSON shape; `None` = the built-in dev secrets.
    pub secrets_file: Option<PathBuf>,
    /// Capture behaviour.
    pub settings: CaptureSettings,
    /// Queue visibility timeout instead of infra/'s (which is minutes).
    pub visibility_timeout: Option<std::time::Duration>,
    /// stock-sync's low-stock threshold.
    pub low_stock_threshold: i64,
    /// Loyalty rules document; `None` = the built-in rules.
    pub loyalty_rules: Option<PathBuf>,
    /// How often the outbox relay runs (the schedule); entries younger than this are left to capture.
    pub relay_interval: std::time::Duration,
    /// JWKS the query API trusts; `None` = the development issuer's.
    pub jwks_file: Option<PathBuf>,
    /// `iss` the query API expects.
    pub jwt_issuer: String,
    /// `aud` the query API expects.
    pub jwt_audience: String,
    /// Connectors file (destinations and their credentials); `None` = no delivery runs.
    pub connectors_file: Option<PathBuf>,
}

/// The running platform's parts, shared by the routes.
pub struct Platform {
    /// The sale-capture use case.
    pub capture: CaptureService,
    /// The embedded store.
    pub store: EmbeddedStore,
    /// The emulated bus and its queues.
    pub bus: Arc<LocalBus>,
    /// stock-sync's ledger.
    pub stock: Arc<EmbeddedStockLedger>,
    /// loyalty-accrual's ledger.
    pub loyalty: Arc<EmbeddedLoyaltyLedger>,
    /// The delivery ledger and the destinations' breakers (`deliveries.redb`), read by the query API.
    pub deliveries: Arc<EmbeddedDeliveries>,
    consumers: Vec<(Arc<LocalQueue>, Arc<dyn BatchConsumer>)>,
    relay: Arc<OutboxRelay>,
    relay_interval: std::time::Duration,
    /// The store's feed of new outbox entries, taken by the publisher task when the pipeline starts.
    feed: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<pos_shared::store::OutboxEntry>>>,
    api: Arc<pos_shared::api::ApiState>,
    requests: AtomicU64,
}

impl Platform {
    /// Opens the store and loads the secrets (checked now, so a bad file fails at start, not later).
    pub async fn open(opts: &LocalOptions) -> anyhow::Result<Self> {
        let store = EmbeddedStore::open(&opts.data_dir)?;
        // Destinations run only when the connectors file configures them (checked now, at start).
        let (commercetools, dynamics) = match &opts.connectors_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("connectors file {}: {e}", path.display()))?;
                let bad = |e: pos_shared::config::ConfigError| {
                    anyhow::anyhow!("connectors file {}: {e}", path.display())
                };
                (
                    pos_shared::delivery::config::commercetools_from_connectors(&text)
                        .map_err(bad)?,
                    pos_shared::delivery::dynamics_config::dynamics_from_connectors(&text)
                        .map_err(bad)?,
                )
            }
            None => (None, None),
        };
        let mut webhooks = webhooks_from_connectors(opts.connectors_file.as_deref())?;
        let delivery_queues: Vec<crate::infra::ConsumerQueue> =
            crate::infra::embedded_delivery_queues()
                .into_iter()
                .filter(|q| match q.consumer().as_str() {
                    "commercetools-sync" => commercetools.is_some(),
                    "dynamics-sync" => dynamics.is_some(),
                    "webhooks-sync" => webhooks.is_some(),
                    _ => false,
                })
                .collect();
        let queues: Vec<Arc<LocalQueue>> = crate::infra::embedded_consumer_queues()
            .iter()
            .chain(delivery_queues.iter())
            .map(|q| {
                Arc::new(LocalQueue::from_infra(
                    store.clone(),
                    q,
                    opts.visibility_timeout,
                ))
            })
            .collect();
        let bus = Arc::new(LocalBus::new(store.clone(), queues.clone()));
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let open_db = |file: &str| -> anyhow::Result<Arc<redb::Database>> {
            Ok(Arc::new(redb::Database::create(opts.data_dir.join(file))?))
        };
        let stock = Arc::new(EmbeddedStockLedger::new(open_db("stock.redb")?)?);
        let loyalty = Arc::new(EmbeddedLoyaltyLedger::new(open_db("loyalty.redb")?)?);
        let deliveries = Arc::new(EmbeddedDeliveries::new(open_db("deliveries.redb")?)?);
        let rules = match &opts.loyalty_rules {
            Some(path) => LoyaltyRules::parse(&std::fs::read_to_string(path)?)
                .map_err(|e| anyhow::anyhow!("loyalty rules {}: {e}", path.display()))?,
            None => LoyaltyRules::default_rules(),
        };
        let stock_sync = Arc::new(
            StockSync::new(
                stock.clone(),
                bus.clone(),
                clock.clone(),
                opts.low_stock_threshold,
                Arc::new(Metrics::new("stock-sync", Sink::Off)),
            )
            .with_lines_source(Arc::new(store.clone())),
        );
        let loyalty_accrual = Arc::new(
            LoyaltyAccrual::new(
                loyalty.clone(),
                rules,
                Arc::new(Metrics::new("loyalty-accrual", Sink::Off)),
            )
            .with_lines_source(Arc::new(store.clone())),
        );
        let mut commercetools = commercetools;
        let mut dynamics = dynamics;
        let max_receives = |name: &str| {
            delivery_queues
                .iter()
                .find(|d| d.consumer() == name)
                .and_then(|d| u32::try_from(d.max_receive_count).ok())
                .unwrap_or(5)
        };
        let mut consumers: Vec<(Arc<LocalQueue>, Arc<dyn BatchConsumer>)> = Vec::new();
        for q in &queues {
            let consumer: Arc<dyn BatchConsumer> = match q.name.as_str() {
                "stock-sync" => stock_sync.clone(),
                "loyalty-accrual" => loyalty_accrual.clone(),
                "commercetools-sync" => match commercetools.take() {
                    Some(client) => Arc::new(pos_shared::delivery::config::commercetools_sync(
                        client,
                        deliveries.clone(),
                        q.clone(),
                        Arc::new(store.clone()),
                        max_receives(&q.name),
                        pos_shared::delivery::config::http_client()?,
                        clock.clone(),
                        Arc::new(Metrics::new("commercetools-sync", Sink::Off)),
                    )),
                    None => anyhow::bail!("commercetools-sync queue without its connector"),
                },
                "dynamics-sync" => match dynamics.take() {
                    Some(conn) => Arc::new(pos_shared::delivery::dynamics_config::dynamics_sync(
                        conn.config,
                        conn.rate,
                        pos_shared::delivery::retry::RetryPolicy::default(),
                        deliveries.clone(),
                        q.clone(),
                        Arc::new(store.clone()),
                        max_receives(&q.name),
                        pos_shared::delivery::config::http_client()?,
                        clock.clone(),
                        Arc::new(Metrics::new("dynamics-sync", Sink::Off)),
                    )),
                    None => anyhow::bail!("dynamics-sync queue without its connector"),
                },
                "webhooks-sync" => match webhooks.take() {
                    Some(subscriptions) => webhooks_consumer(
                        subscriptions,
                        &deliveries,
                        q,
                        &store,
                        max_receives(&q.name),
                        &clock,
                    )?,
                    None => anyhow::bail!("webhooks-sync queue without its webhooks section"),
                },
                other => {
                    anyhow::bail!("infra/ routes to a consumer pos-local does not know: {other}")
                }
            };
            consumers.push((q.clone(), consumer));
        }
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
        // The stand-in for the table's stream: subscribed before the first capture can happen.
        let feed = store.subscribe_outbox();
        let capture = CaptureService::new(
            Arc::new(store.clone()),
            secrets,
            clock.clone(),
            opts.settings.clone(),
        );
        let relay = Arc::new(OutboxRelay::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            bus.clone(),
            Arc::new(SystemClock),
            chrono::Duration::from_std(opts.relay_interval)
                .unwrap_or(chrono::Duration::seconds(10)),
            RELAY_PAGE,
            Arc::new(Metrics::new("outbox-relay", Sink::Off)),
        ));
        let jwks_text = match &opts.jwks_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("jwks file {}: {e}", path.display()))?,
            None => pos_shared::auth::DEV_JWKS_JSON.to_owned(),
        };
        let jwks = pos_shared::auth::StaticJwks::parse(&jwks_text)
            .map_err(|e| anyhow::anyhow!("jwks: {e}"))?;
        let auth = pos_shared::auth::Authenticator::new(
            Arc::new(jwks),
            clock.clone(),
            pos_shared::auth::AuthConfig::standard(&opts.jwt_issuer, &opts.jwt_audience),
        );
        // Cursors only need to outlive a listing: a per-process key (restart = start the listing again).
        let cursor_key = pos_shared::vendors::signing::sha256_hex(
            format!(
                "{:?}{}{:?}",
                std::time::SystemTime::now(),
                std::process::id(),
                opts.data_dir
            )
            .as_bytes(),
        );
        let api = Arc::new(pos_shared::api::ApiState {
            sales: Arc::new(store.clone()),
            stock: stock.clone(),
            loyalty: loyalty.clone(),
            deliveries: deliveries.clone(),
            auth: Arc::new(auth),
            cursors: Arc::new(
                pos_shared::read::CursorCodec::new(cursor_key.into_bytes())
                    .map_err(|e| anyhow::anyhow!(e))?,
            ),
            // A development runner: introspection on, so GraphQL tools can explore the schema (their
            // standard introspection query nests 13 levels deep).
            graphql: pos_shared::api::graphql::GraphqlConfig {
                introspection: true,
                max_depth: pos_shared::api::graphql::INTROSPECTION_DEPTH,
                ..Default::default()
            },
        });
        Ok(Self {
            capture,
            store,
            bus,
            stock,
            loyalty,
            deliveries,
            consumers,
            relay,
            feed: std::sync::Mutex::new(Some(feed)),
            api,
            relay_interval: opts.relay_interval,
            requests: AtomicU64::new(0),
        })
    }

    /// Starts the pipeline's tasks: the publisher on the store's feed (DynamoDB Streams →
    /// `outbox-publisher` on AWS), a poller per consumer queue (the event source mappings) and the relay's
    /// schedule (the sweep). They stop when aborted.
    pub fn start_consumers(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks: Vec<_> = self
            .consumers
            .iter()
            .map(|(q, c)| tokio::spawn(crate::pipeline::poll(q.clone(), c.clone())))
            .collect();
        let feed = self
            .feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(feed) = feed {
            let relay = self.relay.clone();
            tasks.push(tokio::spawn(async move {
                pos_shared::outbox::feed::run(feed, &relay).await;
            }));
        }
        // The schedule of the outbox relay.
        let (relay, every) = (self.relay.clone(), self.relay_interval);
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                // A backlog (the feed drops entries when a burst fills it) goes out page after page
                // now, not one page of 500 per interval (which capped a 100-store day at 50 sales/s).
                if let Err(e) = relay.drain(RELAY_MAX_PAGES).await {
                    tracing::error!(error = %e, "outbox relay run failed");
                }
            }
        }));
        tasks
    }

    /// Messages not yet consumed in any queue (DLQs excluded).
    pub async fn pending_messages(&self) -> Result<usize, pos_shared::store::StoreError> {
        let mut n = 0;
        for q in self.bus.queues() {
            n += q.pending().await?;
        }
        Ok(n)
    }
}

/// The router of the local platform.
pub fn router(platform: Arc<Platform>) -> Router {
    Router::new()
        .route("/webhooks/{vendor}", any(webhook))
        .route("/_local/sales", get(sales))
        .route("/_local/events", get(events))
        .route("/_local/quarantine", get(quarantine))
        .route("/_local/quarantine/reprocess", post(reprocess))
        .route("/_local/outbox", get(outbox))
        .route("/_local/queues", get(queues))
        .route("/_local/queues/{queue}/redrive", post(redrive))
        .route("/_local/queues/{queue}/messages", post(inject))
        .route("/_local/stock", get(stock))
        .route("/_local/loyalty", get(loyalty))
        .route("/_local/loyalty/{member}", get(loyalty_ledger))
        .route("/_local/deliveries", get(deliveries))
        .route("/_local/webhooks/{id}/enable", post(enable_webhook))
        .route(
            "/_local/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(GATEWAY_BODY_LIMIT))
        .with_state(platform.clone())
        .merge(pos_shared::api::routes(platform.api.clone()))
}

/// Serves (HTTP and the queue pollers) until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    platform: Arc<Platform>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let pollers = platform.start_consumers();
    let result = axum::serve(listener, router(platform))
        .with_graceful_shutdown(shutdown)
        .await;
    for p in pollers {
        p.abort();
    }
    result
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

/// Which quarantined delivery to reprocess; an empty body reprocesses every open one.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReprocessRequest {
    vendor: String,
    delivery_key: String,
}

async fn reprocess(State(p): State<Arc<Platform>>, body: Bytes) -> Response {
    use pos_shared::quarantine::{ReportResult, ReprocessReport, Reprocessor};
    let reprocessor = Reprocessor::new(&p.capture, &p.store, &SystemClock);
    if body.iter().all(u8::is_ascii_whitespace) {
        return json_or_503(reprocessor.reprocess_all().await);
    }
    let bad = |detail: String| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": detail })),
        )
            .into_response()
    };
    let req: ReprocessRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("expected {{\"vendor\", \"delivery_key\"}}: {e}")),
    };
    let Some(vendor) = pos_shared::model::Vendor::from_path(&req.vendor) else {
        return bad("unknown vendor".into());
    };
    match reprocessor.reprocess(vendor, &req.delivery_key).await {
        Ok(done) => axum::Json(vec![ReprocessReport {
            vendor,
            delivery_key: req.delivery_key,
            result: ReportResult::Done(done),
        }])
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

async fn outbox(State(p): State<Arc<Platform>>) -> Response {
    json_or_503(p.store.pending_outbox().await)
}

async fn queues(State(p): State<Arc<Platform>>) -> Response {
    let mut views = Vec::new();
    for q in p.bus.queues() {
        match q.view().await {
            Ok(v) => views.push(v),
            Err(e) => return json_or_503::<()>(Err(e)),
        }
    }
    axum::Json(views).into_response()
}

fn unknown_queue(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            json!({"error": format!("no queue {}", name.chars().take(64).collect::<String>())}),
        ),
    )
        .into_response()
}

async fn redrive(State(p): State<Arc<Platform>>, Path(queue): Path<String>) -> Response {
    match p.bus.queue(&queue) {
        Some(q) => match q.redrive().await {
            Ok(n) => axum::Json(json!({"queue": queue, "redriven": n})).into_response(),
            Err(e) => json_or_503::<()>(Err(e)),
        },
        None => unknown_queue(&queue),
    }
}

async fn inject(
    State(p): State<Arc<Platform>>,
    Path(queue): Path<String>,
    body: Bytes,
) -> Response {
    match (p.bus.queue(&queue), String::from_utf8(body.to_vec())) {
        (None, _) => unknown_queue(&queue),
        (Some(_), Err(_)) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "body must be UTF-8"})),
        )
            .into_response(),
        (Some(q), Ok(text)) => match q.send(text).await {
            Ok(id) => (StatusCode::ACCEPTED, axum::Json(json!({"message_id": id}))).into_response(),
            Err(e) => json_or_503::<()>(Err(e)),
        },
    }
}

async fn stock(State(p): State<Arc<Platform>>) -> Response {
    match p.stock.levels() {
        Ok(levels) => axum::Json(
            levels
                .into_iter()
                .map(|(k, on_hand)| {
                    let (store, sku) = k.split_once('#').unwrap_or((k.as_str(), ""));
                    json!({"store_id": store, "sku": sku, "on_hand": on_hand})
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "stock read failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": "store unavailable"})),
            )
                .into_response()
        }
    }
}

async fn loyalty(State(p): State<Arc<Platform>>) -> Response {
    match p.loyalty.balances() {
        Ok(b) => axum::Json(
            b.into_iter()
                .map(|(m, balance)| json!({"member_id": m, "balance": balance}))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "loyalty read failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": "store unavailable"})),
            )
                .into_response()
        }
    }
}

async fn loyalty_ledger(State(p): State<Arc<Platform>>, Path(member): Path<String>) -> Response {
    let Ok(member) = pos_shared::ids::MemberId::parse(member) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "not a member id"})),
        )
            .into_response();
    };
    match p.loyalty.entries(&member).await {
        Ok(entries) => axum::Json(json!({
            "member_id": member,
            "balance": p.loyalty.balance(&member).await.unwrap_or_default(),
            "entries": entries,
        }))
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "loyalty read failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": "store unavailable"})),
            )
                .into_response()
        }
    }
}

/// Per destination, how many ledger entries stand in each status; `delivered_for_sales` counts the
/// delivered ones that belong to a sale (sales, their returns, pending Square sales), not stock alerts.
async fn deliveries(State(p): State<Arc<Platform>>) -> Response {
    use pos_shared::delivery::ledger::DeliveryStatus;
    let entries = match p.deliveries.entries() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "delivery ledger read failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": "store unavailable"})),
            )
                .into_response();
        }
    };
    let mut rows: std::collections::BTreeMap<String, [u64; 5]> = std::collections::BTreeMap::new();
    for e in entries {
        let row = rows.entry(e.destination).or_default();
        let i = match e.status {
            DeliveryStatus::Pending => 0,
            DeliveryStatus::Delivered => 1,
            DeliveryStatus::Retrying => 2,
            DeliveryStatus::Dead => 3,
        };
        row[i] += 1;
        if i == 1 && e.sale_id.is_some() {
            row[4] += 1;
        }
    }
    axum::Json(
        rows.into_iter()
            .map(
                |(destination, [pending, delivered, retrying, dead, for_sales])| {
                    json!({"destination": destination, "pending": pending, "delivered": delivered,
                       "retrying": retrying, "dead": dead, "delivered_for_sales": for_sales})
                },
            )
            .collect::<Vec<_>>(),
    )
    .into_response()
}

/// The subscriptions of the connectors file's `webhooks` section; `None` without a file or a section
/// (webhooks-sync then does not run).
fn webhooks_from_connectors(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<Vec<pos_shared::delivery::webhooks::Subscription>>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let failed =
        |e: &dyn std::fmt::Display| anyhow::anyhow!("connectors file {}: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| failed(&e))?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|_| failed(&"not JSON"))?;
    doc.get("webhooks")
        .map(pos_shared::delivery::webhooks::subscriptions_from_json)
        .transpose()
        .map_err(|e| failed(&e))
}

/// webhooks-sync on `deliveries.redb` (ledger, breakers, endpoint health) and its local queue.
fn webhooks_consumer(
    subscriptions: Vec<pos_shared::delivery::webhooks::Subscription>,
    deliveries: &Arc<EmbeddedDeliveries>,
    queue: &Arc<LocalQueue>,
    store: &EmbeddedStore,
    max_receives: u32,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<Arc<dyn BatchConsumer>> {
    use pos_shared::delivery::{subscriptions, webhooks, webhooks_config};
    let sync = webhooks_config::webhooks_sync(
        Arc::new(subscriptions::StaticSubscriptions(Arc::new(subscriptions))),
        deliveries.clone(),
        queue.clone(),
        Arc::new(store.clone()),
        webhooks_config::WebhooksSettings {
            max_receives,
            disable_after: webhooks::EndpointHealth::DEFAULT_DISABLE_AFTER,
            rate: 20,
        },
        clock.clone(),
        Arc::new(Metrics::new(webhooks_config::FUNCTION, Sink::Off)),
    )?;
    Ok(Arc::new(sync))
}

/// webhooks-sync's local queue as the re-enable's replay target.
struct QueueRequeue(Arc<LocalQueue>);

#[async_trait::async_trait]
impl pos_shared::delivery::webhooks_enable::Requeue for QueueRequeue {
    async fn requeue(&self, body: String) -> Result<(), pos_shared::delivery::sync::QueueError> {
        self.0
            .send(body)
            .await
            .map(|_| ())
            .map_err(|e| pos_shared::delivery::sync::QueueError(e.to_string()))
    }
}

/// The operator's re-enable of a disabled webhook endpoint and the replay of its records
/// ([`pos_shared::delivery::webhooks_enable`]).
async fn enable_webhook(State(p): State<Arc<Platform>>, Path(id): Path<String>) -> Response {
    use pos_shared::delivery::webhooks::EndpointHealth;
    use pos_shared::delivery::webhooks_enable::{EnableError, enable_and_replay};
    let error = |status: StatusCode, detail: String| {
        (status, axum::Json(json!({ "error": detail }))).into_response()
    };
    let Some(queue) = p.bus.queue("webhooks-sync") else {
        return error(
            StatusCode::NOT_FOUND,
            "webhooks-sync is not running (no webhooks section in the connectors file)".into(),
        );
    };
    let health = EndpointHealth::new(p.deliveries.clone(), EndpointHealth::DEFAULT_DISABLE_AFTER);
    let replayed = enable_and_replay(
        &id,
        &health,
        p.deliveries.as_ref(),
        &p.store,
        &QueueRequeue(queue.clone()),
    )
    .await;
    match replayed {
        Ok(report) => axum::Json(report).into_response(),
        Err(EnableError::Id) => error(StatusCode::BAD_REQUEST, EnableError::Id.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "webhook re-enable failed");
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
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
