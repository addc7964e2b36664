//! GraphQL at `POST /graphql` (async-graphql) over the same read models and operations as REST.
//!
//! - The bearer token is checked before the query runs (401 / 503 as problem+json, like REST); each
//!   field then requires its scope (`sales:read`, `stock:read`, `loyalty:read`, `deliveries:read`), so
//!   one query may get the fields it is allowed and a `FORBIDDEN` error for the others.
//! - Query depth and complexity are limited ([`GraphqlConfig`]); list fields cost their page size times
//!   their items, so a wide query is refused before it reads anything (a sale's `deliveries` are not
//!   paged: one per event and destination, a handful). Introspection is off unless the configuration
//!   enables it.
//! - Errors carry `extensions.code`: `BAD_USER_INPUT` (the REST 400), `FORBIDDEN` (403), `UNAVAILABLE`
//!   (503; the cause is logged, never returned). Unknown ids resolve to `null`, not an error.
//! - HTTP status: 200 when the query was executed (even with field errors, as GraphQL over HTTP has it);
//!   400 when it was refused as a whole (syntax, validation, depth, complexity, a body that is not a
//!   GraphQL request); 415 for a body that is not JSON.

use super::{ApiError, ApiState, DELIVERIES_READ, LOYALTY_READ, SALES_READ, STOCK_READ, ops};
use crate::auth::Principal;
use crate::model::{Sale, SaleLine};
use crate::money::Money;
use async_graphql::{
    Context, EmptyMutation, EmptySubscription, ErrorExtensions, Object, Schema, SimpleObject,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Limits of the GraphQL endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphqlConfig {
    /// Deepest selection nesting accepted.
    pub max_depth: usize,
    /// Highest query cost accepted (a field costs 1; a page costs its size times its items' cost).
    pub max_complexity: usize,
    /// Whether `__schema` / `__type` introspection is served (off in production by default).
    pub introspection: bool,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        Self {
            max_depth: 8,
            max_complexity: 2_000,
            introspection: false,
        }
    }
}

/// Depth the standard introspection query of GraphQL tools needs (GraphiQL, graphql-core,
/// schemathesis): a configuration that enables introspection should allow at least this.
pub const INTROSPECTION_DEPTH: usize = 15;

/// The schema type.
pub type ApiSchema = Schema<QueryRoot, EmptyMutation, EmptySubscription>;

/// Builds the schema over `state`.
pub fn schema(state: Arc<ApiState>, config: &GraphqlConfig) -> ApiSchema {
    let mut builder = Schema::build(QueryRoot, EmptyMutation, EmptySubscription)
        .data(state)
        .limit_depth(config.max_depth)
        .limit_complexity(config.max_complexity);
    if !config.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The schema in SDL (documentation, drift test).
pub fn sdl() -> String {
    Schema::build(QueryRoot, EmptyMutation, EmptySubscription)
        .finish()
        .sdl()
}

fn gql_error(e: ApiError) -> async_graphql::Error {
    let code = match &e {
        ApiError::Auth(f) if f.status() == 403 => "FORBIDDEN",
        ApiError::Auth(f) if f.status() == 503 => "UNAVAILABLE",
        ApiError::Auth(_) => "UNAUTHENTICATED",
        ApiError::BadParameter(..) => "BAD_USER_INPUT",
        ApiError::NotFound(_) => "NOT_FOUND",
        ApiError::Unavailable(cause) => {
            tracing::error!(%cause, "graphql read failed on our side");
            "UNAVAILABLE"
        }
    };
    let message = match &e {
        ApiError::Unavailable(_) => "the data could not be read now; retry later".to_owned(),
        other => other.to_string(),
    };
    async_graphql::Error::new(message).extend_with(|_, ext| ext.set("code", code))
}

/// The state, once the caller holds `scope`.
fn authorised<'a>(ctx: &Context<'a>, scope: &str) -> async_graphql::Result<&'a Arc<ApiState>> {
    let principal = ctx
        .data::<Principal>()
        .map_err(|_| gql_error(ApiError::Auth(crate::auth::AuthFailure::MissingToken)))?;
    principal
        .require(scope)
        .map_err(|f| gql_error(ApiError::Auth(f)))?;
    ctx.data::<Arc<ApiState>>()
        .map_err(|_| gql_error(ApiError::Unavailable("schema built without state".into())))
}

