//! The stock ledger in DynamoDB (table `aws_dynamodb_table.stock` in infra/).
//!
//! | item    | `pk`                    | `sk`                   | attributes                                  |
//! |---------|-------------------------|------------------------|---------------------------------------------|
//! | level   | `STOCK#{store}`         | `SKU#{sku}`            | `on_hand` (N), `count_at` (S, latest count) |
//! | move    | `MOVES#{store}#{sku}`   | `{time}#{event_id}`    | `delta` (N), `expires_at` (TTL)             |
//! | marker  | `APPLIED#{event_id}`    | `CHUNK#{n}`            | `expires_at` (TTL)                          |
//!
//! Store ids cannot contain `#` and the SKU is always the last part of a key, so free-text SKUs never
//! share a key. Times are fixed-width UTC with nanoseconds ([`super::sortable_time`]).
//!
//! Deltas: one `TransactWriteItems` per chunk of 49 deltas: the marker put (condition: absent), and per
//! delta an `ADD on_hand` conditioned on the level having no count at or after the delta's time, plus
//! the move. A delta whose condition fails is inside a later count: the chunk is re-planned with a
//! `ConditionCheck` (count still at or after it) in its place and sent again. The marker alone failing
//! means applied before; a `TransactionConflict` (a hot store + SKU) is retried in the function with
//! jittered backoff ([`crate::backoff`]); any other cancellation is returned for the queue to retry.
//! New levels are read back after the transaction (one consistent `BatchGetItem` per 100 SKUs) for
//! notifications; a concurrent delta between the two may shift a notification, never a level.
//!
//! Counts: read the level, sum the moves after the count's time (consistent `Query`), then set
//! `on_hand = count + moves after it` and `count_at`, conditioned on the level and `count_at` read (a
//! delta or count in between re-runs the whole step).

