//! The emulated event pipeline: an EventBridge bus whose rules are those of `infra/consumers.tf`, SQS
//! queues with visibility timeout, receive counts and redrive to a DLQ, and pollers that hand the
//! consumers the SQS event shape the Lambda receives, deleting what succeeded and leaving the reported
//! `batchItemFailures` to reappear after the visibility timeout.
//!
//! # Durability (what AWS keeps, kept here)
//! The queues are tables in the embedded store's file (`pos.redb`), beside the outbox, so a `kill -9`
//! at any moment loses nothing that was answered 2xx and applies nothing twice:
//! - **publish** ([`LocalBus`]'s `EventPublisher::publish`, the one entry point of the bus) is ONE
//!   transaction: the message goes into every queue whose rule matches AND the outbox entry is marked
//!   published. Before its commit the entry is still pending (the relay republishes it after a
//!   restart); after it the messages are on disk. An entry already published is not enqueued again, so
//!   a relay racing a capture cannot double a message either.
//! - **receive** durably counts the receive and sets the message's `visible_at` deadline (wall-clock
//!   ms): a crash mid-handler makes it reappear after the visibility timeout, and the count survives
//!   restarts, so a poison message still reaches the DLQ after `maxReceiveCount` receives.
//! - **delete** after the consumer succeeded, one transaction per batch. A crash between the consumer's
//!   commit and the delete redelivers the message; the consumers dedupe by event id in their ledgers.
//!
//! Each of these is one transaction over a whole batch, and they go through the store's group commit
//! ([`EmbeddedStore::write`]): the receives and deletes of the [`POLLERS_PER_QUEUE`] pollers of every
//! queue, the publishes and the captures that arrive together share one commit and its fsync.

use crate::infra::{ConsumerQueue, pattern_matches};
use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use pos_shared::bus::{BusMessage, PublishError};
use pos_shared::model::EventEnvelope;
use pos_shared::ports::EventPublisher;
use pos_shared::store::StoreError;
use pos_shared::store::embedded::{EmbeddedStore, OutboxMark, mark_published_in};
use redb::{ReadableTable, TableDefinition};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Messages not yet deleted, by (queue, sequence number): the order they were sent in.
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_messages");
/// Dead letters, same keys.
const DLQ: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_dlq");
/// The next sequence number per queue (never reused, so an old receipt handle cannot delete a newer
/// message).
const SEQUENCES: TableDefinition<&str, u64> = TableDefinition::new("queue_sequences");

/// A stored message. On disk: `visible_at_ms` (i64, big-endian), `receive_count` (u32, big-endian),
/// then the body's bytes, so scans (receive, `/_local/queues`) read the 12-byte header without touching
/// the body.
#[derive(Debug, Clone)]
struct Message {
    body: String,
    receive_count: u32,
    /// Wall-clock ms (Unix epoch) from which it may be received; survives restarts, unlike an Instant.
    visible_at_ms: i64,
}

const HEADER: usize = 12;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn io<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn encode(m: &Message) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(HEADER + m.body.len());
    out.extend_from_slice(&m.visible_at_ms.to_be_bytes());
    out.extend_from_slice(&m.receive_count.to_be_bytes());
    out.extend_from_slice(m.body.as_bytes());
    Ok(out)
}

/// The header only: (visible_at_ms, receive_count).
fn header(bytes: &[u8]) -> Result<(i64, u32), StoreError> {
    let corrupt = || StoreError::Corrupt("queue message shorter than its header".into());
    let at: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(corrupt)?;
    let count: [u8; 4] = bytes
        .get(8..HEADER)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(corrupt)?;
    Ok((i64::from_be_bytes(at), u32::from_be_bytes(count)))
}

fn decode(bytes: &[u8]) -> Result<Message, StoreError> {
    let (visible_at_ms, receive_count) = header(bytes)?;
    let body = std::str::from_utf8(bytes.get(HEADER..).unwrap_or_default())
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
        .to_owned();
    Ok(Message {
        body,
        receive_count,
        visible_at_ms,
    })
}

