//! The query API (REST, versioned under `/v1`): sales, stock and loyalty read models and the delivery
//! ledger, behind bearer JWTs.
//!
//! One axum router serves the Lambda (through lambda_http) and `pos-local`. Every error is
//! `application/problem+json` ([`ApiError`], mapped to HTTP in one place); 4xx for the caller's mistakes
//! (bad parameters 400, unknown ids 404, missing/invalid token 401 with `WWW-Authenticate`, missing scope
//! 403), 503 only when a store or the token issuer is unreachable. The OpenAPI 3.1 document is generated
//! from these handlers ([`ApiDoc`]) and served at `/v1/openapi.json`.

pub mod config;
pub mod graphql;
pub mod lambda;
pub mod ops;

use crate::auth::{AuthFailure, Authenticator, Principal};
use crate::delivery::ledger::{DeliveryLedger, DeliveryStatus};
use crate::loyalty::{LedgerEntry, LoyaltyLedger};
use crate::model::Sale;
use crate::read::{CursorCodec, SalesReader};
use crate::stock::StockLedger;
use axum::Json;
pub use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// Scope to read sales.
pub const SALES_READ: &str = "sales:read";
/// Scope to read stock.
pub const STOCK_READ: &str = "stock:read";
/// Scope to read loyalty.
pub const LOYALTY_READ: &str = "loyalty:read";
/// Scope to read the delivery ledger (what reached which destination).
pub const DELIVERIES_READ: &str = "deliveries:read";
/// Largest page.
pub const MAX_PAGE: usize = 100;

/// What the routes read from.
pub struct ApiState {
    /// Sales.
    pub sales: Arc<dyn SalesReader>,
    /// Stock.
    pub stock: Arc<dyn StockLedger>,
    /// Loyalty.
    pub loyalty: Arc<dyn LoyaltyLedger>,
    /// The delivery ledger.
    pub deliveries: Arc<dyn DeliveryLedger>,
    /// Bearer tokens.
    pub auth: Arc<Authenticator>,
    /// Cursors.
    pub cursors: Arc<CursorCodec>,
    /// Limits of `POST /graphql`.
    pub graphql: graphql::GraphqlConfig,
}

/// Every way a request fails; [`IntoResponse`] is the one mapping to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Not authorised.
    #[error(transparent)]
    Auth(#[from] AuthFailure),
    /// A parameter is invalid.
    #[error("invalid parameter {0}: {1}")]
    BadParameter(&'static str, String),
    /// No such resource.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A store failed (the message is logged, never returned).
    #[error("read model unavailable")]
    Unavailable(String),
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// Problem type URI.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong, for the caller.
    pub detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug) = match &self {
            ApiError::Auth(f) => (
                StatusCode::from_u16(f.status()).unwrap_or(StatusCode::UNAUTHORIZED),
                "unauthorized",
            ),
            ApiError::BadParameter(..) => (StatusCode::BAD_REQUEST, "bad-parameter"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            ApiError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily-unavailable")
            }
        };
        if let ApiError::Unavailable(cause) = &self {
            tracing::error!(%cause, "query failed on our side");
        }
        let detail = match &self {
            ApiError::Unavailable(_) => "the data could not be read now; retry later".to_owned(),
            other => other.to_string(),
        };
        let body = Problem {
            kind: format!("urn:pos-platform:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
        };
        let mut resp = (status, Json(body)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let ApiError::Auth(f) = &self
            && f.status() != 503
            && let Ok(v) = HeaderValue::from_str(&f.challenge())
        {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

async fn principal(
    state: &ApiState,
    headers: &HeaderMap,
    scope: &str,
) -> Result<Principal, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let p = state.auth.authenticate(authorization).await?;
    p.require(scope)?;
    Ok(p)
}

/// A path or query string axum could not extract (invalid UTF-8 after percent-decoding, a repeated
/// field): a 400 problem like any other bad parameter, checked after the token so an anonymous caller
/// still gets 401.
fn extracted<T, E: std::fmt::Display>(part: &'static str, r: Result<T, E>) -> Result<T, ApiError> {
    r.map_err(|e| ApiError::BadParameter(part, e.to_string()))
}

/// Health.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// Liveness (no authentication).
#[utoipa::path(get, path = "/v1/health", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// A sale, as captured (amounts in minor units).
#[utoipa::path(get, path = "/v1/sales/{sale_id}", params(("sale_id" = String, Path, description = "Sale id", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:/@-]+$", example = "till-7:4001")),
    responses((status = 200, description = "The sale", body = Object), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = ["sales:read"])))]