use super::{
    ApplyOutcome, LedgerError, MOVE_RETENTION_DAYS, StockChange, StockCount, StockDelta,
    StockLedger, sortable_time,
};
use crate::backoff::Backoff;
use crate::ids::{EventId, Sku, StoreId};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, KeysAndAttributes, Put, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// Deltas per transaction (DynamoDB allows 100 items; one is the marker, each delta takes two).
const CHUNK: usize = 49;

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

    fn marker(&self, event_id: &EventId, n: usize) -> Result<TransactWriteItem, LedgerError> {
        let expires = Utc::now() + chrono::Duration::days(MOVE_RETENTION_DAYS);
        let put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(format!("APPLIED#{event_id}")))
            .item("sk", s(format!("CHUNK#{n}")))
            .item(
                "expires_at",
                AttributeValue::N(expires.timestamp().to_string()),
            )
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| LedgerError(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The transaction items of a chunk: the marker, then per delta either its `ADD` and move
    /// (`absorbed[i] == false`) or a check that a count at or after `at` still holds it. Also, for each
    /// item, the delta it belongs to when its condition is about the count.
    fn chunk_items(
        &self,
        event_id: &EventId,
        n: usize,
        at: DateTime<Utc>,
        chunk: &[StockDelta],
        absorbed: &[bool],
    ) -> Result<(Vec<TransactWriteItem>, Vec<Option<usize>>), LedgerError> {
        let time = sortable_time(at);
        let expires = Utc::now() + chrono::Duration::days(MOVE_RETENTION_DAYS);
        let mut items = vec![self.marker(event_id, n)?];
        let mut owners = vec![None];
        let built = |e: aws_sdk_dynamodb::error::BuildError| LedgerError(e.to_string());
        for (i, d) in chunk.iter().enumerate() {
            let level_key = [
                ("pk".to_owned(), s(format!("STOCK#{}", d.store_id))),
                ("sk".to_owned(), s(format!("SKU#{}", d.sku))),
            ];
            if absorbed[i] {
                let check = ConditionCheck::builder()
                    .table_name(&self.table)
                    .set_key(Some(HashMap::from(level_key)))
                    .condition_expression("count_at >= :t")
                    .expression_attribute_values(":t", s(time.clone()))
                    .build()
                    .map_err(built)?;
                items.push(TransactWriteItem::builder().condition_check(check).build());
                owners.push(Some(i));
                continue;
            }
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(HashMap::from(level_key)))
                .update_expression("ADD on_hand :d")
                .condition_expression("attribute_not_exists(count_at) OR count_at < :t")
                .expression_attribute_values(":d", AttributeValue::N(d.delta.to_string()))
                .expression_attribute_values(":t", s(time.clone()))
                .build()
                .map_err(built)?;
            items.push(TransactWriteItem::builder().update(update).build());
            owners.push(Some(i));
            let log = Put::builder()
                .table_name(&self.table)
                .item("pk", s(format!("MOVES#{}#{}", d.store_id, d.sku)))
                .item("sk", s(format!("{time}#{event_id}")))
                .item("delta", AttributeValue::N(d.delta.to_string()))
                .item(
                    "expires_at",
                    AttributeValue::N(expires.timestamp().to_string()),
                )
                .build()
                .map_err(built)?;
            items.push(TransactWriteItem::builder().put(log).build());
            owners.push(None);
        }
        Ok((items, owners))
    }

    /// Applies one chunk: the deltas applied now, or `None` when the chunk was applied before.
    async fn apply_chunk(
        &self,
        event_id: &EventId,
        n: usize,
        at: DateTime<Utc>,
        chunk: &[StockDelta],
    ) -> Result<Option<Vec<StockDelta>>, LedgerError> {
        let mut absorbed = vec![false; chunk.len()];
        let mut tries = 0u32;
        loop {
            let (items, owners) = self.chunk_items(event_id, n, at, chunk, &absorbed)?;
            let codes = match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(_) => {
                    return Ok(Some(
                        chunk
                            .iter()
                            .zip(&absorbed)
                            .filter(|(_, a)| !**a)
                            .map(|(d, _)| d.clone())
                            .collect(),
                    ));
                }
                Err(e) => cancellation_codes(e)?,
            };
            let codes: Vec<&str> = codes.iter().map(String::as_str).collect();
            match classify_cancellation(&codes) {
                Cancelled::AppliedBefore => return Ok(None),
                Cancelled::Replan | Cancelled::Contended => {
                    // A count arrived (or moved) between the plan and the write: flip the deltas whose
                    // condition failed and try again; contention alone waits a little first.
                    for (code, owner) in codes.iter().zip(&owners) {
                        if let (&"ConditionalCheckFailed", Some(i)) = (code, owner) {
                            absorbed[*i] = !absorbed[*i];
                        }
                    }
                    tries += 1;
                    if tries >= Backoff::CONFLICTS.attempts {
                        return Err(LedgerError(format!(
                            "transaction kept being cancelled: {}",
                            codes.join(",")
                        )));
                    }
                    tokio::time::sleep(Backoff::CONFLICTS.delay(tries - 1, fastrand::f64())).await;
                }
                Cancelled::Failed => {
                    return Err(LedgerError(format!(
                        "transaction cancelled: {}",
                        codes.join(",")
                    )));
                }
            }
        }
    }

    /// The level item of a store + SKU: (on hand, latest count's time), both absent when never touched.
    async fn level(
        &self,
        store: &StoreId,
        sku: &Sku,
    ) -> Result<(Option<i64>, Option<String>), LedgerError> {
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
        let Some(item) = out.item else {
            return Ok((None, None));
        };
        let on_hand = match item.get("on_hand") {
            None => None,
            Some(_) => Some(on_hand_of(&item)?),
        };
        let count_at = item.get("count_at").and_then(|v| v.as_s().ok()).cloned();
        Ok((on_hand, count_at))
    }

    /// The sum of the moves of a store + SKU strictly after `time` (a sortable time).
    async fn moves_after(
        &self,
        store: &StoreId,
        sku: &Sku,
        time: &str,
    ) -> Result<i64, LedgerError> {
        let mut sum: i64 = 0;
        let mut start = None;
        loop {
            let resp = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk > :after")
                .expression_attribute_values(":pk", s(format!("MOVES#{store}#{sku}")))
                // Every move at `time` itself sorts below this (event ids are ASCII): it is in the count.
                .expression_attribute_values(":after", s(format!("{time}#\u{10FFFF}")))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| failure("Query", e))?;
            for item in resp.items() {
                let delta = item
                    .get("delta")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<i64>().ok())
                    .ok_or_else(|| LedgerError("move without an integer delta".into()))?;
                sum = sum
                    .checked_add(delta)
                    .ok_or_else(|| LedgerError("moves overflow".into()))?;
            }
            start = resp.last_evaluated_key;
            if start.is_none() {
                return Ok(sum);
            }
        }
    }

    /// Records the marker of a count that changes nothing: `StaleCount`, or `AlreadyApplied`.
    async fn stale(&self, event_id: &EventId) -> Result<ApplyOutcome, LedgerError> {
        match self
            .client
            .transact_write_items()
            .transact_items(self.marker(event_id, 0)?)
            .send()
            .await
        {
            Ok(_) => Ok(ApplyOutcome::StaleCount),
            Err(e) => {
                let codes = cancellation_codes(e)?;
                if codes.first().is_some_and(|c| c == "ConditionalCheckFailed") {
                    Ok(ApplyOutcome::AlreadyApplied)
                } else {
                    Err(LedgerError(format!(
                        "transaction cancelled: {}",
                        codes.join(",")
                    )))
                }
            }
        }
    }
}