/// Appends `body` to `queue` inside `txn`; returns the message id.
fn enqueue(
    txn: &redb::WriteTransaction,
    queue: &str,
    body: String,
    now: i64,
) -> Result<String, StoreError> {
    let mut seqs = txn.open_table(SEQUENCES).map_err(io)?;
    let seq = seqs.get(queue).map_err(io)?.map_or(0, |v| v.value());
    seqs.insert(queue, seq + 1).map_err(io)?;
    let mut messages = txn.open_table(MESSAGES).map_err(io)?;
    let m = Message {
        body,
        receive_count: 0,
        visible_at_ms: now,
    };
    messages
        .insert((queue, seq), encode(&m)?.as_slice())
        .map_err(io)?;
    Ok(message_id(queue, seq))
}

fn message_id(queue: &str, seq: u64) -> String {
    format!("{queue}-{seq}")
}

/// A message as `GET /_local/queues` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    /// Message id.
    pub message_id: String,
    /// Times received.
    pub receive_count: u32,
    /// The body (an EventBridge event, or whatever was injected).
    pub body: serde_json::Value,
}

/// A queue's state as `GET /_local/queues` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct QueueView {
    /// Queue (consumer) name.
    pub name: String,
    /// Messages ready to be received.
    pub visible: usize,
    /// Messages received and not yet deleted (waiting for the visibility timeout if they failed).
    pub in_flight: usize,
    /// Receives before the DLQ.
    pub max_receive_count: u32,
    /// Visibility timeout, ms.
    pub visibility_timeout_ms: u64,
    /// Dead-letter messages.
    pub dlq: Vec<MessageView>,
}

/// An emulated SQS queue with its DLQ, stored in the embedded store's file.
#[derive(Clone)]
pub struct LocalQueue {
    /// Name (the consumer's).
    pub name: String,
    pattern: serde_json::Value,
    visibility: Duration,
    max_receive_count: u32,
    store: EmbeddedStore,
}

impl std::fmt::Debug for LocalQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalQueue")
            .field("name", &self.name)
            .field("visibility", &self.visibility)
            .field("max_receive_count", &self.max_receive_count)
            .finish_non_exhaustive()
    }
}

fn view(id: String, m: &Message) -> MessageView {
    MessageView {
        message_id: id,
        receive_count: m.receive_count,
        body: serde_json::from_str(&m.body)
            .unwrap_or_else(|_| serde_json::Value::String(m.body.clone())),
    }
}

impl LocalQueue {
    /// A queue as infra/ declares it, kept in `store`, with an optional visibility timeout override
    /// (local runs and tests do not want to wait the deployed minutes before a retry).
    pub fn from_infra(
        store: EmbeddedStore,
        q: &ConsumerQueue,
        visibility_override: Option<Duration>,
    ) -> Self {
        Self {
            name: q.consumer(),
            pattern: q.event_pattern.clone(),
            visibility: visibility_override.unwrap_or_else(|| {
                Duration::from_secs(u64::try_from(q.visibility_timeout_seconds).unwrap_or(60))
            }),
            max_receive_count: u32::try_from(q.max_receive_count).unwrap_or(5),
            store,
        }
    }

    fn visibility_ms(&self) -> i64 {
        i64::try_from(self.visibility.as_millis()).unwrap_or(i64::MAX)
    }

    /// Whether the queue's rule matches an EventBridge event.
    pub fn matches(&self, event: &serde_json::Value) -> bool {
        pattern_matches(&self.pattern, event)
    }

    /// Enqueues a body (durably); returns the message id.
    pub async fn send(&self, body: String) -> Result<String, StoreError> {
        let name = self.name.clone();
        self.store
            .write(move |txn| Ok((enqueue(txn, &name, body.clone(), now_ms())?, true)))
            .await
    }