/// An amount of money.
#[derive(SimpleObject)]
#[graphql(name = "Money")]
pub struct MoneyObject {
    /// Minor units (cents), a 64-bit integer.
    minor: i64,
    /// ISO 4217 code.
    currency: String,
    /// Decimal amount with the currency's exponent, e.g. `"12.50"`.
    amount: String,
}

impl From<Money> for MoneyObject {
    fn from(m: Money) -> Self {
        let text = m.to_string();
        let amount = text.split(' ').next().unwrap_or_default().to_owned();
        Self {
            minor: m.minor,
            currency: m.currency.code().to_owned(),
            amount,
        }
    }
}

/// A line of a sale.
pub struct SaleLineObject(SaleLine);

#[Object(name = "SaleLine")]
impl SaleLineObject {
    /// The vendor's line id.
    async fn line_id(&self) -> &str {
        &self.0.line_id
    }
    /// SKU, when the vendor sent one.
    async fn sku(&self) -> Option<String> {
        self.0.sku.as_ref().map(ToString::to_string)
    }
    /// Units sold.
    async fn quantity(&self) -> u32 {
        self.0.quantity.get()
    }
    /// Price of one unit.
    async fn unit_price(&self) -> MoneyObject {
        self.0.unit_price.into()
    }
    /// Discount on the line.
    async fn discount(&self) -> MoneyObject {
        self.0.discount.into()
    }
}

/// A captured sale.
pub struct SaleObject(Sale);

#[Object(name = "Sale")]
impl SaleObject {
    /// Our id of the sale.
    async fn sale_id(&self) -> String {
        self.0.sale_id.to_string()
    }
    /// The store.
    async fn store_id(&self) -> String {
        self.0.store_id.to_string()
    }
    /// When it happened (RFC 3339, UTC).
    async fn occurred_at(&self) -> String {
        self.0.occurred_at.to_rfc3339()
    }
    /// The POS vendor it came from.
    async fn vendor(&self) -> String {
        self.0.source.vendor.to_string()
    }
    /// The vendor's id of the sale.
    async fn external_id(&self) -> &str {
        &self.0.source.external_id
    }
    /// The loyalty member, if any.
    async fn member_id(&self) -> Option<String> {
        self.0.member_id.as_ref().map(ToString::to_string)
    }
    /// ISO 4217 code.
    async fn currency(&self) -> String {
        self.0.currency.code().to_owned()
    }
    /// Total paid.
    async fn total(&self) -> MoneyObject {
        self.0.total.into()
    }
    /// Tax included in the total.
    async fn tax(&self) -> MoneyObject {
        self.0.tax.into()
    }
    /// The lines.
    async fn lines(&self) -> Vec<SaleLineObject> {
        self.0.lines.iter().cloned().map(SaleLineObject).collect()
    }
}

