//! The stock ledger in DynamoDB (table `aws_dynamodb_table.stock` in infra/).
//!
//! | item    | `pk`                  | `sk`                   | attributes              |
//! |---------|-----------------------|------------------------|-------------------------|
//! | level   | `STOCK#{store}`       | `SKU#{sku}`            | `on_hand` (N, ADD only) |
//! | marker  | `APPLIED#{event_id}`  | `CHUNK#{n}`            | `expires_at` (TTL)      |
//!
//! One `TransactWriteItems` per chunk of 99 deltas: the marker put (condition: absent) and the `ADD`s.
//! A cancelled transaction whose marker condition failed was applied before; a `TransactionConflict`
//! (a hot store + SKU) is retried in the function with jittered backoff ([`crate::backoff`]); any other
//! cancellation is returned for the queue to retry. New levels are read back after the transaction (one consistent `BatchGetItem` per 100
//! SKUs) for notifications; a concurrent delta between the two may shift a notification, never a level.

use super::{ApplyOutcome, LedgerError, StockChange, StockDelta, StockLedger};
use crate::backoff::{Attempt, Backoff};
use crate::ids::{EventId, Sku, StoreId};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use std::collections::HashMap;

/// Deltas per transaction (DynamoDB allows 100 items; one is the marker).
const CHUNK: usize = 99;
/// Markers outlive any redelivery: 14 days of queue retention plus 14 days in the DLQ, and margin.
const MARKER_TTL_DAYS: i64 = 35;

/// DynamoDB stock ledger.
#[derive(Clone)]
pub struct DynamoStockLedger {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn failure<E: std::error::Error>(op: &str, e: E) -> LedgerError {
    LedgerError(format!("{op}: {}", DisplayErrorContext(e)))
}

impl DynamoStockLedger {
    /// A ledger on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Applies one chunk, retrying transaction conflicts with [`Backoff::CONFLICTS`].
    async fn apply_chunk(
        &self,
        event_id: &EventId,
        n: usize,
        chunk: &[StockDelta],
    ) -> Result<bool, LedgerError> {
        Backoff::CONFLICTS
            .retry(|_| self.try_chunk(event_id, n, chunk))
            .await
    }

    async fn try_chunk(
        &self,
        event_id: &EventId,
        n: usize,
        chunk: &[StockDelta],
    ) -> Attempt<bool, LedgerError> {
        let expires = chrono::Utc::now() + chrono::Duration::days(MARKER_TTL_DAYS);
        let marker = Put::builder()
            .table_name(&self.table)
            .item("pk", s(format!("APPLIED#{event_id}")))
            .item("sk", s(format!("CHUNK#{n}")))
            .item(
                "expires_at",
                AttributeValue::N(expires.timestamp().to_string()),
            )
            .condition_expression("attribute_not_exists(pk)")
            .build();
        let marker = match marker {
            Ok(m) => m,
            Err(e) => return Attempt::Done(Err(LedgerError(e.to_string()))),
        };
        let mut items = vec![TransactWriteItem::builder().put(marker).build()];
        for d in chunk {
            let update = Update::builder()
                .table_name(&self.table)
                .key("pk", s(format!("STOCK#{}", d.store_id)))
                .key("sk", s(format!("SKU#{}", d.sku)))
                .update_expression("ADD on_hand :d")
                .expression_attribute_values(":d", AttributeValue::N(d.delta.to_string()))
                .build();
            let update = match update {
                Ok(u) => u,
                Err(e) => return Attempt::Done(Err(LedgerError(e.to_string()))),
            };
            items.push(TransactWriteItem::builder().update(update).build());
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Attempt::Done(Ok(true)),
            Err(SdkError::ServiceError(se)) => match se.err() {
                TransactWriteItemsError::TransactionCanceledException(c) => {
                    let codes: Vec<&str> = c
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or("None"))
                        .collect();
                    classify_cancellation(&codes)
                }
                other => Attempt::Done(Err(LedgerError(format!("TransactWriteItems: {other}")))),
            },
            Err(e) => Attempt::Done(Err(failure("TransactWriteItems", e))),
        }
    }
}

/// What a cancelled chunk transaction means, from its cancellation reason codes (marker first):
/// the marker alone failed its condition -> applied before; a `TransactionConflict` (another transaction
/// on the same store + SKU at that moment) -> contention, retried here with backoff; anything else is a
/// failure the queue retries.
pub(crate) fn classify_cancellation(codes: &[&str]) -> Attempt<bool, LedgerError> {
    if codes.first() == Some(&"ConditionalCheckFailed")
        && codes.iter().skip(1).all(|c| *c == "None")
    {
        Attempt::Done(Ok(false))
    } else if codes.contains(&"TransactionConflict") {
        Attempt::Contended(LedgerError(format!(
            "transaction conflict: {}",
            codes.join(",")
        )))
    } else {
        Attempt::Done(Err(LedgerError(format!(
            "transaction cancelled: {}",
            codes.join(",")
        ))))
    }
}

fn on_hand_of(item: &HashMap<String, AttributeValue>) -> Result<i64, LedgerError> {
    match item.get("on_hand") {
        None => Ok(0),
        Some(v) => v
            .as_n()
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| LedgerError("on_hand is not an integer".into())),
    }
}