    /// Receives up to `max` visible messages, as SQS does: each receive counts, makes the message
    /// invisible for the visibility timeout, and a message already received `maxReceiveCount` times moves
    /// to the DLQ instead of being delivered again. All of it in one durable transaction; nothing is
    /// written when nothing is visible.
    pub async fn receive(&self, max: usize) -> Result<Vec<SqsMessage>, StoreError> {
        let (name, visibility, max_receives) = (
            self.name.clone(),
            self.visibility_ms(),
            self.max_receive_count,
        );
        self.store
            .write(move |txn| {
                let now = now_ms();
                let mut messages = txn.open_table(MESSAGES).map_err(io)?;
                let mut taken: Vec<(u64, Message)> = Vec::new();
                let mut dead: Vec<(u64, Message)> = Vec::new();
                for row in messages
                    .range((name.as_str(), 0)..=(name.as_str(), u64::MAX))
                    .map_err(io)?
                {
                    if taken.len() >= max {
                        break;
                    }
                    let (k, v) = row.map_err(io)?;
                    if header(v.value())?.0 > now {
                        continue;
                    }
                    let m = decode(v.value())?;
                    let seq = k.value().1;
                    if m.receive_count >= max_receives {
                        dead.push((seq, m));
                    } else {
                        taken.push((seq, m));
                    }
                }
                let changed = !(taken.is_empty() && dead.is_empty());
                if !dead.is_empty() {
                    let mut dlq = txn.open_table(DLQ).map_err(io)?;
                    for (seq, m) in &dead {
                        tracing::warn!(queue = %name, message_id = %message_id(&name, *seq), "moved to the DLQ after maxReceiveCount receives");
                        messages.remove((name.as_str(), *seq)).map_err(io)?;
                        dlq.insert((name.as_str(), *seq), encode(m)?.as_slice())
                            .map_err(io)?;
                    }
                }
                let mut out = Vec::with_capacity(taken.len());
                for (seq, mut m) in taken {
                    m.receive_count += 1;
                    m.visible_at_ms = now.saturating_add(visibility);
                    messages
                        .insert((name.as_str(), seq), encode(&m)?.as_slice())
                        .map_err(io)?;
                    let id = message_id(&name, seq);
                    let mut r = SqsMessage::default();
                    r.message_id = Some(id.clone());
                    r.receipt_handle = Some(id);
                    r.body = Some(m.body);
                    r.event_source = Some("aws:sqs".into());
                    r.attributes.insert(
                        "ApproximateReceiveCount".into(),
                        m.receive_count.to_string(),
                    );
                    out.push(r);
                }
                Ok((out, changed))
            })
            .await
    }

    /// Deletes received messages by id (their receipt handles), in one transaction. Unknown ids are
    /// ignored, as SQS ignores a stale receipt handle.
    pub async fn delete(&self, ids: &[&str]) -> Result<(), StoreError> {
        let prefix = format!("{}-", self.name);
        let seqs: Vec<u64> = ids
            .iter()
            .filter_map(|id| id.strip_prefix(prefix.as_str())?.parse().ok())
            .collect();
        if seqs.is_empty() {
            return Ok(());
        }
        let name = self.name.clone();
        self.store
            .write(move |txn| {
                let mut messages = txn.open_table(MESSAGES).map_err(io)?;
                let mut changed = false;
                for &seq in &seqs {
                    changed |= messages.remove((name.as_str(), seq)).map_err(io)?.is_some();
                }
                Ok(((), changed))
            })
            .await
    }

    fn seq_of(&self, receipt_handle: &str) -> Option<u64> {
        receipt_handle
            .strip_prefix(self.name.as_str())?
            .strip_prefix('-')?
            .parse()
            .ok()
    }

