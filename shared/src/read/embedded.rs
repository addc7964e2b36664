//! Sales reads on the embedded store (local runs, tests): a scan, filtered and ordered in memory.

use super::{Position, ReadError, SalesPage, SalesReader};
use crate::ids::{SaleId, StoreId};
use crate::model::{CanonicalEvent, Sale};
use crate::store::StoreInspect;
use crate::store::embedded::EmbeddedStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[async_trait]
impl SalesReader for EmbeddedStore {
    async fn sale(&self, id: &SaleId) -> Result<Option<Sale>, ReadError> {
        let key = format!("sale#{id}");
        let records = self.records().await.map_err(|e| ReadError(e.to_string()))?;
        Ok(records
            .into_iter()
            .find(|r| r.record_key == key)
            .and_then(|r| match r.event {
                CanonicalEvent::SaleCompleted(s) => Some(s),
                _ => None,
            }))
    }

    async fn store_sales(
        &self,
        store: &StoreId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<SalesPage, ReadError> {
        let records = self.records().await.map_err(|e| ReadError(e.to_string()))?;
        let mut sales: Vec<(Position, Sale)> = records
            .into_iter()
            .filter_map(|r| match r.event {
                CanonicalEvent::SaleCompleted(s)
                    if &s.store_id == store && s.occurred_at >= from && s.occurred_at < to =>
                {
                    Some((
                        Position {
                            occurred_at: s.occurred_at,
                            key: r.record_key,
                        },
                        s,
                    ))
                }
                _ => None,
            })
            .filter(|(p, _)| after.is_none_or(|a| p > a))
            .collect();
        sales.sort_by(|a, b| a.0.cmp(&b.0));
        let more = sales.len() > limit;
        sales.truncate(limit);
        let next = if more {
            sales.last().map(|(p, _)| p.clone())
        } else {
            None
        };
        Ok(SalesPage {
            sales: sales.into_iter().map(|(_, s)| s).collect(),
            next,
        })
    }
}