/// Cancellation reason codes, or the error for anything but a cancelled transaction.
fn cancellation_codes(err: SdkError<TransactWriteItemsError>) -> Result<Vec<String>, LedgerError> {
    match &err {
        SdkError::ServiceError(se) => match se.err() {
            TransactWriteItemsError::TransactionCanceledException(c) => Ok(c
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect()),
            other => Err(LedgerError(format!("TransactWriteItems: {other}"))),
        },
        _ => Err(failure("TransactWriteItems", err)),
    }
}

/// What a cancelled transaction (marker first) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancelled {
    /// The marker's condition failed: applied before.
    AppliedBefore,
    /// A level's count condition failed: plan again with what the level holds now.
    Replan,
    /// Another transaction held an item (`TransactionConflict`, a hot store + SKU): retry after a wait.
    Contended,
    /// Anything else: the queue retries.
    Failed,
}

pub(crate) fn classify_cancellation(codes: &[&str]) -> Cancelled {
    let ok = |c: &&str| {
        matches!(
            *c,
            "None" | "ConditionalCheckFailed" | "TransactionConflict"
        )
    };
    if codes.first() == Some(&"ConditionalCheckFailed") {
        Cancelled::AppliedBefore
    } else if !codes.iter().all(ok) {
        Cancelled::Failed
    } else if codes.contains(&"ConditionalCheckFailed") {
        Cancelled::Replan
    } else if codes.contains(&"TransactionConflict") {
        Cancelled::Contended
    } else {
        Cancelled::Failed
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
        at: DateTime<Utc>,
        deltas: &[StockDelta],
    ) -> Result<ApplyOutcome, LedgerError> {
        let mut applied = Vec::new();
        let mut any_new = false;
        for (n, chunk) in deltas.chunks(CHUNK).enumerate() {
            if let Some(done) = self.apply_chunk(event_id, n, at, chunk).await? {
                any_new = true;
                applied.extend(done);
            }
        }
        if deltas.is_empty() {
            // Nothing to change, but record the event so a redelivery is recognised the same way.
            any_new = self.apply_chunk(event_id, 0, at, &[]).await?.is_some();
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

    async fn apply_count(
        &self,
        event_id: &EventId,
        count: &StockCount,
        now: DateTime<Utc>,
    ) -> Result<ApplyOutcome, LedgerError> {
        if count.counted_at < now - chrono::Duration::days(MOVE_RETENTION_DAYS) {
            return self.stale(event_id).await;
        }
        let time = sortable_time(count.counted_at);
        let mut tries = 0u32;
        loop {
            let (read, count_at) = self.level(&count.store_id, &count.sku).await?;
            if count_at.as_deref().is_some_and(|c| c >= time.as_str()) {
                return self.stale(event_id).await;
            }
            let since = self.moves_after(&count.store_id, &count.sku, &time).await?;
            let on_hand = count
                .on_hand
                .checked_add(since)
                .ok_or_else(|| LedgerError("stock overflows".into()))?;
            let mut update = Update::builder()
                .table_name(&self.table)
                .key("pk", s(format!("STOCK#{}", count.store_id)))
                .key("sk", s(format!("SKU#{}", count.sku)))
                .update_expression("SET on_hand = :new, count_at = :t")
                .expression_attribute_values(":new", AttributeValue::N(on_hand.to_string()))
                .expression_attribute_values(":t", s(time.clone()));
            let mut conditions = Vec::new();
            match read {
                Some(v) => {
                    conditions.push("on_hand = :read");
                    update = update
                        .expression_attribute_values(":read", AttributeValue::N(v.to_string()));
                }
                None => conditions.push("attribute_not_exists(on_hand)"),
            }
            match &count_at {
                Some(c) => {
                    conditions.push("count_at = :old");
                    update = update.expression_attribute_values(":old", s(c.clone()));
                }
                None => conditions.push("attribute_not_exists(count_at)"),
            }
            let update = update
                .condition_expression(conditions.join(" AND "))
                .build()
                .map_err(|e| LedgerError(e.to_string()))?;
            let sent = self
                .client
                .transact_write_items()
                .transact_items(self.marker(event_id, 0)?)
                .transact_items(TransactWriteItem::builder().update(update).build())
                .send()
                .await;
            let codes = match sent {
                Ok(_) => {
                    return Ok(ApplyOutcome::Applied(vec![StockChange {
                        delta: StockDelta {
                            store_id: count.store_id.clone(),
                            sku: count.sku.clone(),
                            delta: on_hand - read.unwrap_or(0),
                        },
                        on_hand,
                    }]));
                }
                Err(e) => cancellation_codes(e)?,
            };
            let codes: Vec<&str> = codes.iter().map(String::as_str).collect();
            match classify_cancellation(&codes) {
                Cancelled::AppliedBefore => return Ok(ApplyOutcome::AlreadyApplied),
                Cancelled::Replan | Cancelled::Contended => {
                    // A delta or another count changed the level since it was read: read it again.
                    tries += 1;
                    if tries >= Backoff::CONFLICTS.attempts {
                        return Err(LedgerError(format!(
                            "the level kept changing during the count: {}",
                            codes.join(",")
                        )));
                    }
                    tokio::time::sleep(Backoff::CONFLICTS.delay(tries - 1, fastrand::f64())).await;
                }
                Cancelled::Failed => {
                    return Err(LedgerError(format!(
                        "transaction cancelled: {}",
                        codes.join(",")
                    )));
                }
            }
        }
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

    #[test]
    fn cancellations_are_told_apart() {
        use Cancelled::*;
        assert_eq!(
            classify_cancellation(&["ConditionalCheckFailed", "None", "None"]),
            AppliedBefore
        );
        // A hot SKU: another transaction held one of the levels. Retried here, not sent back to SQS.
        assert_eq!(
            classify_cancellation(&["None", "TransactionConflict", "None"]),
            Contended
        );
        // A count at or after the delta arrived meanwhile.
        assert_eq!(
            classify_cancellation(&["None", "ConditionalCheckFailed", "None"]),
            Replan
        );
        assert_eq!(classify_cancellation(&["None", "ValidationError"]), Failed);
        assert_eq!(classify_cancellation(&["None", "ThrottlingError"]), Failed);
    }
}