    /// Makes a received message visible again `after` from now (`ChangeMessageVisibility`); an unknown
    /// receipt handle is ignored, as SQS ignores a stale one.
    pub async fn change_visibility(
        &self,
        receipt_handle: &str,
        after: Duration,
    ) -> Result<(), StoreError> {
        let Some(seq) = self.seq_of(receipt_handle) else {
            return Ok(());
        };
        let name = self.name.clone();
        let after_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        self.store
            .write(move |txn| {
                let mut messages = txn.open_table(MESSAGES).map_err(io)?;
                let current = match messages.get((name.as_str(), seq)).map_err(io)? {
                    Some(v) => decode(v.value())?,
                    None => return Ok(((), false)),
                };
                let moved = Message {
                    visible_at_ms: now_ms().saturating_add(after_ms),
                    ..current
                };
                messages
                    .insert((name.as_str(), seq), encode(&moved)?.as_slice())
                    .map_err(io)?;
                Ok(((), true))
            })
            .await
    }

    /// Puts `body` in the DLQ directly (what a delivery function does with a record it gives up on).
    pub async fn dead_letter(&self, body: String) -> Result<(), StoreError> {
        let name = self.name.clone();
        self.store
            .write(move |txn| {
                let mut seqs = txn.open_table(SEQUENCES).map_err(io)?;
                let seq = seqs
                    .get(name.as_str())
                    .map_err(io)?
                    .map_or(0, |v| v.value());
                seqs.insert(name.as_str(), seq + 1).map_err(io)?;
                let mut dlq = txn.open_table(DLQ).map_err(io)?;
                let m = Message {
                    body: body.clone(),
                    receive_count: 0,
                    visible_at_ms: now_ms(),
                };
                dlq.insert((name.as_str(), seq), encode(&m)?.as_slice())
                    .map_err(io)?;
                Ok(((), true))
            })
            .await
    }

    /// Moves every DLQ message back to the queue with a fresh receive count. Returns how many.
    pub async fn redrive(&self) -> Result<usize, StoreError> {
        let name = self.name.clone();
        self.store
            .write(move |txn| {
                let now = now_ms();
                let mut dlq = txn.open_table(DLQ).map_err(io)?;
                let mut moved = Vec::new();
                for row in dlq
                    .range((name.as_str(), 0)..=(name.as_str(), u64::MAX))
                    .map_err(io)?
                {
                    let (k, v) = row.map_err(io)?;
                    moved.push((k.value().1, decode(v.value())?));
                }
                let mut messages = txn.open_table(MESSAGES).map_err(io)?;
                for (seq, m) in &moved {
                    dlq.remove((name.as_str(), *seq)).map_err(io)?;
                    let fresh = Message {
                        body: m.body.clone(),
                        receive_count: 0,
                        visible_at_ms: now,
                    };
                    messages
                        .insert((name.as_str(), *seq), encode(&fresh)?.as_slice())
                        .map_err(io)?;
                }
                Ok((moved.len(), !moved.is_empty()))
            })
            .await
    }

    /// The queue's state.
    pub async fn view(&self) -> Result<QueueView, StoreError> {
        let name = self.name.clone();
        let (max_receive_count, visibility_timeout_ms) = (
            self.max_receive_count,
            u64::try_from(self.visibility.as_millis()).unwrap_or(u64::MAX),
        );
        self.store
            .read(move |txn| {
                let now = now_ms();
                let (mut visible, mut in_flight) = (0, 0);
                let range = (name.as_str(), 0)..=(name.as_str(), u64::MAX);
                // Tables are created by the first write; before it the queue is simply empty.
                if let Ok(messages) = txn.open_table(MESSAGES) {
                    for row in messages.range(range.clone()).map_err(io)? {
                        let (_, v) = row.map_err(io)?;
                        if header(v.value())?.0 <= now {
                            visible += 1;
                        } else {
                            in_flight += 1;
                        }
                    }
                }
                let mut dlq = Vec::new();
                if let Ok(t) = txn.open_table(DLQ) {
                    for row in t.range(range).map_err(io)? {
                        let (k, v) = row.map_err(io)?;
                        dlq.push(view(message_id(&name, k.value().1), &decode(v.value())?));
                    }
                }
                Ok(QueueView {
                    name,
                    visible,
                    in_flight,
                    max_receive_count,
                    visibility_timeout_ms,
                    dlq,
                })
            })
            .await
    }

