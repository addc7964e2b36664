//! Read models for the query API: sales by id and by store and time, with keyset pagination behind an
//! opaque, tamper-proof cursor.
//!
//! Order is `(occurred_at, record key)`, stable under concurrent writes: a page starts strictly after the
//! last item of the previous one, so a sale written meanwhile is neither repeated nor shifts what
//! follows. The cursor is the position plus the query it belongs to, signed with HMAC-SHA256: a client
//! cannot forge a position or reuse a cursor with other filters.

pub mod dynamodb;
pub mod embedded;

use crate::ids::{SaleId, StoreId};
use crate::model::Sale;
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A position in `(occurred_at, record key)` order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// The item's time.
    pub occurred_at: DateTime<Utc>,
    /// The item's record key (tie-breaker).
    pub key: String,
}

/// A read failure (infrastructure; retryable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("read model unavailable: {0}")]
pub struct ReadError(pub String);

/// A cursor the caller sent back that is not one of ours (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor")]
pub struct CursorError;

/// One page of sales.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesPage {
    /// The sales, in order.
    pub sales: Vec<Sale>,
    /// Where the next page starts, when there is one.
    pub next: Option<Position>,
}

/// The sales read model.
#[async_trait]
pub trait SalesReader: Send + Sync {
    /// A sale by id.
    async fn sale(&self, id: &SaleId) -> Result<Option<Sale>, ReadError>;
    /// Sales of `store` with `from <= occurred_at < to`, after `after`, at most `limit`.
    async fn store_sales(
        &self,
        store: &StoreId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<SalesPage, ReadError>;
}

/// The sale of a stored fact, with its lines resolved when they were claim-checked: the read model
/// always answers the whole sale, or fails (503), never a sale without its lines.
pub(crate) async fn with_lines(
    source: &dyn crate::ports::LinesSource,
    mut event: crate::model::CanonicalEvent,
    reference: Option<&crate::model::LinesRef>,
) -> Result<Option<Sale>, ReadError> {
    crate::store::claim::resolve_event(source, &mut event, reference)
        .await
        .map_err(|e| ReadError(e.to_string()))?;
    Ok(match event {
        crate::model::CanonicalEvent::SaleCompleted(s) => Some(s),
        _ => None,
    })
}

/// Signs and checks cursors.
pub struct CursorCodec {
    key: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct CursorBody {
    #[serde(rename = "p")]
    position: Position,
    #[serde(rename = "q")]
    query: String,
}

impl CursorCodec {
    /// A codec with a secret key (at least 32 bytes; from the secret store in AWS).
    pub fn new(key: impl Into<Vec<u8>>) -> Result<Self, String> {
        let key = key.into();
        if key.len() < 32 {
            return Err("the cursor key must be at least 32 bytes".into());
        }
        Ok(Self { key })
    }

    /// An opaque cursor for `position` within the query described by `query`.
    pub fn encode(&self, position: &Position, query: &str) -> String {
        let body = serde_json::to_vec(&CursorBody {
            position: position.clone(),
            query: query.to_owned(),
        })
        .unwrap_or_default();
        let mac = crate::vendors::signing::hmac_sha256(&self.key, &[&body]);
        format!("{}.{}", B64URL.encode(&body), B64URL.encode(mac))
    }

    /// The position of a cursor issued for the same `query`.
    pub fn decode(&self, cursor: &str, query: &str) -> Result<Position, CursorError> {
        let (body, mac) = cursor.split_once('.').ok_or(CursorError)?;
        let body = B64URL.decode(body).map_err(|_| CursorError)?;
        let mac = B64URL.decode(mac).map_err(|_| CursorError)?;
        if !crate::vendors::signing::verify_hmac(&self.key, &[&body], &mac) {
            return Err(CursorError);
        }
        let parsed: CursorBody = serde_json::from_slice(&body).map_err(|_| CursorError)?;
        if parsed.query != query {
            return Err(CursorError);
        }
        Ok(parsed.position)
    }
}

/// The query string a store-sales cursor is bound to.
pub fn store_sales_query(store: &StoreId, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    format!(
        "store-sales\n{store}\n{}\n{}",
        from.to_rfc3339(),
        to.to_rfc3339()
    )
}

#[cfg(test)]
mod tests;