impl DynamoStockLedger {
    /// Reads the levels of `deltas`' items with consistent `BatchGetItem`s (100 keys per call, unprocessed
    /// keys retried), keyed by (store, sku).
    async fn levels(
        &self,
        deltas: &[StockDelta],
    ) -> Result<HashMap<(String, String), i64>, LedgerError> {
        let mut out = HashMap::new();
        for chunk in deltas.chunks(100) {
            let keys: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|d| {
                    HashMap::from([
                        ("pk".to_owned(), s(format!("STOCK#{}", d.store_id))),
                        ("sk".to_owned(), s(format!("SKU#{}", d.sku))),
                    ])
                })
                .collect();
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| LedgerError(e.to_string()))?,
            );
            let mut attempts = 0;
            while let Some(req) = request.take() {
                attempts += 1;
                if attempts > 5 {
                    return Err(LedgerError(
                        "BatchGetItem kept returning unprocessed keys".into(),
                    ));
                }
                let resp = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, req)
                    .send()
                    .await
                    .map_err(|e| failure("BatchGetItem", e))?;
                for item in resp
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let text = |k: &str, prefix: &str| {
                        item.get(k)
                            .and_then(|v| v.as_s().ok())
                            .and_then(|v| v.strip_prefix(prefix))
                            .map(str::to_owned)
                            .unwrap_or_default()
                    };
                    out.insert(
                        (text("pk", "STOCK#"), text("sk", "SKU#")),
                        on_hand_of(&item)?,
                    );
                }
                request = resp
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl StockLedger for DynamoStockLedger {
    async fn apply(
        &self,
        event_id: &EventId,
        deltas: &[StockDelta],
    ) -> Result<ApplyOutcome, LedgerError> {
        let mut applied = Vec::new();
        let mut any_new = false;
        for (n, chunk) in deltas.chunks(CHUNK).enumerate() {
            if self.apply_chunk(event_id, n, chunk).await? {
                any_new = true;
                applied.extend_from_slice(chunk);
            }
        }
        if deltas.is_empty() {
            // Nothing to change, but record the event so a redelivery is recognised the same way.
            any_new = self.apply_chunk(event_id, 0, &[]).await?;
        }
        if !any_new {
            return Ok(ApplyOutcome::AlreadyApplied);
        }
        let levels = self.levels(&applied).await?;
        Ok(ApplyOutcome::Applied(
            applied
                .into_iter()
                .map(|d| {
                    let on_hand = levels
                        .get(&(d.store_id.to_string(), d.sku.to_string()))
                        .copied()
                        .unwrap_or(0);
                    StockChange { delta: d, on_hand }
                })
                .collect(),
        ))
    }

    async fn store_levels(
        &self,
        store: &StoreId,
        after: Option<&Sku>,
        limit: usize,
    ) -> Result<(Vec<(Sku, i64)>, Option<Sku>), LedgerError> {
        let lower = match after {
            Some(a) => format!("SKU#{a}"),
            None => "SKU#".to_owned(),
        };
        let resp = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk > :lower")
            .expression_attribute_values(":pk", s(format!("STOCK#{store}")))
            .expression_attribute_values(":lower", s(lower))
            .limit(i32::try_from(limit + 1).unwrap_or(101))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| failure("Query", e))?;
        let mut out = Vec::new();
        for item in resp.items() {
            let sku = item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .and_then(|v| v.strip_prefix("SKU#"))
                .ok_or_else(|| LedgerError("stock item without a SKU".into()))?;
            out.push((
                Sku::parse(sku).map_err(|e| LedgerError(e.to_string()))?,
                on_hand_of(item)?,
            ));
        }
        let more = out.len() > limit;
        out.truncate(limit);
        let next = if more {
            out.last().map(|(s, _)| s.clone())
        } else {
            None
        };
        Ok((out, next))
    }

    async fn on_hand(&self, store: &StoreId, sku: &Sku) -> Result<i64, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("STOCK#{store}")))
            .key("sk", s(format!("SKU#{sku}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| failure("GetItem", e))?;
        out.item.as_ref().map_or(Ok(0), on_hand_of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(codes: &[&str]) -> String {
        match classify_cancellation(codes) {
            Attempt::Done(Ok(new)) => format!("done:{new}"),
            Attempt::Done(Err(_)) => "failed".into(),
            Attempt::Contended(_) => "contended".into(),
        }
    }

    #[test]
    fn cancellations_are_told_apart() {
        assert_eq!(
            outcome(&["ConditionalCheckFailed", "None", "None"]),
            "done:false"
        );
        // A hot SKU: another transaction held one of the levels. Retried here, not sent back to SQS.
        assert_eq!(
            outcome(&["None", "TransactionConflict", "None"]),
            "contended"
        );
        assert_eq!(outcome(&["TransactionConflict", "None"]), "contended");
        assert_eq!(outcome(&["None", "ValidationError"]), "failed");
        assert_eq!(
            outcome(&["ConditionalCheckFailed", "ThrottlingError"]),
            "failed"
        );
    }
}