    /// Messages not yet deleted (visible + in flight).
    pub async fn pending(&self) -> Result<usize, StoreError> {
        let v = self.view().await?;
        Ok(v.visible + v.in_flight)
    }
}

/// The emulated bus: routes each event to the queues whose rule matches, as EventBridge delivers to
/// SQS targets, durably and together with the outbox mark (module docs); keeps the events it routed
/// since start for `/_local/events`.
pub struct LocalBus {
    store: EmbeddedStore,
    events: Mutex<Vec<EventEnvelope>>,
    queues: Vec<Arc<LocalQueue>>,
    /// EventBridge ids: `eb-{start ms}-{n}`, unique across restarts.
    started_ms: i64,
    ids: AtomicU64,
}

impl std::fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBus")
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

impl LocalBus {
    /// A bus routing to `queues`, all kept in `store`.
    pub fn new(store: EmbeddedStore, queues: Vec<Arc<LocalQueue>>) -> Self {
        Self {
            store,
            events: Mutex::new(Vec::new()),
            queues,
            started_ms: now_ms(),
            ids: AtomicU64::new(0),
        }
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Events routed since start.
    pub fn events(&self) -> Vec<EventEnvelope> {
        Self::lock(&self.events).clone()
    }

    /// The queues.
    pub fn queues(&self) -> &[Arc<LocalQueue>] {
        &self.queues
    }

    /// The queue named `name`.
    pub fn queue(&self, name: &str) -> Option<&Arc<LocalQueue>> {
        self.queues.iter().find(|q| q.name == name)
    }
}

#[async_trait]
impl EventPublisher for LocalBus {
    /// The bus's single entry point (captures, the relay and stock-sync's alerts all come here).
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), PublishError> {
        // EventBridge's entry size limit, checked as the EventBridge adapter does, before anything is routed.
        for envelope in events {
            pos_shared::bus::check_entry(envelope)?;
        }
        // Routed before the transaction: (envelope, body, matching queue names).
        let mut routed: Vec<(EventEnvelope, String, Vec<String>)> =
            Vec::with_capacity(events.len());
        for envelope in events {
            let n = self.ids.fetch_add(1, Ordering::Relaxed);
            let message = BusMessage::new(format!("eb-{}-{n}", self.started_ms), envelope.clone());
            let as_json = serde_json::to_value(&message)
                .map_err(|e| PublishError::Unavailable(e.to_string()))?;
            let targets = self
                .queues
                .iter()
                .filter(|q| q.matches(&as_json))
                .map(|q| q.name.clone())
                .collect();
            routed.push((envelope.clone(), as_json.to_string(), targets));
        }
        let delivered = self
            .store
            .write(move |txn| {
                let (now, at) = (now_ms(), chrono::Utc::now());
                let mut delivered = Vec::with_capacity(routed.len());
                let mut changed = false;
                for (envelope, body, targets) in &routed {
                    match mark_published_in(txn, envelope.event_id.as_str(), at)? {
                        // Already published = already in its queues: enqueueing again would double it.
                        OutboxMark::AlreadyPublished => continue,
                        OutboxMark::Marked => changed = true,
                        OutboxMark::NotInOutbox => {}
                    }
                    for queue in targets {
                        enqueue(txn, queue, body.clone(), now)?;
                        changed = true;
                    }
                    delivered.push(envelope.clone());
                }
                // An event no rule routes and no outbox holds (most StockLow) costs no commit.
                Ok((delivered, changed))
            })
            .await
            .map_err(|e| PublishError::Unavailable(e.to_string()))?;
        Self::lock(&self.events).extend(delivered);
        Ok(())
    }
}

/// A consumer of SQS batches (the Lambda handler of an SQS-triggered function).
#[async_trait]
pub trait BatchConsumer: Send + Sync {
    /// Handles a batch, reporting partial failures.
    async fn handle(&self, event: &SqsEvent) -> SqsBatchResponse;
}