/// A page of sales.
#[derive(SimpleObject)]
pub struct SalePage {
    /// Sales by time, then id.
    items: Vec<SaleObject>,
    /// Pass as `after` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// Units of a SKU on hand in a store.
#[derive(SimpleObject)]
pub struct StockLevel {
    /// Store.
    store_id: String,
    /// SKU.
    sku: String,
    /// Units on hand (negative when more was sold than known).
    on_hand: i64,
}

/// A page of stock levels.
#[derive(SimpleObject)]
pub struct StockPage {
    /// Levels in SKU order.
    items: Vec<StockLevel>,
    /// Pass as `after` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// One points movement.
#[derive(SimpleObject)]
pub struct LedgerEntry {
    /// The event that caused it.
    event_id: String,
    /// `earn` or `reverse`.
    kind: String,
    /// Points applied to the balance (negative for reversals).
    points: i64,
    /// Points a reversal could not take back (balance clamped at zero).
    unrecovered: i64,
    /// The sale concerned.
    sale_id: Option<String>,
    /// When it happened (RFC 3339, UTC).
    occurred_at: String,
}

/// A page of a member's ledger.
#[derive(SimpleObject)]
pub struct LedgerPage {
    /// Entries in event-id order.
    items: Vec<LedgerEntry>,
    /// Pass as `after` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// One delivery of an event of a sale to one destination.
#[derive(SimpleObject)]
pub struct Delivery {
    /// The event delivered (the sale, or one of its returns).
    event_id: String,
    /// Destination (`commercetools`, `dynamics`, `webhooks:{subscription}`).
    destination: String,
    /// `pending`, `delivered`, `retrying` or `dead`.
    status: String,
    /// Attempts so far.
    attempts: u32,
    /// The destination's id of what was created, once known.
    remote_id: Option<String>,
    /// The destination's version or ETag of it, once known.
    remote_version: Option<String>,
    /// The last failure: our classification and the destination's status and error code only.
    last_error: Option<String>,
    /// Last change (RFC 3339, UTC).
    updated_at: String,
}

/// A loyalty member.
pub struct Member(String);

/// A loyalty member.
#[Object]
impl Member {
    /// The member id.
    async fn member_id(&self) -> &str {
        &self.0
    }
    /// Points balance.
    async fn balance(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        let s = authorised(ctx, LOYALTY_READ)?;
        Ok(ops::loyalty_balance(s, &self.0)
            .await
            .map_err(gql_error)?
            .balance)
    }
    /// Points ledger in event-id order, `first` per page (1 to 100, default 50), after the cursor of
    /// the previous page.
    #[graphql(complexity = "first.unwrap_or(50).clamp(1, 100) as usize * child_complexity")]
    async fn ledger(
        &self,
        ctx: &Context<'_>,
        first: Option<i64>,
        after: Option<String>,
    ) -> async_graphql::Result<LedgerPage> {
        let s = authorised(ctx, LOYALTY_READ)?;
        let body = ops::loyalty_ledger(s, &self.0, after.as_deref(), first)
            .await
            .map_err(gql_error)?;
        Ok(LedgerPage {
            items: body
                .entries
                .into_iter()
                .map(|e| LedgerEntry {
                    event_id: e.event_id.to_string(),
                    kind: serde_json::to_value(e.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    points: e.points,
                    unrecovered: e.unrecovered,
                    sale_id: e.sale_id.map(|s| s.to_string()),
                    occurred_at: e.occurred_at.to_rfc3339(),
                })
                .collect(),
            next_cursor: body.next_cursor,
        })
    }
}

/// The queries.
pub struct QueryRoot;

/// Read access to sales, stock, loyalty and deliveries.
#[Object]
impl QueryRoot {
    /// A sale by id; null when unknown. Needs `sales:read`.
    async fn sale(
        &self,
        ctx: &Context<'_>,
        sale_id: String,
    ) -> async_graphql::Result<Option<SaleObject>> {
        let s = authorised(ctx, SALES_READ)?;
        Ok(ops::sale(s, &sale_id)
            .await
            .map_err(gql_error)?
            .map(SaleObject))
    }