async fn get_sale(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Sale>, ApiError> {
    principal(&s, &headers, SALES_READ).await?;
    let Path(sale_id) = extracted("path", path)?;
    ops::sale(&s, &sale_id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("sale"))
}

/// Query of a store's sales.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SalesQuery {
    /// Start (inclusive), RFC 3339.
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// End (exclusive, after `from`), RFC 3339.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// Opaque cursor from the previous page (never empty).
    #[param(min_length = 1)]
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

/// A page of sales.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SalesPageBody {
    /// The sales, ordered by time then id.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Sale>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A `limit` query parameter (absent = the default page).
fn limit_param(v: Option<&str>) -> Result<Option<i64>, ApiError> {
    v.map(|v| {
        v.parse::<i64>().map_err(|_| {
            ApiError::BadParameter("limit", format!("must be between 1 and {MAX_PAGE}"))
        })
    })
    .transpose()
}

/// A store's sales in a time range, paginated.
#[utoipa::path(get, path = "/v1/stores/{store_id}/sales", params(("store_id" = String, Path, description = "Store id", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:/@-]+$", example = "store-001"), SalesQuery),
    responses((status = 200, body = SalesPageBody), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = ["sales:read"])))]
async fn store_sales(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<SalesQuery>, QueryRejection>,
) -> Result<Json<SalesPageBody>, ApiError> {
    principal(&s, &headers, SALES_READ).await?;
    let Path(store_id) = extracted("path", path)?;
    let Query(q) = extracted("query", query)?;
    let limit = limit_param(q.limit.as_deref())?;
    let page = ops::store_sales(
        &s,
        &store_id,
        q.from.as_deref(),
        q.to.as_deref(),
        q.cursor.as_deref(),
        limit,
    )
    .await?;
    Ok(Json(page))
}

/// A stock level.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StockLevelBody {
    /// Store.
    pub store_id: String,
    /// SKU.
    pub sku: String,
    /// Units on hand (negative when more was sold than known).
    pub on_hand: i64,
}

/// On-hand units of a SKU in a store (0 when never moved).
// The sku pattern is what `Sku::parse` accepts, in ECMA-262: no control character (C0, DEL, C1) anywhere,
// no Unicode White_Space at either end.
#[utoipa::path(get, path = "/v1/stores/{store_id}/stock/{sku}", params(("store_id" = String, Path, description = "Store id", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:/@-]+$", example = "store-001"),
        ("sku" = String, Path, description = "SKU: the merchant's free text, percent-encoded in the path (no control characters, no whitespace at either end)", min_length = 1, max_length = 255, pattern = r"^[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]([^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000])?$", example = "CAP#NAVY+1")),
    responses((status = 200, body = StockLevelBody), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = ["stock:read"])))]
async fn stock_level(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<StockLevelBody>, ApiError> {
    principal(&s, &headers, STOCK_READ).await?;
    let Path((store_id, sku)) = extracted("path", path)?;
    Ok(Json(ops::stock_level(&s, &store_id, &sku).await?))
}

/// Query of a store's stock.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StockQuery {
    /// Opaque cursor from the previous page (never empty).
    #[param(min_length = 1)]
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

/// A page of stock levels.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StockPageBody {
    /// Levels in SKU order.
    pub items: Vec<StockLevelBody>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A store's stock levels in SKU order, paginated.
#[utoipa::path(get, path = "/v1/stores/{store_id}/stock", params(("store_id" = String, Path, description = "Store id", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:/@-]+$", example = "store-001"), StockQuery),
    responses((status = 200, body = StockPageBody), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = ["stock:read"])))]
