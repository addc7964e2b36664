//! Sales reads on DynamoDB: `GetItem` by record key, and a `Query` of the `gsi1` index (store, then
//! `{occurred_at}#{record_key}` with nanosecond, fixed-width times: see
//! [`crate::store::dynamodb::gsi1_sort_key`]), which is exactly the read model's order.
//!
//! Rows written before issue 9 carry millisecond keys (`…:00.123Z#…`), which sort after the nanosecond
//! keys of the same millisecond. Both encodings agree on the order of milliseconds, so a page query starts
//! at the first key of the millisecond of its lower bound, never stops inside a millisecond, and orders
//! what it read by position: old and new rows page exactly once, in the same order, without a backfill.

use super::{Position, ReadError, SalesPage, SalesReader, with_lines};
use crate::ids::{SaleId, StoreId};
use crate::model::{CanonicalEvent, LinesRef, Sale};
use crate::store::CanonicalRecord;
use crate::store::dynamodb::{DynamoStore, GSI_STORE};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};

/// `YYYY-MM-DDTHH:MM:SS.mmm`: a prefix of every key (old or new encoding) in the millisecond of `t`, and
/// greater than every key of an earlier millisecond.
fn millisecond_prefix(t: DateTime<Utc>) -> String {
    let mut text = t.to_rfc3339_opts(SecondsFormat::Millis, true);
    text.pop();
    text
}

fn sale_of(record: CanonicalRecord) -> Option<Sale> {
    match record.event {
        CanonicalEvent::SaleCompleted(s) => Some(s),
        _ => None,
    }
}

#[async_trait]
impl SalesReader for DynamoStore {
    async fn sale(&self, id: &SaleId) -> Result<Option<Sale>, ReadError> {
        let record = self
            .record(&format!("sale#{id}"))
            .await
            .map_err(|e| ReadError(e.to_string()))?;
        match record {
            Some(r) => with_lines(self, r.event, r.lines_ref.as_ref()).await,
            None => Ok(None),
        }
    }

    async fn store_sales(
        &self,
        store: &StoreId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<SalesPage, ReadError> {
        // Keys hold RFC 3339 times with 4-digit years; a later `to` (the API's default is chrono's maximum,
        // which formats as "+262142-…" and sorts before every key) is clamped to the last 4-digit instant.
        let last_key_time =
            DateTime::<Utc>::from_timestamp(253_402_300_799, 999_999_999).unwrap_or(to);
        // Whole milliseconds from the lower bound's to `to`'s ('~' sorts after 'Z', digits and '#').
        let lower = millisecond_prefix(after.map_or(from, |p| p.occurred_at));
        let upper = format!("{}~", millisecond_prefix(to.min(last_key_time)));
        let mut sales: Vec<(Position, Sale, Option<LinesRef>)> = Vec::new();
        // Once the page is full: the millisecond it ends in, which is still read to its end.
        let mut last_millisecond: Option<i64> = None;
        let mut start = None;
        'pages: loop {
            let resp = self
                .client()
                .query()
                .table_name(self.table())
                .index_name(GSI_STORE)
                .key_condition_expression("gsi1pk = :store AND gsi1sk BETWEEN :lower AND :upper")
                .filter_expression("begins_with(pk, :sales)")
                .expression_attribute_values(":store", AttributeValue::S(format!("STORE#{store}")))
                .expression_attribute_values(":lower", AttributeValue::S(lower.clone()))
                .expression_attribute_values(":upper", AttributeValue::S(upper.clone()))
                .expression_attribute_values(":sales", AttributeValue::S("RECORD#sale#".into()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| {
                    ReadError(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
                })?;
            for item in resp.items() {
                let record: CanonicalRecord = crate::store::dynamodb::decode_data(item)
                    .map_err(|e| ReadError(e.to_string()))?;
                let position = Position {
                    occurred_at: record.event.occurred_at(),
                    key: record.record_key.clone(),
                };
                let millisecond = position.occurred_at.timestamp_millis();
                if last_millisecond.is_some_and(|m| millisecond > m) {
                    break 'pages;
                }
                // The key bounds are whole milliseconds: the exact bounds apply here.
                if after.is_some_and(|a| &position <= a)
                    || position.occurred_at < from
                    || position.occurred_at >= to
                {
                    continue;
                }
                let reference = record.lines_ref.clone();
                if let Some(s) = sale_of(record) {
                    sales.push((position, s, reference));
                }
                if last_millisecond.is_none() && sales.len() > limit {
                    last_millisecond = Some(millisecond);
                }
            }
            start = resp.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        // Within a millisecond, old and new keys do not sort by position: order what was read.
        sales.sort_by(|a, b| a.0.cmp(&b.0));
        let more = sales.len() > limit;
        sales.truncate(limit);
        // Only the page's claim-checked sales are resolved (a GetItem per chunk).
        let mut page = Vec::with_capacity(sales.len());
        for (position, sale, reference) in sales {
            let event = CanonicalEvent::SaleCompleted(sale);
            if let Some(sale) = with_lines(self, event, reference.as_ref()).await? {
                page.push((position, sale));
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
