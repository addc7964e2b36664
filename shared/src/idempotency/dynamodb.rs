//! Idempotency records in DynamoDB: one conditional `PutItem` acquires the key atomically.
//!
//! Item: `pk` = `IDEMPOTENCY#{key}`, `sk` = `IDEMPOTENCY`, `status`, `payload_hash`, `expires_at` (epoch
//! seconds, also the TTL attribute), `in_progress_expires_at` (epoch ms), `data` (the record as JSON).
//! Condition: `attribute_not_exists(pk) OR expires_at <= :now_s OR (#status = :inprogress AND
//! in_progress_expires_at <= :now_ms)`; on failure the existing item comes back with the error
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`), or is read consistently when the backend omits it.

use super::{Acquire, IdempotencyRecord, IdempotencyStore, Status, StoreFailure};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// DynamoDB idempotency store on a table with `pk`/`sk` string keys.
#[derive(Clone)]
pub struct DynamoIdempotencyStore {
    client: Client,
    table: String,
    namespace: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn failure<E: std::error::Error>(op: &str, e: E) -> StoreFailure {
    StoreFailure(format!("{op}: {}", DisplayErrorContext(e)))
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<IdempotencyRecord, StoreFailure> {
    let text = item
        .get("data")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreFailure("idempotency item has no data".into()))?;
    serde_json::from_str(text).map_err(|e| StoreFailure(e.to_string()))
}

impl DynamoIdempotencyStore {
    /// A store on `table`, keys prefixed with `namespace` (the function name).
    pub fn new(client: Client, table: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            namespace: namespace.into(),
        }
    }

    fn pk(&self, key: &str) -> String {
        format!("IDEMPOTENCY#{}#{key}", self.namespace)
    }

    fn item(&self, r: &IdempotencyRecord) -> Result<HashMap<String, AttributeValue>, StoreFailure> {
        let mut item = HashMap::from([
            ("pk".to_owned(), s(self.pk(&r.key))),
            ("sk".to_owned(), s("IDEMPOTENCY")),
            (
                "status".to_owned(),
                s(if r.status == Status::InProgress {
                    "INPROGRESS"
                } else {
                    "COMPLETED"
                }),
            ),
            ("payload_hash".to_owned(), s(r.payload_hash.clone())),
            ("expires_at".to_owned(), n(r.expires_at.timestamp())),
            (
                "data".to_owned(),
                s(serde_json::to_string(r).map_err(|e| StoreFailure(e.to_string()))?),
            ),
        ]);
        if let Some(limit) = r.in_progress_expires_at {
            item.insert(
                "in_progress_expires_at".to_owned(),
                n(limit.timestamp_millis()),
            );
        }
        Ok(item)
    }

    async fn get(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreFailure> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(self.pk(key)))
            .key("sk", s("IDEMPOTENCY"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| failure("GetItem", e))?;
        out.item.as_ref().map(decode).transpose()
    }
}

#[async_trait]
impl IdempotencyStore for DynamoIdempotencyStore {
    async fn acquire(
        &self,
        record: &IdempotencyRecord,
        now: DateTime<Utc>,
    ) -> Result<Acquire, StoreFailure> {
        // Two attempts: a record that expires between the failed condition and our read frees the key.
        for _ in 0..2 {
            let res = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(self.item(record)?))
                .condition_expression(
                    "attribute_not_exists(pk) OR expires_at <= :now_s OR (#status = :inprogress AND in_progress_expires_at <= :now_ms)",
                )
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":now_s", n(now.timestamp()))
                .expression_attribute_values(":now_ms", n(now.timestamp_millis()))
                .expression_attribute_values(":inprogress", s("INPROGRESS"))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            match res {
                Ok(_) => return Ok(Acquire::Acquired),
                Err(SdkError::ServiceError(e))
                    if e.err().is_conditional_check_failed_exception() =>
                {
                    let returned = match e.err() {
                        PutItemError::ConditionalCheckFailedException(c) => {
                            c.item().map(decode).transpose()?
                        }
                        _ => None,
                    };
                    let existing = match returned {
                        Some(r) => Some(r),
                        None => self.get(&record.key).await?,
                    };
                    if let Some(r) = existing.filter(|r| r.is_live(now)) {
                        return Ok(Acquire::Existing(r));
                    }
                }
                Err(e) => return Err(failure("PutItem", e)),
            }
        }
        Err(StoreFailure(
            "idempotency record kept changing during acquire; retry".into(),
        ))
    }

    async fn complete(
        &self,
        key: &str,
        response: serde_json::Value,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreFailure> {
        let mut record = self
            .get(key)
            .await?
            .ok_or_else(|| StoreFailure(format!("no idempotency record for {key}")))?;
        record.status = Status::Completed;
        record.response = Some(response);
        record.expires_at = expires_at;
        record.in_progress_expires_at = None;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(&record)?))
            .send()
            .await
            .map_err(|e| failure("PutItem", e))?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreFailure> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(self.pk(key)))
            .key("sk", s("IDEMPOTENCY"))
            .send()
            .await
            .map_err(|e| failure("DeleteItem", e))?;
        Ok(())
    }
}