async fn store_stock(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<StockQuery>, QueryRejection>,
) -> Result<Json<StockPageBody>, ApiError> {
    principal(&s, &headers, STOCK_READ).await?;
    let Path(store_id) = extracted("path", path)?;
    let Query(q) = extracted("query", query)?;
    let limit = limit_param(q.limit.as_deref())?;
    Ok(Json(
        ops::store_stock(&s, &store_id, q.cursor.as_deref(), limit).await?,
    ))
}

/// A member's balance.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LoyaltyBody {
    /// Member.
    pub member_id: String,
    /// Points.
    pub balance: i64,
}

/// A member's points balance.
#[utoipa::path(get, path = "/v1/members/{member_id}/loyalty", params(("member_id" = String, Path, description = "Member id", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:/@-]+$", example = "member-42")),
    responses((status = 200, body = LoyaltyBody), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = ["loyalty:read"])))]
async fn loyalty_balance(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<LoyaltyBody>, ApiError> {
    principal(&s, &headers, LOYALTY_READ).await?;
    let Path(member_id) = extracted("path", path)?;
    Ok(Json(ops::loyalty_balance(&s, &member_id).await?))
}

/// A page of a member's ledger.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LedgerBody {
    /// Member.
    pub member_id: String,
    /// Entries in event-id order (each has its `occurred_at`).
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<LedgerEntry>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Query of a member's ledger.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LedgerQuery {
    /// Opaque cursor from the previous page (never empty).
    #[param(min_length = 1)]
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

/// A member's points ledger (one entry per sale and per return) in event-id order, paginated.
#[utoipa::path(get, path = "/v1/members/{member_id}/loyalty/ledger", params(("member_id" = String, Path, description = "Member id", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:/@-]+$", example = "member-42"), LedgerQuery),
    responses((status = 200, body = LedgerBody), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = ["loyalty:read"])))]
async fn loyalty_ledger(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<LedgerQuery>, QueryRejection>,
) -> Result<Json<LedgerBody>, ApiError> {
    principal(&s, &headers, LOYALTY_READ).await?;
    let Path(member_id) = extracted("path", path)?;
    let Query(q) = extracted("query", query)?;
    let limit = limit_param(q.limit.as_deref())?;
    Ok(Json(
        ops::loyalty_ledger(&s, &member_id, q.cursor.as_deref(), limit).await?,
    ))
}

/// One delivery of an event of the sale to one destination.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryBody {
    /// The event delivered (the sale, or one of its returns).
    pub event_id: String,
    /// Destination (`commercetools`, `dynamics`, `webhooks:{subscription}`).
    pub destination: String,
    /// Where the delivery stands.
    pub status: DeliveryStatus,
    /// Attempts so far.
    pub attempts: u32,
    /// The destination's id of what was created (order id, journal id), once known.
    pub remote_id: Option<String>,
    /// The destination's version or ETag of it, once known.
    pub remote_version: Option<String>,
    /// The last failure: our classification and the destination's status and error code only (never
    /// bodies, tokens or customer data).
    pub last_error: Option<String>,
    /// Last change, RFC 3339.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// A sale's deliveries.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveriesBody {
    /// The sale.
    pub sale_id: String,
    /// Its events' deliveries, by destination then event id (empty while none was attempted).
    pub deliveries: Vec<DeliveryBody>,
}

/// The proof of delivery of a sale: per event (the sale and its returns) and destination, the status,
/// attempts, the destination's id and version, and the last error. 404 when the sale is unknown.
#[utoipa::path(get, path = "/v1/sales/{sale_id}/deliveries", params(("sale_id" = String, Path, description = "Sale id", min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:/@-]+$", example = "till-7:4001")),
    responses((status = 200, body = DeliveriesBody), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = ["deliveries:read"])))]
