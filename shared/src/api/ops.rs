//! The read operations behind both faces of the query API (REST handlers and GraphQL resolvers): parse
//! the caller's parameters, read the model, build the page. One implementation, so a parameter that is
//! a 400 over REST is a `BAD_USER_INPUT` over GraphQL and cursors work the same in both.
//!
//! Authentication and scopes are checked by the caller (the REST extractor or the GraphQL guard).

use super::{
    ApiError, ApiState, DeliveriesBody, DeliveryBody, LedgerBody, LoyaltyBody, MAX_PAGE,
    SalesPageBody, StockLevelBody, StockPageBody,
};
use crate::ids::{EventId, MemberId, SaleId, Sku, StoreId};
use crate::model::Sale;
use crate::read::{Position, store_sales_query};
use chrono::{DateTime, Utc};

/// Page size when the caller gives none.
pub const DEFAULT_PAGE: usize = 50;

fn parse<T, E: std::fmt::Display>(name: &'static str, r: Result<T, E>) -> Result<T, ApiError> {
    r.map_err(|e| ApiError::BadParameter(name, e.to_string()))
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

/// A page size within `1..=MAX_PAGE`.
pub fn page_size(limit: Option<i64>) -> Result<usize, ApiError> {
    let n = limit.unwrap_or(DEFAULT_PAGE as i64);
    match usize::try_from(n) {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        _ => Err(ApiError::BadParameter(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        )),
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(e.to_string())
}

/// A sale by id (`None` when unknown).
pub async fn sale(s: &ApiState, sale_id: &str) -> Result<Option<Sale>, ApiError> {
    let id = parse("sale_id", SaleId::parse(sale_id))?;
    s.sales.sale(&id).await.map_err(unavailable)
}

/// A sale's deliveries (`None` when the sale is unknown, as for the sale itself). The sales read model
/// is asked only when the ledger has nothing: a known sale not yet delivered anywhere has an empty list.
pub async fn sale_deliveries(
    s: &ApiState,
    sale_id: &str,
) -> Result<Option<DeliveriesBody>, ApiError> {
    let id = parse("sale_id", SaleId::parse(sale_id))?;
    let entries = s.deliveries.for_sale(&id).await.map_err(unavailable)?;
    if entries.is_empty() && s.sales.sale(&id).await.map_err(unavailable)?.is_none() {
        return Ok(None);
    }
    Ok(Some(DeliveriesBody {
        sale_id: id.to_string(),
        // The compare-and-set `version` stays inside: it is the ledger's, not the caller's.
        deliveries: entries
            .into_iter()
            .map(|e| DeliveryBody {
                event_id: e.event_id.to_string(),
                destination: e.destination,
                status: e.status,
                attempts: e.attempts,
                remote_id: e.remote_id,
                remote_version: e.remote_version,
                last_error: e.last_error,
                updated_at: e.updated_at,
            })
            .collect(),
    }))
}

/// A page of a store's sales with `from <= occurred_at < to`, after `cursor`.
pub async fn store_sales(
    s: &ApiState,
    store_id: &str,
    from: Option<&str>,
    to: Option<&str>,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<SalesPageBody, ApiError> {
    let store = parse("store_id", StoreId::parse(store_id))?;
    let from = time_param("from", from, DateTime::<Utc>::UNIX_EPOCH)?;
    let to = time_param("to", to, DateTime::<Utc>::MAX_UTC)?;
    if from >= to {
        return Err(ApiError::BadParameter("to", "must be after from".into()));
    }
    let limit = page_size(limit)?;
    let query = store_sales_query(&store, from, to);
    let after = match cursor {
        None => None,
        Some(c) => Some(parse("cursor", s.cursors.decode(c, &query))?),
    };
    let page = s
        .sales
        .store_sales(&store, from, to, after.as_ref(), limit)
        .await
        .map_err(unavailable)?;
    Ok(SalesPageBody {
        items: page.sales,
        next_cursor: page.next.map(|p| s.cursors.encode(&p, &query)),
    })
}

/// On-hand units of a SKU in a store (0 when it never moved).
pub async fn stock_level(
    s: &ApiState,
    store_id: &str,
    sku: &str,
) -> Result<StockLevelBody, ApiError> {
    let store = parse("store_id", StoreId::parse(store_id))?;
    let sku = parse("sku", Sku::parse(sku))?;
    let on_hand = s.stock.on_hand(&store, &sku).await.map_err(unavailable)?;
    Ok(StockLevelBody {
        store_id: store.to_string(),
        sku: sku.to_string(),
        on_hand,
    })
}

/// A page of a store's stock levels in SKU order, after `cursor`.
pub async fn store_stock(
    s: &ApiState,
    store_id: &str,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<StockPageBody, ApiError> {
    let store = parse("store_id", StoreId::parse(store_id))?;
    let limit = page_size(limit)?;
    // The cursor is bound to the store: one issued for another store is refused.
    let query = format!("store-stock\n{store}");
    let after = match cursor {
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
        .map_err(unavailable)?;
    Ok(StockPageBody {
        items: levels
            .into_iter()
            .map(|(sku, on_hand)| StockLevelBody {
                store_id: store.to_string(),
                sku: sku.to_string(),
                on_hand,
            })
            .collect(),
        next_cursor: next.map(|sku| {
            let p = Position {
                occurred_at: DateTime::<Utc>::UNIX_EPOCH,
                key: sku.to_string(),
            };
            s.cursors.encode(&p, &query)
        }),
    })
}

/// A member's points balance (0 for a member never seen).
pub async fn loyalty_balance(s: &ApiState, member_id: &str) -> Result<LoyaltyBody, ApiError> {
    let member = parse("member_id", MemberId::parse(member_id))?;
    let balance = s.loyalty.balance(&member).await.map_err(unavailable)?;
    Ok(LoyaltyBody {
        member_id: member.to_string(),
        balance,
    })
}

/// A page of a member's points ledger in event-id order, after `cursor`.
pub async fn loyalty_ledger(
    s: &ApiState,
    member_id: &str,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<LedgerBody, ApiError> {
    let member = parse("member_id", MemberId::parse(member_id))?;
    let limit = page_size(limit)?;
    // The cursor is bound to the member: one issued for another member or listing is refused.
    let query = format!("loyalty-ledger\n{member}");
    let after = match cursor {
        None => None,
        Some(c) => {
            let p = parse("cursor", s.cursors.decode(c, &query))?;
            Some(parse("cursor", EventId::parse(p.key))?)
        }
    };
    let page = s
        .loyalty
        .entries_page(&member, after.as_ref(), limit)
        .await
        .map_err(unavailable)?;
    Ok(LedgerBody {
        member_id: member.to_string(),
        entries: page.entries,
        next_cursor: page.next.map(|id| {
            let p = Position {
                occurred_at: DateTime::<Utc>::UNIX_EPOCH,
                key: id.to_string(),
            };
            s.cursors.encode(&p, &query)
        }),
    })
}
