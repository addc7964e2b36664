//! Sales reads on the embedded store (local runs, tests): a scan, filtered and ordered in memory; a
//! sale whose lines were claim-checked is returned with them ([`super::with_lines`]).

use super::{Position, ReadError, SalesPage, SalesReader, with_lines};
use crate::ids::{SaleId, StoreId};
use crate::model::{CanonicalEvent, LinesRef, Sale};
use crate::store::StoreInspect;
use crate::store::embedded::EmbeddedStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[async_trait]
impl SalesReader for EmbeddedStore {
    async fn sale(&self, id: &SaleId) -> Result<Option<Sale>, ReadError> {
        let key = format!("sale#{id}");
        let records = self.records().await.map_err(|e| ReadError(e.to_string()))?;
        let Some(record) = records.into_iter().find(|r| r.record_key == key) else {
            return Ok(None);
        };
        with_lines(self, record.event, record.lines_ref.as_ref()).await
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
        let mut sales: Vec<(Position, Sale, Option<LinesRef>)> = records
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
                        r.lines_ref,
                    ))
                }
                _ => None,
            })
            .filter(|(p, _, _)| after.is_none_or(|a| p > a))
            .collect();
        sales.sort_by(|a, b| a.0.cmp(&b.0));
        let more = sales.len() > limit;
        sales.truncate(limit);
        // Only the page's sales are resolved.
        let mut page = Vec::with_capacity(sales.len());
        for (p, s, reference) in sales {
            let event = CanonicalEvent::SaleCompleted(s);
            if let Some(s) = with_lines(self, event, reference.as_ref()).await? {
                page.push((p, s));
            }
        }
        let sales = page;
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
