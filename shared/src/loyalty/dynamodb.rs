//! The loyalty ledger in DynamoDB (table `aws_dynamodb_table.loyalty` in infra/).
//!
//! | item     | `pk`               | `sk`               | attributes                              |
//! |----------|--------------------|--------------------|-----------------------------------------|
//! | profile  | `MEMBER#{member}`  | `PROFILE`          | `balance` (N), `tier` (S, set by the CRM) |
//! | entry    | `MEMBER#{member}`  | `ENTRY#{event_id}` | `data` (JSON)                           |
//! | accrual  | `SALE#{sale_id}`   | `ACCRUAL`          | `data` (JSON), `version` (N)            |
//!
//! A sale is one transaction: accrual put (condition: absent), entry put, balance `ADD`. A reversal
//! reads the balance, then writes the entry and the new balance in one transaction conditioned on the
//! balance it read (optimistic concurrency, retried), so the clamp policy holds under concurrency. A
//! return's reversal also reads the sale's accrual record and writes its new running totals in the same
//! transaction, conditioned on the record's `version`: two returns of one sale processed at once cannot
//! both reverse the same line. `TransactionConflict` cancellations are retried with jittered backoff.

use super::rules::NegativeBalancePolicy;
use super::{
    AccrualRecord, LedgerEntry, LedgerPage, LoyaltyLedger, LoyaltyStoreError, ReversalPlanner,
    clamp_reversal,
};
use crate::backoff::{Attempt, Backoff};
use crate::ids::{EventId, MemberId, SaleId};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use std::collections::HashMap;

