//! Sales reads on DynamoDB: `GetItem` by record key, and a `Query` of the `gsi1` index (store, then
//! `{occurred_at}#{record_key}`), which is exactly the read model's order.

use super::{Position, ReadError, SalesPage, SalesReader};
use crate::ids::{SaleId, StoreId};
use crate::model::{CanonicalEvent, Sale};
use crate::store::CanonicalRecord;
use crate::store::dynamodb::{DynamoStore, GSI_STORE};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
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
        Ok(record.and_then(sale_of))
    }

    async fn store_sales(
        &self,
        store: &StoreId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<SalesPage, ReadError> {
        // Keys sort as `{occurred_at}#{record_key}`: start after the cursor's key, stop before `to`.
        let lower = match after {
            Some(p) => format!("{}#{}", ts(p.occurred_at), p.key),
            None => ts(from),
        };
        // Keys hold RFC 3339 times with 4-digit years; a later `to` (the API's default is chrono's maximum,
        // which formats as "+262142-…" and sorts before every key) is clamped to the last 4-digit instant.
        let last_key_time =
            DateTime::<Utc>::from_timestamp(253_402_300_799, 999_000_000).unwrap_or(to);
        let upper = ts(to.min(last_key_time));
        let mut sales: Vec<(Position, Sale)> = Vec::new();
        let mut start = None;
        loop {
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
                // BETWEEN is inclusive: skip the cursor's own item and anything at `to` exactly.
                if after.is_some_and(|a| &position <= a) || position.occurred_at >= to {
                    continue;
                }
                if let Some(s) = sale_of(record) {
                    sales.push((position, s));
                }
                if sales.len() > limit {
                    break;
                }
            }
            start = resp.last_evaluated_key;
            if sales.len() > limit || start.is_none() {
                break;
            }
        }
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