    /// A store's sales with `from <= occurredAt < to` (RFC 3339), `first` per page (1 to 100, default 50),
    /// after the cursor of the previous page. Needs `sales:read`.
    #[graphql(complexity = "first.unwrap_or(50).clamp(1, 100) as usize * child_complexity")]
    async fn store_sales(
        &self,
        ctx: &Context<'_>,
        store_id: String,
        from: Option<String>,
        to: Option<String>,
        first: Option<i64>,
        after: Option<String>,
    ) -> async_graphql::Result<SalePage> {
        let s = authorised(ctx, SALES_READ)?;
        let page = ops::store_sales(
            s,
            &store_id,
            from.as_deref(),
            to.as_deref(),
            after.as_deref(),
            first,
        )
        .await
        .map_err(gql_error)?;
        Ok(SalePage {
            items: page.items.into_iter().map(SaleObject).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// Units of `sku` on hand in a store (0 when it never moved). Needs `stock:read`.
    async fn stock_level(
        &self,
        ctx: &Context<'_>,
        store_id: String,
        sku: String,
    ) -> async_graphql::Result<StockLevel> {
        let s = authorised(ctx, STOCK_READ)?;
        let b = ops::stock_level(s, &store_id, &sku)
            .await
            .map_err(gql_error)?;
        Ok(StockLevel {
            store_id: b.store_id,
            sku: b.sku,
            on_hand: b.on_hand,
        })
    }

    /// A store's stock levels in SKU order, `first` per page (1 to 100, default 50). Needs `stock:read`.
    #[graphql(complexity = "first.unwrap_or(50).clamp(1, 100) as usize * child_complexity")]
    async fn store_stock(
        &self,
        ctx: &Context<'_>,
        store_id: String,
        first: Option<i64>,
        after: Option<String>,
    ) -> async_graphql::Result<StockPage> {
        let s = authorised(ctx, STOCK_READ)?;
        let page = ops::store_stock(s, &store_id, after.as_deref(), first)
            .await
            .map_err(gql_error)?;
        Ok(StockPage {
            items: page
                .items
                .into_iter()
                .map(|b| StockLevel {
                    store_id: b.store_id,
                    sku: b.sku,
                    on_hand: b.on_hand,
                })
                .collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// A sale's deliveries by destination then event id (empty while none was attempted); null when the
    /// sale is unknown. Needs `deliveries:read`.
    async fn deliveries(
        &self,
        ctx: &Context<'_>,
        sale_id: String,
    ) -> async_graphql::Result<Option<Vec<Delivery>>> {
        let s = authorised(ctx, DELIVERIES_READ)?;
        let Some(body) = ops::sale_deliveries(s, &sale_id).await.map_err(gql_error)? else {
            return Ok(None);
        };
        Ok(Some(
            body.deliveries
                .into_iter()
                .map(|d| Delivery {
                    event_id: d.event_id,
                    destination: d.destination,
                    status: serde_json::to_value(d.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    attempts: d.attempts,
                    remote_id: d.remote_id,
                    remote_version: d.remote_version,
                    last_error: d.last_error,
                    updated_at: d.updated_at.to_rfc3339(),
                })
                .collect(),
        ))
    }

    /// A loyalty member (its fields need `loyalty:read`).
    async fn member(&self, ctx: &Context<'_>, member_id: String) -> async_graphql::Result<Member> {
        authorised(ctx, LOYALTY_READ)?;
        let member = crate::ids::MemberId::parse(member_id)
            .map_err(|e| gql_error(ApiError::BadParameter("member_id", e.to_string())))?;
        Ok(Member(member.to_string()))
    }
}

/// What the `/graphql` route holds.
pub struct GraphqlState {
    /// Read models and authentication.
    pub api: Arc<ApiState>,
    /// The schema.
    pub schema: ApiSchema,
}

/// `POST /graphql`.
pub async fn handler(
    State(g): State<Arc<GraphqlState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match g.api.auth.authenticate(authorization).await {
        Ok(p) => p,
        Err(f) => return ApiError::Auth(f).into_response(),
    };
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return super::unsupported_media_type("application/json");
    }
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::BadParameter("body", format!("not a GraphQL request: {e}"))
                .into_response();
        }
    };
    if request.query.trim().is_empty() {
        return ApiError::BadParameter("query", "a GraphQL query is required".into())
            .into_response();
    }
    let response = g.schema.execute(request.data(principal)).await;
    // Errors without a path refused the request as a whole (parse, validation, limits).
    let refused = !response.errors.is_empty() && response.errors.iter().all(|e| e.path.is_empty());
    let status = if refused {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut resp = (status, axum::Json(response)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
pub(crate) mod tests;