/// DynamoDB loyalty ledger.
#[derive(Clone)]
pub struct DynamoLoyaltyLedger {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn fail<E: std::error::Error>(op: &str, e: E) -> LoyaltyStoreError {
    LoyaltyStoreError(format!("{op}: {}", DisplayErrorContext(e)))
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, LoyaltyStoreError> {
    serde_json::to_string(v).map_err(|e| LoyaltyStoreError(e.to_string()))
}

fn data<T: serde::de::DeserializeOwned>(
    item: &HashMap<String, AttributeValue>,
) -> Result<T, LoyaltyStoreError> {
    let text = item
        .get("data")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| LoyaltyStoreError("item has no data".into()))?;
    serde_json::from_str(text).map_err(|e| LoyaltyStoreError(e.to_string()))
}

/// Cancellation reason codes, or the error for anything but a cancelled transaction.
fn cancellation_codes(
    err: SdkError<TransactWriteItemsError>,
) -> Result<Vec<String>, LoyaltyStoreError> {
    match &err {
        SdkError::ServiceError(se) => match se.err() {
            TransactWriteItemsError::TransactionCanceledException(c) => Ok(c
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect()),
            _ => Err(fail("TransactWriteItems", err)),
        },
        _ => Err(fail("TransactWriteItems", err)),
    }
}

/// A cancellation that is neither a redelivery nor a moved balance: contention (retried here) or a failure.
fn conflict_or_failure<T>(codes: &[String]) -> Attempt<T, LoyaltyStoreError> {
    let err = LoyaltyStoreError(format!("transaction cancelled: {}", codes.join(",")));
    if codes.iter().any(|c| c == "TransactionConflict") {
        Attempt::Contended(err)
    } else {
        Attempt::Done(Err(err))
    }
}

fn built<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, LoyaltyStoreError> {
    r.map_err(|e| LoyaltyStoreError(e.to_string()))
}

impl DynamoLoyaltyLedger {
    /// A ledger on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    async fn profile(
        &self,
        member: &MemberId,
    ) -> Result<Option<HashMap<String, AttributeValue>>, LoyaltyStoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("MEMBER#{member}")))
            .key("sk", s("PROFILE"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| fail("GetItem", e))?;
        Ok(out.item)
    }

    /// The balance set to `read - applied`, conditioned on still being `read` (optimistic concurrency).
    fn balance_update(
        &self,
        member: &MemberId,
        read: Option<i64>,
        applied: i64,
    ) -> Result<Update, LoyaltyStoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(format!("MEMBER#{member}")))
            .key("sk", s("PROFILE"))
            .update_expression("SET balance = :new")
            .expression_attribute_values(":new", n(read.unwrap_or(0) - applied));
        let update = match read {
            Some(b) => update
                .condition_expression("balance = :read")
                .expression_attribute_values(":read", n(b)),
            None => update.condition_expression("attribute_not_exists(balance)"),
        };
        built(update.build())
    }

    fn entry_put(&self, e: &LedgerEntry) -> Result<TransactWriteItem, LoyaltyStoreError> {
        let put = built(
            Put::builder()
                .table_name(&self.table)
                .item("pk", s(format!("MEMBER#{}", e.member_id)))
                .item("sk", s(format!("ENTRY#{}", e.event_id)))
                .item("data", s(json(e)?))
                .condition_expression("attribute_not_exists(pk)")
                .build(),
        )?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

fn balance_of(
    item: Option<&HashMap<String, AttributeValue>>,
) -> Result<Option<i64>, LoyaltyStoreError> {
    match item.and_then(|i| i.get("balance")) {
        None => Ok(None),
        Some(v) => v
            .as_n()
            .ok()
            .and_then(|x| x.parse().ok())
            .map(Some)
            .ok_or_else(|| LoyaltyStoreError("balance is not an integer".into())),
    }
}

#[async_trait]
impl LoyaltyLedger for DynamoLoyaltyLedger {
    async fn tier(&self, member: &MemberId) -> Result<Option<String>, LoyaltyStoreError> {
        Ok(self
            .profile(member)
            .await?
            .and_then(|i| i.get("tier").and_then(|t| t.as_s().ok()).cloned()))
    }

    async fn record_sale(
        &self,
        accrual: &AccrualRecord,
        entry: Option<&LedgerEntry>,
    ) -> Result<bool, LoyaltyStoreError> {
        let accrual_put = built(
            Put::builder()
                .table_name(&self.table)
                .item("pk", s(format!("SALE#{}", accrual.sale_id)))
                .item("sk", s("ACCRUAL"))
                .item("data", s(json(accrual)?))
                .condition_expression("attribute_not_exists(pk)")
                .build(),
        )?;
        let mut items = vec![TransactWriteItem::builder().put(accrual_put).build()];
        if let Some(e) = entry {
            items.push(self.entry_put(e)?);
            let update = built(
                Update::builder()
                    .table_name(&self.table)
                    .key("pk", s(format!("MEMBER#{}", e.member_id)))
                    .key("sk", s("PROFILE"))
                    .update_expression("ADD balance :p")
                    .expression_attribute_values(":p", n(e.points))
                    .build(),
            )?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        Backoff::CONFLICTS
            .retry(|_| {
                let items = items.clone();
                async move {
                    match self
                        .client
                        .transact_write_items()
                        .set_transact_items(Some(items))
                        .send()
                        .await
                    {
                        Ok(_) => Attempt::Done(Ok(true)),
                        Err(e) => match cancellation_codes(e) {
                            Err(e) => Attempt::Done(Err(e)),
                            Ok(codes)
                                if codes.first().is_some_and(|c| c == "ConditionalCheckFailed") =>
                            {
                                Attempt::Done(Ok(false))
                            }
                            Ok(codes) => conflict_or_failure(&codes),
                        },
                    }
                }
            })
            .await
    }

    async fn accrual(&self, sale: &SaleId) -> Result<Option<AccrualRecord>, LoyaltyStoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("SALE#{sale}")))
            .key("sk", s("ACCRUAL"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| fail("GetItem", e))?;
        out.item.as_ref().map(data).transpose()
    }

    async fn reverse(
        &self,
        template: &LedgerEntry,
        requested: i64,
        policy: NegativeBalancePolicy,
    ) -> Result<Option<LedgerEntry>, LoyaltyStoreError> {
        for _ in 0..5 {
            let profile = self.profile(&template.member_id).await?;
            let read = balance_of(profile.as_ref())?;
            let (applied, unrecovered) = clamp_reversal(read.unwrap_or(0), requested, policy);
            let entry = LedgerEntry {
                points: -applied,
                unrecovered,
                ..template.clone()
            };
            let update = self.balance_update(&entry.member_id, read, applied)?;
            let items = vec![
                self.entry_put(&entry)?,
                TransactWriteItem::builder().update(update).build(),
            ];
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(_) => return Ok(Some(entry)),
                Err(e) => {
                    let codes = cancellation_codes(e)?;
                    match codes.as_slice() {
                        [first, ..] if first == "ConditionalCheckFailed" => return Ok(None),
                        [_, second] if second == "ConditionalCheckFailed" => continue, // balance moved: re-read
                        _ if codes.iter().any(|c| c == "TransactionConflict") => {
                            tokio::time::sleep(Backoff::CONFLICTS.delay(2, fastrand::f64())).await;
                            continue;
                        }
                        _ => {
                            return Err(LoyaltyStoreError(format!(
                                "transaction cancelled: {}",
                                codes.join(",")
                            )));
                        }
                    }
                }
            }
        }
        Err(LoyaltyStoreError(
            "balance kept changing during the reversal; retry".into(),
        ))
    }

    async fn reverse_return(
        &self,
        template: &LedgerEntry,
        sale: &SaleId,
        plan: ReversalPlanner,
        policy: NegativeBalancePolicy,
    ) -> Result<Option<LedgerEntry>, LoyaltyStoreError> {
        let mut tries = 0u32;
        loop {
            let profile = self.profile(&template.member_id).await?;
            let read = balance_of(profile.as_ref())?;
            let record_item = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(format!("SALE#{sale}")))
                .key("sk", s("ACCRUAL"))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| fail("GetItem", e))?
                .item
                .ok_or_else(|| LoyaltyStoreError(format!("no accrual record for {sale}")))?;
            let mut record: AccrualRecord = data(&record_item)?;
            let version = match record_item.get("version") {
                None => None,
                Some(v) => Some(
                    v.as_n()
                        .ok()
                        .and_then(|x| x.parse::<i64>().ok())
                        .ok_or_else(|| LoyaltyStoreError("version is not an integer".into()))?,
                ),
            };
            let (reversed, requested) = plan(&record);
            record.reversed = reversed;
            let (applied, unrecovered) = clamp_reversal(read.unwrap_or(0), requested, policy);
            let entry = LedgerEntry {
                points: -applied,
                unrecovered,
                ..template.clone()
            };
            let balance = self.balance_update(&entry.member_id, read, applied)?;
            let mut totals = Update::builder()
                .table_name(&self.table)
                .key("pk", s(format!("SALE#{sale}")))
                .key("sk", s("ACCRUAL"))
                .update_expression("SET #data = :data, version = :next")
                .expression_attribute_names("#data", "data")
                .expression_attribute_values(":data", s(json(&record)?))
                .expression_attribute_values(":next", n(version.unwrap_or(0) + 1));
            totals = match version {
                Some(v) => totals
                    .condition_expression("version = :version")
                    .expression_attribute_values(":version", n(v)),
                None => totals
                    .condition_expression("attribute_exists(pk) AND attribute_not_exists(version)"),
            };
            let items = vec![
                self.entry_put(&entry)?,
                TransactWriteItem::builder().update(balance).build(),
                TransactWriteItem::builder()
                    .update(built(totals.build())?)
                    .build(),
            ];
            let codes = match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(_) => return Ok(Some(entry)),
                Err(e) => cancellation_codes(e)?,
            };
            if codes.first().is_some_and(|c| c == "ConditionalCheckFailed") {
                return Ok(None); // the entry exists: a redelivery
            }
            let moved = codes.iter().skip(1).any(|c| c == "ConditionalCheckFailed");
            let contended = codes.iter().any(|c| c == "TransactionConflict");
            tries += 1;
            if !(moved || contended) || tries >= Backoff::CONFLICTS.attempts {
                return Err(LoyaltyStoreError(format!(
                    "transaction cancelled: {}",
                    codes.join(",")
                )));
            }
            // The balance or the sale's totals moved (another return, a sale of the member), or another
            // transaction held them: re-read and re-plan after a short jittered wait.
            tokio::time::sleep(Backoff::CONFLICTS.delay(tries - 1, fastrand::f64())).await;
        }
    }

    async fn balance(&self, member: &MemberId) -> Result<i64, LoyaltyStoreError> {
        Ok(balance_of(self.profile(member).await?.as_ref())?.unwrap_or(0))
    }

    async fn entries(&self, member: &MemberId) -> Result<Vec<LedgerEntry>, LoyaltyStoreError> {
        let mut out: Vec<LedgerEntry> = Vec::new();
        let mut start = None;
        loop {
            let resp = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :entry)")
                .expression_attribute_values(":pk", s(format!("MEMBER#{member}")))
                .expression_attribute_values(":entry", s("ENTRY#"))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| fail("Query", e))?;
            for item in resp.items() {
                out.push(data(item)?);
            }
            start = resp.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| {
            (a.occurred_at, a.event_id.as_str()).cmp(&(b.occurred_at, b.event_id.as_str()))
        });
        Ok(out)
    }

    async fn entries_page(
        &self,
        member: &MemberId,
        after: Option<&EventId>,
        limit: usize,
    ) -> Result<LedgerPage, LoyaltyStoreError> {
        // `sk > ENTRY#{after}` (or `> ENTRY#`, below every entry) and `< ENTRY$` (`$` follows `#`): only
        // entries, in sort-key order, which is event-id byte order. One item more than asked tells whether
        // a next page exists; a Query page (1 MB) may stop early, so keep reading until that many.
        let lower = match after {
            Some(a) => format!("ENTRY#{a}"),
            None => "ENTRY#".to_owned(),
        };
        let want = limit.saturating_add(1);
        let mut out: Vec<LedgerEntry> = Vec::new();
        let mut start = None;
        loop {
            let resp = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lower AND :upper")
                .expression_attribute_values(":pk", s(format!("MEMBER#{member}")))
                .expression_attribute_values(":lower", s(lower.clone()))
                .expression_attribute_values(":upper", s("ENTRY$"))
                // One more for the cursor's own entry, which BETWEEN includes.
                .limit(i32::try_from(want + 1 - out.len()).unwrap_or(i32::MAX))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| fail("Query", e))?;
            for item in resp.items() {
                if item.get("sk").and_then(|v| v.as_s().ok()) == Some(&lower) {
                    continue;
                }
                out.push(data(item)?);
            }
            start = resp.last_evaluated_key;
            if start.is_none() || out.len() >= want {
                break;
            }
        }
        out.truncate(want);
        Ok(LedgerPage::from_probe(out, limit))
    }
}