async fn sale_deliveries(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<DeliveriesBody>, ApiError> {
    principal(&s, &headers, DELIVERIES_READ).await?;
    let Path(sale_id) = extracted("path", path)?;
    ops::sale_deliveries(&s, &sale_id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("sale"))
}

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Documents errors as they are served: every `Problem` body under `application/problem+json` (the
/// media type [`ApiError`]'s `into_response` sets), and on every authenticated operation the 503 answered
/// when the token issuer's keys or a store cannot be read.
struct ProblemResponses;

impl utoipa::Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
        const JSON: &str = "application/json";
        const PROBLEM_JSON: &str = "application/problem+json";
        let problem = Ref::from_schema_name("Problem");
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for op in operations.into_iter().flatten() {
                for resp in op.responses.responses.values_mut() {
                    let RefOr::T(resp) = resp else { continue };
                    let is_problem = resp.content.get(JSON).is_some_and(|c| {
                        matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location == problem.ref_location)
                    });
                    if is_problem && let Some(c) = resp.content.shift_remove(JSON) {
                        resp.content.insert(PROBLEM_JSON.to_owned(), c);
                    }
                }
                if op.security.is_some() {
                    op.responses
                        .responses
                        .entry("503".to_owned())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description("Token issuer or read model unavailable; retry later")
                                .content(PROBLEM_JSON, Content::new(Some(problem.clone())))
                                .build()
                                .into()
                        });
                }
            }
        }
    }
}

/// The OpenAPI document of the query API.
#[derive(OpenApi)]
#[openapi(
    info(title = "POS platform query API", version = "1"),
    paths(health, get_sale, sale_deliveries, store_sales, stock_level, store_stock, loyalty_balance, loyalty_ledger),
    components(schemas(Problem, Health, SalesPageBody, StockLevelBody, StockPageBody, LoyaltyBody, LedgerBody, DeliveriesBody, DeliveryBody, DeliveryStatus)),
    modifiers(&BearerScheme, &ProblemResponses)
)]
pub struct ApiDoc;

/// The OpenAPI document as pretty JSON (what `/v1/openapi.json` serves and `docs/openapi.json` holds).
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default() + "\n"
}

async fn openapi() -> Response {
    let mut resp = openapi_json().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A 415 problem naming the media type the route accepts.
pub(crate) fn unsupported_media_type(expected: &str) -> Response {
    let status = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    let body = Problem {
        kind: "urn:pos-platform:problem:unsupported-media-type".to_owned(),
        title: "Unsupported Media Type".to_owned(),
        status: status.as_u16(),
        detail: format!("the body must be {expected}"),
    };
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

/// The router with a problem+json 404 for unknown paths (what the query-api function serves).
pub fn router(state: Arc<ApiState>) -> Router {
    routes(state).fallback(not_found)
}

/// The routes alone, to merge into a router that has its own fallback (`pos-local`).
pub fn routes(state: Arc<ApiState>) -> Router {
    let graphql = Arc::new(graphql::GraphqlState {
        schema: graphql::schema(state.clone(), &state.graphql),
        api: state.clone(),
    });
    let graphql_routes = Router::new()
        .route("/graphql", axum::routing::post(graphql::handler))
        .with_state(graphql);
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/sales/{sale_id}", get(get_sale))
        .route("/v1/sales/{sale_id}/deliveries", get(sale_deliveries))
        .route("/v1/stores/{store_id}/sales", get(store_sales))
        .route("/v1/stores/{store_id}/stock/{sku}", get(stock_level))
        .route("/v1/stores/{store_id}/stock", get(store_stock))
        .route("/v1/members/{member_id}/loyalty", get(loyalty_balance))
        .route(
            "/v1/members/{member_id}/loyalty/ledger",
            get(loyalty_ledger),
        )
        .with_state(state)
        .merge(graphql_routes)
}

#[cfg(test)]
mod tests;