/// A delivery function's queue operations on the local queue: the same semantics as on SQS.
#[async_trait]
impl pos_shared::delivery::sync::QueueControl for LocalQueue {
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        after: Duration,
    ) -> Result<(), pos_shared::delivery::sync::QueueError> {
        LocalQueue::change_visibility(self, receipt_handle, after)
            .await
            .map_err(|e| pos_shared::delivery::sync::QueueError(e.to_string()))
    }

    async fn dead_letter(
        &self,
        body: &str,
        reason: &str,
    ) -> Result<(), pos_shared::delivery::sync::QueueError> {
        tracing::error!(queue = %self.name, %reason, "record sent to the DLQ");
        LocalQueue::dead_letter(self, body.to_owned())
            .await
            .map_err(|e| pos_shared::delivery::sync::QueueError(e.to_string()))
    }
}

#[async_trait]
impl BatchConsumer for pos_shared::delivery::sync::DeliverySync {
    async fn handle(&self, event: &SqsEvent) -> SqsBatchResponse {
        self.handle_batch(event).await
    }
}

#[async_trait]
impl BatchConsumer for pos_shared::stock::StockSync {
    async fn handle(&self, event: &SqsEvent) -> SqsBatchResponse {
        self.handle_batch(event).await
    }
}

#[async_trait]
impl BatchConsumer for pos_shared::loyalty::LoyaltyAccrual {
    async fn handle(&self, event: &SqsEvent) -> SqsBatchResponse {
        self.handle_batch(event).await
    }
}

/// Pollers per queue: an event source mapping runs several invocations of the consumer at once (five
/// to start with on AWS). Concurrency is what lets group commit work here: a consumer applies its
/// batch record by record, and the records of the pollers running together share one ledger commit,
/// as their receives and deletes share `pos.redb`'s commits with the captures.
pub const POLLERS_PER_QUEUE: usize = 8;

/// Polls `queue` with [`POLLERS_PER_QUEUE`] pollers, each feeding `consumer` batches of up to 10 like
/// an event source mapping, until the task is dropped (which stops them all).
pub async fn poll(queue: Arc<LocalQueue>, consumer: Arc<dyn BatchConsumer>) {
    let mut pollers = tokio::task::JoinSet::new();
    for _ in 0..POLLERS_PER_QUEUE {
        pollers.spawn(poll_one(queue.clone(), consumer.clone()));
    }
    while pollers.join_next().await.is_some() {}
}

