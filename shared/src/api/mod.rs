//! The query API (REST, versioned under `/v1`): sales, stock and loyalty read models behind bearer JWTs.
//!
//! One axum router serves the Lambda (through lambda_http) and `pos-local`. Every error is
//! `application/problem+json` ([`ApiError`], mapped to HTTP in one place); 4xx for the caller's mistakes
//! (bad parameters 400, unknown ids 404, missing/invalid token 401 with `WWW-Authenticate`, missing scope
//! 403), 503 only when a store or the token issuer is unreachable. The OpenAPI 3.1 document is generated
//! from these handlers ([`ApiDoc`]) and served at `/v1/openapi.json`.

use crate::auth::{AuthFailure, Authenticator, Principal};
use crate::ids::{MemberId, SaleId, Sku, StoreId};
use crate::loyalty::{LedgerEntry, LoyaltyLedger};
use crate::model::Sale;
use crate::read::{CursorCodec, SalesReader, store_sales_query};
use crate::stock::StockLedger;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// Scope to read sales.
pub const SALES_READ: &str = "sales:read";
/// Scope to read stock.
pub const STOCK_READ: &str = "stock:read";
/// Scope to read loyalty.
pub const LOYALTY_READ: &str = "loyalty:read";
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
    /// Bearer tokens.
    pub auth: Arc<Authenticator>,
    /// Cursors.
    pub cursors: Arc<CursorCodec>,
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

fn parse<T, E: std::fmt::Display>(name: &'static str, r: Result<T, E>) -> Result<T, ApiError> {
    r.map_err(|e| ApiError::BadParameter(name, e.to_string()))
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
#[utoipa::path(get, path = "/v1/sales/{sale_id}", params(("sale_id" = String, Path, description = "Sale id")),
    responses((status = 200, description = "The sale", body = Object), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = ["sales:read"])))]
async fn get_sale(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(sale_id): Path<String>,
) -> Result<Json<Sale>, ApiError> {
    principal(&s, &headers, SALES_READ).await?;
    let id = parse("sale_id", SaleId::parse(sale_id))?;
    let sale = s
        .sales
        .sale(&id)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    sale.map(Json).ok_or(ApiError::NotFound("sale"))
}

/// Query of a store's sales.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SalesQuery {
    /// Start (inclusive), RFC 3339.
    pub from: Option<String>,
    /// End (exclusive), RFC 3339.
    pub to: Option<String>,
    /// Opaque cursor from the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 50).
    pub limit: Option<usize>,
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

fn time_param(
    name: &'static str,
    v: Option<&str>,
    default: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    match v {
        None => Ok(default),
        Some(t) => parse(name, DateTime::parse_from_rfc3339(t)).map(|t| t.with_timezone(&Utc)),
    }
}

/// A store's sales in a time range, paginated.
#[utoipa::path(get, path = "/v1/stores/{store_id}/sales", params(("store_id" = String, Path, description = "Store id"), SalesQuery),
    responses((status = 200, body = SalesPageBody), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = ["sales:read"])))]
async fn store_sales(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(store_id): Path<String>,
    Query(q): Query<SalesQuery>,
) -> Result<Json<SalesPageBody>, ApiError> {
    principal(&s, &headers, SALES_READ).await?;
    let store = parse("store_id", StoreId::parse(store_id))?;
    let from = time_param("from", q.from.as_deref(), DateTime::<Utc>::UNIX_EPOCH)?;
    let to = time_param("to", q.to.as_deref(), DateTime::<Utc>::MAX_UTC)?;
    if from >= to {
        return Err(ApiError::BadParameter("to", "must be after from".into()));
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadParameter(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    let query = store_sales_query(&store, from, to);
    let after = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(parse("cursor", s.cursors.decode(c, &query))?),
    };
    let page = s
        .sales
        .store_sales(&store, from, to, after.as_ref(), limit)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(SalesPageBody {
        items: page.sales,
        next_cursor: page.next.map(|p| s.cursors.encode(&p, &query)),
    }))
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
#[utoipa::path(get, path = "/v1/stores/{store_id}/stock/{sku}", params(("store_id" = String, Path), ("sku" = String, Path)),
    responses((status = 200, body = StockLevelBody), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = ["stock:read"])))]
