//! The delivery ledger, the circuit breakers and the webhook endpoints' health on DynamoDB (table
//! `deliveries` in `infra/dynamodb.tf`).
//!
//! | item    | `pk`                    | `sk`            | other attributes                                              |
//! |---------|-------------------------|-----------------|---------------------------------------------------------------|
//! | entry   | `EVENT#{event_id}`      | `{destination}` | `data` (JSON), `version`; with a sale: `gsi1pk` = `SALE#{sale_id}`, `gsi1sk` = `{destination}#{event_id}` |
//! | breaker | `BREAKER#{destination}` | `BREAKER`       | `data` (JSON), `version`                                      |
//! | webhook endpoint health | `ENDPOINT#{subscription}` | `health` | `data` (JSON), `version`                          |
//! | webhook subscription | `SUBSCRIPTIONS` | `{subscription}` | `url`, `event_types` (list, optional), `enabled` (optional); no secret: the rings are in the webhooks secret ([`super::subscriptions`]) |
//!
//! Subscriptions are written by operators (infra/README.md), read by one `Query` on their partition.
//! Every write of this module is a `PutItem` conditioned on the stored `version` (or on absence), so instances racing on
//! one entry or one breaker never overwrite each other's change.

use super::breaker::{BreakerRecord, BreakerStore, BreakerStoreError};
use super::ledger::{DeliveryEntry, DeliveryLedger, LedgerError};
use super::webhooks::{HealthRecord, HealthStore, HealthStoreError};
use crate::ids::{EventId, SaleId};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// The `gsi1` index: a sale's deliveries.
pub const GSI_SALE: &str = "gsi1";

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// Ledger and breakers on one table; cheap to clone.
#[derive(Clone)]
pub struct DynamoDeliveries {
    client: Client,
    table: String,
}

impl DynamoDeliveries {
    /// The adapter for `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, String> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map(|o| o.item)
            .map_err(|e| format!("GetItem: {}", DisplayErrorContext(e)))
    }

    /// `PutItem` of `item` if the stored `version` is `expected` (absent when `None`).
    async fn put_if(&self, item: Item, expected: Option<u64>) -> Result<bool, String> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        req = match expected {
            None => req.condition_expression("attribute_not_exists(pk)"),
            Some(v) => req
                .condition_expression("version = :expected")
                .expression_attribute_values(":expected", AttributeValue::N(v.to_string())),
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(format!("PutItem: {}", DisplayErrorContext(e))),
        }
    }
}

fn data<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, String> {
    let text = item
        .get("data")
        .and_then(|v| v.as_s().ok())
        .ok_or("item without data")?;
    serde_json::from_str(text).map_err(|e| format!("corrupt item: {e}"))
}

#[async_trait]
impl DeliveryLedger for DynamoDeliveries {
    async fn get(
        &self,
        event_id: &EventId,
        destination: &str,
    ) -> Result<Option<DeliveryEntry>, LedgerError> {
        self.get(format!("EVENT#{event_id}"), destination)
            .await
            .and_then(|i| i.map(|i| data(&i)).transpose())
            .map_err(LedgerError)
    }

    async fn put(&self, entry: &DeliveryEntry, expected: Option<u64>) -> Result<bool, LedgerError> {
        let json = serde_json::to_string(entry).map_err(|e| LedgerError(e.to_string()))?;
        let mut item = HashMap::from([
            ("pk".to_owned(), s(format!("EVENT#{}", entry.event_id))),
            ("sk".to_owned(), s(entry.destination.clone())),
            ("data".to_owned(), s(json)),
            (
                "version".to_owned(),
                AttributeValue::N(entry.version.to_string()),
            ),
        ]);
        if let Some(sale) = &entry.sale_id {
            item.insert("gsi1pk".into(), s(format!("SALE#{sale}")));
            item.insert(
                "gsi1sk".into(),
                s(format!("{}#{}", entry.destination, entry.event_id)),
            );
        }
        self.put_if(item, expected).await.map_err(LedgerError)
    }

    async fn for_sale(&self, sale_id: &SaleId) -> Result<Vec<DeliveryEntry>, LedgerError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI_SALE)
                .key_condition_expression("gsi1pk = :p")
                .expression_attribute_values(":p", s(format!("SALE#{sale_id}")))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| LedgerError(format!("Query: {}", DisplayErrorContext(e))))?;
            for item in page.items() {
                out.push(data(item).map_err(LedgerError)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl BreakerStore for DynamoDeliveries {
    async fn load(&self, destination: &str) -> Result<Option<BreakerRecord>, BreakerStoreError> {
        self.get(format!("BREAKER#{destination}"), "BREAKER")
            .await
            .and_then(|i| i.map(|i| data(&i)).transpose())
            .map_err(BreakerStoreError)
    }

    async fn compare_and_set(
        &self,
        destination: &str,
        expected: Option<u64>,
        record: &BreakerRecord,
    ) -> Result<bool, BreakerStoreError> {
        let json = serde_json::to_string(record).map_err(|e| BreakerStoreError(e.to_string()))?;
        let item = HashMap::from([
            ("pk".to_owned(), s(format!("BREAKER#{destination}"))),
            ("sk".to_owned(), s("BREAKER")),
            ("data".to_owned(), s(json)),
            (
                "version".to_owned(),
                AttributeValue::N(record.version.to_string()),
            ),
        ]);
        self.put_if(item, expected).await.map_err(BreakerStoreError)
    }
}

/// The operator's replay after a re-enable: a `Scan` of the ledger items of one destination (run by
/// hand, rarely; no index serves it, and one would cost a write per ledger entry forever).
#[async_trait]
impl super::webhooks_enable::DeadEntries for DynamoDeliveries {
    async fn dead_entries(
        &self,
        destination: &str,
        reason: &str,
    ) -> Result<Vec<DeliveryEntry>, LedgerError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk = :d AND begins_with(pk, :p)")
                .expression_attribute_values(":d", s(destination))
                .expression_attribute_values(":p", s("EVENT#"))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| LedgerError(format!("Scan: {}", DisplayErrorContext(e))))?;
            for item in page.items() {
                let entry: DeliveryEntry = data(item).map_err(LedgerError)?;
                if entry.status == super::ledger::DeliveryStatus::Dead
                    && entry.last_error.as_deref() == Some(reason)
                {
                    out.push(entry);
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }
}

#[async_trait]
impl HealthStore for DynamoDeliveries {
    async fn load(&self, subscription: &str) -> Result<Option<HealthRecord>, HealthStoreError> {
        self.get(format!("ENDPOINT#{subscription}"), "health")
            .await
            .and_then(|i| i.map(|i| data(&i)).transpose())
            .map_err(HealthStoreError)
    }

    async fn compare_and_set(
        &self,
        subscription: &str,
        expected: Option<u64>,
        record: &HealthRecord,
    ) -> Result<bool, HealthStoreError> {
        let json = serde_json::to_string(record).map_err(|e| HealthStoreError(e.to_string()))?;
        let item = HashMap::from([
            ("pk".to_owned(), s(format!("ENDPOINT#{subscription}"))),
            ("sk".to_owned(), s("health")),
            ("data".to_owned(), s(json)),
            (
                "version".to_owned(),
                AttributeValue::N(record.version.to_string()),
            ),
        ]);
        self.put_if(item, expected).await.map_err(HealthStoreError)
    }
}