/// One poller: receive, handle, delete what succeeded.
async fn poll_one(queue: Arc<LocalQueue>, consumer: Arc<dyn BatchConsumer>) {
    loop {
        let records = match queue.receive(10).await {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(queue = %queue.name, error = %e, "receive failed; retrying");
                Vec::new()
            }
        };
        if records.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let mut event = SqsEvent::default();
        event.records = records;
        let response = consumer.handle(&event).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        // An empty identifier means "the whole batch failed" (Lambda's rule): delete nothing.
        if failed.contains(&"") {
            continue;
        }
        let done: Vec<&str> = event
            .records
            .iter()
            .filter_map(|r| r.message_id.as_deref())
            .filter(|id| !failed.contains(id))
            .collect();
        if let Err(e) = queue.delete(&done).await {
            // They come back after the visibility timeout; the consumers dedupe by event id.
            tracing::error!(queue = %queue.name, error = %e, "delete failed; the batch will be redelivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::embedded_consumer_queues;
    use pos_shared::capture::{CaptureService, CaptureSettings};
    use pos_shared::ports::SystemClock;
    use pos_shared::samples;
    use pos_shared::secrets::{StaticSecrets, dev_secrets};
    use pos_shared::store::StoreInspect;

    fn queue(store: &EmbeddedStore, visibility_ms: u64) -> LocalQueue {
        let q = embedded_consumer_queues()
            .into_iter()
            .next()
            .expect("a consumer queue");
        LocalQueue::from_infra(
            store.clone(),
            &q,
            Some(Duration::from_millis(visibility_ms)),
        )
    }

    #[test]
    fn stored_messages_round_trip_and_damaged_ones_are_corrupt_not_a_panic() {
        let m = Message {
            body: "{\"a\":\"é\"}".into(),
            receive_count: 3,
            visible_at_ms: -5,
        };
        let bytes = encode(&m).expect("encode");
        assert_eq!(header(&bytes).expect("header"), (-5, 3));
        assert_eq!(decode(&bytes).expect("decode").body, m.body);
        for bad in [&bytes[..11], &[][..]] {
            assert!(matches!(decode(bad), Err(StoreError::Corrupt(_))));
        }
        let mut not_utf8 = bytes[..HEADER].to_vec();
        not_utf8.push(0xff);
        assert!(matches!(decode(&not_utf8), Err(StoreError::Corrupt(_))));
    }

    #[tokio::test]
    async fn a_delivery_function_moves_visibility_and_dead_letters_as_on_sqs() {
        use pos_shared::delivery::sync::QueueControl;
        let store = EmbeddedStore::in_memory().expect("store");
        let q = queue(&store, 10);
        q.send("later".into()).await.expect("send");
        let got = q.receive(10).await.expect("receive");
        let handle = got[0].receipt_handle.clone().expect("handle");
        // Requeued for an hour: the default 10 ms visibility no longer applies.
        QueueControl::change_visibility(&q, &handle, Duration::from_secs(3600))
            .await
            .expect("visibility");
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(q.receive(10).await.expect("receive").is_empty(), "hidden");
        // Back to now: visible again; a stale handle is ignored.
        QueueControl::change_visibility(&q, &handle, Duration::ZERO)
            .await
            .expect("visibility");
        QueueControl::change_visibility(&q, "nope-1", Duration::ZERO)
            .await
            .expect("stale handle");
        assert_eq!(q.receive(10).await.expect("receive").len(), 1);
        QueueControl::dead_letter(&q, "refused", "commercetools: HTTP 400")
            .await
            .expect("dlq");
        let v = q.view().await.expect("view");
        assert_eq!(v.dlq.len(), 1);
        assert_eq!(v.dlq[0].body, serde_json::json!("refused"));
    }

    #[tokio::test]
    async fn received_messages_are_invisible_until_the_timeout_then_dead_lettered() {
        let store = EmbeddedStore::in_memory().expect("store");
        let q = queue(&store, 30);
        q.send("poison".into()).await.expect("send");
        for attempt in 1..=q.max_receive_count {
            let got = q.receive(10).await.expect("receive");
            assert_eq!(got.len(), 1, "attempt {attempt}");
            assert_eq!(
                got[0].attributes.get("ApproximateReceiveCount"),
                Some(&attempt.to_string())
            );
            assert!(
                q.receive(10).await.expect("receive").is_empty(),
                "invisible while in flight"
            );
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        assert!(q.receive(10).await.expect("receive").is_empty());
        let v = q.view().await.expect("view");
        assert_eq!((v.visible, v.in_flight, v.dlq.len()), (0, 0, 1));
        assert_eq!(q.redrive().await.expect("redrive"), 1);
        assert_eq!(
            q.receive(10).await.expect("receive").len(),
            1,
            "redriven with a fresh receive count"
        );
    }

    #[tokio::test]
    async fn deleted_messages_are_gone_and_stale_handles_delete_nothing() {
        let store = EmbeddedStore::in_memory().expect("store");
        let q = queue(&store, 1000);
        let id = q.send("x".into()).await.expect("send");
        assert_eq!(q.receive(10).await.expect("receive").len(), 1);
        q.delete(&[id.as_str()]).await.expect("delete");
        assert_eq!(q.pending().await.expect("pending"), 0);
        // Sequence numbers are never reused: the old handle cannot delete a newer message.
        q.send("y".into()).await.expect("send");
        q.delete(&[id.as_str(), "garbage", "other-queue-1"])
            .await
            .expect("delete");
        assert_eq!(q.pending().await.expect("pending"), 1);
    }

    #[tokio::test]
    async fn messages_and_receive_counts_survive_a_reopen_and_in_flight_ones_come_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = EmbeddedStore::open(dir.path()).expect("store");
            let q = queue(&store, 1000);
            q.send("a".into()).await.expect("send");
            q.send("b".into()).await.expect("send");
            let got = q.receive(1).await.expect("receive");
            assert_eq!(got[0].body.as_deref(), Some("a"));
            // Dropped here mid-handler, like a process killed before it deleted "a".
        }
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        let q = queue(&store, 1000);
        let v = q.view().await.expect("view");
        assert_eq!((v.visible, v.in_flight), (1, 1));
        let got = q.receive(10).await.expect("receive");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body.as_deref(), Some("b"));
        let b = got[0].message_id.clone().expect("id");
        q.delete(&[b.as_str()]).await.expect("delete");
        tokio::time::sleep(Duration::from_millis(1050)).await;
        let again = q.receive(10).await.expect("receive");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].body.as_deref(), Some("a"));
        assert_eq!(
            again[0].attributes.get("ApproximateReceiveCount"),
            Some(&"2".to_owned()),
            "the receive count survived the restart"
        );
    }

    #[tokio::test]
    async fn publishing_enqueues_and_marks_the_outbox_together_and_never_twice() {
        let store = EmbeddedStore::in_memory().expect("store");
        let queues: Vec<Arc<LocalQueue>> = embedded_consumer_queues()
            .iter()
            .map(|q| Arc::new(LocalQueue::from_infra(store.clone(), q, None)))
            .collect();
        let bus = Arc::new(LocalBus::new(store.clone(), queues.clone()));
        let mut feed = store.subscribe_outbox();
        let relay = pos_shared::outbox::OutboxRelay::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            bus.clone(),
            Arc::new(SystemClock),
            chrono::Duration::seconds(60),
            100,
            Arc::new(pos_shared::metrics::Metrics::new(
                "outbox-relay",
                pos_shared::metrics::Sink::Off,
            )),
        );
        let capture = CaptureService::new(
            Arc::new(store.clone()),
            Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
            Arc::new(SystemClock),
            CaptureSettings::default(),
        );
        let sale = samples::standard(
            "msg_pub_1",
            &samples::standard_sale("pub-1", "store-1", Some("member-1"), 1),
            chrono::Utc::now(),
            None,
        );
        let mut headers = http::HeaderMap::new();
        for (k, v) in &sale.headers {
            headers.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                http::HeaderValue::from_str(v).expect("value"),
            );
        }
        let answer = capture
            .handle(&pos_shared::capture::WebhookRequest {
                method: http::Method::POST,
                vendor: "standard".into(),
                headers,
                body: sale.body.clone(),
                correlation_id: "req-1".into(),
            })
            .await
            .expect("captured");
        assert!(
            matches!(answer, pos_shared::capture::Captured::Accepted { .. }),
            "{answer:?}"
        );
        assert_eq!(store.pending_outbox().await.expect("outbox").len(), 1);
        // The feed's publisher: enqueue + mark in one transaction.
        let published = pos_shared::outbox::feed::drain(&mut feed, &relay).await;
        assert_eq!(published.published.len(), 1);
        assert!(store.pending_outbox().await.expect("outbox").is_empty());
        for q in &queues {
            assert_eq!(q.pending().await.expect("pending"), 1, "{}", q.name);
        }
        // The relay (or a redelivery) publishing the same entry again adds nothing.
        let envelope = bus.events()[0].clone();
        bus.publish(&[envelope]).await.expect("publish");
        for q in &queues {
            assert_eq!(q.pending().await.expect("pending"), 1, "{}", q.name);
        }
    }
}