async fn stock_level(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path((store_id, sku)): Path<(String, String)>,
) -> Result<Json<StockLevelBody>, ApiError> {
    principal(&s, &headers, STOCK_READ).await?;
    let store = parse("store_id", StoreId::parse(store_id))?;
    let sku = parse("sku", Sku::parse(sku))?;
    let on_hand = s
        .stock
        .on_hand(&store, &sku)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(StockLevelBody {
        store_id: store.to_string(),
        sku: sku.to_string(),
        on_hand,
    }))
}

/// Query of a store's stock.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StockQuery {
    /// Opaque cursor from the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (default 50).
    pub limit: Option<usize>,
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
#[utoipa::path(get, path = "/v1/stores/{store_id}/stock", params(("store_id" = String, Path), StockQuery),
    responses((status = 200, body = StockPageBody), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = ["stock:read"])))]
async fn store_stock(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(store_id): Path<String>,
    Query(q): Query<StockQuery>,
) -> Result<Json<StockPageBody>, ApiError> {
    principal(&s, &headers, STOCK_READ).await?;
    let store = parse("store_id", StoreId::parse(store_id))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadParameter(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    let query = format!("store-stock\n{store}");
    let after = match q.cursor.as_deref() {
        None => None,
        Some(c) => {
            let p = parse("cursor", s.cursors.decode(c, &query))?;
            Some(parse("cursor", Sku::parse(p.key))?)
        }
    };
    let (levels, next) = s
        .stock
        .store_levels(&store, after.as_ref(), limit)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(StockPageBody {
        items: levels
            .into_iter()
            .map(|(sku, on_hand)| StockLevelBody {
                store_id: store.to_string(),
                sku: sku.to_string(),
                on_hand,
            })
            .collect(),
        next_cursor: next.map(|sku| {
            let p = crate::read::Position {
                occurred_at: DateTime::<Utc>::UNIX_EPOCH,
                key: sku.to_string(),
            };
            s.cursors.encode(&p, &query)
        }),
    }))
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
#[utoipa::path(get, path = "/v1/members/{member_id}/loyalty", params(("member_id" = String, Path)),
    responses((status = 200, body = LoyaltyBody), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = ["loyalty:read"])))]
async fn loyalty_balance(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(member_id): Path<String>,
) -> Result<Json<LoyaltyBody>, ApiError> {
    principal(&s, &headers, LOYALTY_READ).await?;
    let member = parse("member_id", MemberId::parse(member_id))?;
    let balance = s
        .loyalty
        .balance(&member)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(LoyaltyBody {
        member_id: member.to_string(),
        balance,
    }))
}

/// A member's ledger.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LedgerBody {
    /// Member.
    pub member_id: String,
    /// Entries, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<LedgerEntry>,
}

/// A member's points ledger (one entry per sale and per return).
#[utoipa::path(get, path = "/v1/members/{member_id}/loyalty/ledger", params(("member_id" = String, Path)),
    responses((status = 200, body = LedgerBody), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = ["loyalty:read"])))]
async fn loyalty_ledger(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(member_id): Path<String>,
) -> Result<Json<LedgerBody>, ApiError> {
    principal(&s, &headers, LOYALTY_READ).await?;
    let member = parse("member_id", MemberId::parse(member_id))?;
    let entries = s
        .loyalty
        .entries(&member)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(LedgerBody {
        member_id: member.to_string(),
        entries,
    }))
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

/// The OpenAPI document of the query API.
#[derive(OpenApi)]
#[openapi(
    info(title = "POS platform query API", version = "1"),
    paths(health, get_sale, store_sales, stock_level, store_stock, loyalty_balance, loyalty_ledger),
    components(schemas(Problem, Health, SalesPageBody, StockLevelBody, StockPageBody, LoyaltyBody, LedgerBody)),
    modifiers(&BearerScheme)
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

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

/// The router with a problem+json 404 for unknown paths (what the query-api function serves).
pub fn router(state: Arc<ApiState>) -> Router {
    routes(state).fallback(not_found)
}

/// The routes alone, to merge into a router that has its own fallback (`pos-local`).
pub fn routes(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/sales/{sale_id}", get(get_sale))
        .route("/v1/stores/{store_id}/sales", get(store_sales))
        .route("/v1/stores/{store_id}/stock/{sku}", get(stock_level))
        .route("/v1/stores/{store_id}/stock", get(store_stock))
        .route("/v1/members/{member_id}/loyalty", get(loyalty_balance))
        .route(
            "/v1/members/{member_id}/loyalty/ledger",
            get(loyalty_ledger),
        )
        .with_state(state)
}
