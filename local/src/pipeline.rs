//! The emulated event pipeline: an EventBridge bus whose rules are those of `infra/consumers.tf`, SQS
//! queues with visibility timeout, receive counts and redrive to a DLQ, and pollers that hand the
//! consumers the SQS event shape the Lambda receives, deleting what succeeded and leaving the reported
//! `batchItemFailures` to reappear after the visibility timeout.
//!
//! Queues live in memory: messages in flight when `pos-local` stops are gone, like a queue deleted with
//! its stack. Everything the consumers committed is in the embedded stores.

use crate::infra::{ConsumerQueue, pattern_matches};
use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use pos_shared::bus::{BusMessage, PublishError};
use pos_shared::model::EventEnvelope;
use pos_shared::ports::EventPublisher;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
struct Message {
    id: String,
    body: String,
    receive_count: u32,
    visible_at: Instant,
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

/// An emulated SQS queue with its DLQ.
#[derive(Debug)]
pub struct LocalQueue {
    /// Name (the consumer's).
    pub name: String,
    pattern: serde_json::Value,
    visibility: Duration,
    max_receive_count: u32,
    ids: AtomicU64,
    messages: Mutex<VecDeque<Message>>,
    dlq: Mutex<Vec<Message>>,
}

fn view(m: &Message) -> MessageView {
    MessageView {
        message_id: m.id.clone(),
        receive_count: m.receive_count,
        body: serde_json::from_str(&m.body)
            .unwrap_or_else(|_| serde_json::Value::String(m.body.clone())),
    }
}

impl LocalQueue {
    /// A queue as infra/ declares it, with an optional visibility timeout override (local runs and
    /// tests do not want to wait the deployed 3 minutes before a retry).
    pub fn from_infra(q: &ConsumerQueue, visibility_override: Option<Duration>) -> Self {
        Self {
            name: q.consumer(),
            pattern: q.event_pattern.clone(),
            visibility: visibility_override.unwrap_or_else(|| {
                Duration::from_secs(u64::try_from(q.visibility_timeout_seconds).unwrap_or(60))
            }),
            max_receive_count: u32::try_from(q.max_receive_count).unwrap_or(5),
            ids: AtomicU64::new(0),
            messages: Mutex::new(VecDeque::new()),
            dlq: Mutex::new(Vec::new()),
        }
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the queue's rule matches an EventBridge event.
    pub fn matches(&self, event: &serde_json::Value) -> bool {
        pattern_matches(&self.pattern, event)
    }

    /// Enqueues a body.
    pub fn send(&self, body: String) -> String {
        let id = format!("{}-{}", self.name, self.ids.fetch_add(1, Ordering::Relaxed));
        Self::lock(&self.messages).push_back(Message {
            id: id.clone(),
            body,
            receive_count: 0,
            visible_at: Instant::now(),
        });
        id
    }

    /// Receives up to `max` visible messages, as SQS does: each receive counts, makes the message
    /// invisible for the visibility timeout, and a message already received `maxReceiveCount` times moves
    /// to the DLQ instead of being delivered again.
    pub fn receive(&self, max: usize) -> Vec<SqsMessage> {
        let now = Instant::now();
        let mut messages = Self::lock(&self.messages);
        let mut out = Vec::new();
        let mut dead = Vec::new();
        for m in messages.iter_mut().filter(|m| m.visible_at <= now) {
            if out.len() >= max {
                break;
            }
            if m.receive_count >= self.max_receive_count {
                dead.push(m.id.clone());
                continue;
            }
            m.receive_count += 1;
            m.visible_at = now + self.visibility;
            let mut r = SqsMessage::default();
            r.message_id = Some(m.id.clone());
            r.receipt_handle = Some(m.id.clone());
            r.body = Some(m.body.clone());
            r.event_source = Some("aws:sqs".into());
            r.attributes.insert(
                "ApproximateReceiveCount".into(),
                m.receive_count.to_string(),
            );
            out.push(r);
        }
        if !dead.is_empty() {
            let mut dlq = Self::lock(&self.dlq);
            messages.retain(|m| {
                if dead.contains(&m.id) {
                    tracing::warn!(queue = %self.name, message_id = %m.id, "moved to the DLQ after maxReceiveCount receives");
                    dlq.push(m.clone());
                    false
                } else {
                    true
                }
            });
        }
        out
    }

    /// Deletes a received message.
    pub fn delete(&self, id: &str) {
        Self::lock(&self.messages).retain(|m| m.id != id);
    }

    /// Moves every DLQ message back to the queue with a fresh receive count. Returns how many.
    pub fn redrive(&self) -> usize {
        let moved: Vec<Message> = std::mem::take(&mut *Self::lock(&self.dlq));
        let n = moved.len();
        let now = Instant::now();
        Self::lock(&self.messages).extend(moved.into_iter().map(|m| Message {
            receive_count: 0,
            visible_at: now,
            ..m
        }));
        n
    }

    /// The queue's state.
    pub fn view(&self) -> QueueView {
        let now = Instant::now();
        let messages = Self::lock(&self.messages);
        QueueView {
            name: self.name.clone(),
            visible: messages.iter().filter(|m| m.visible_at <= now).count(),
            in_flight: messages.iter().filter(|m| m.visible_at > now).count(),
            max_receive_count: self.max_receive_count,
            visibility_timeout_ms: u64::try_from(self.visibility.as_millis()).unwrap_or(u64::MAX),
            dlq: Self::lock(&self.dlq).iter().map(view).collect(),
        }
    }

    /// Messages not yet deleted (visible + in flight).
    pub fn pending(&self) -> usize {
        Self::lock(&self.messages).len()
    }
}

/// The emulated bus: keeps every event (for `/_local/events`) and routes each to the queues whose rule
/// matches, as EventBridge delivers to SQS targets.
#[derive(Debug)]
pub struct LocalBus {
    events: Mutex<Vec<EventEnvelope>>,
    queues: Vec<Arc<LocalQueue>>,
    ids: AtomicU64,
}

impl LocalBus {
    /// A bus routing to `queues`.
    pub fn new(queues: Vec<Arc<LocalQueue>>) -> Self {
        Self {
            events: Mutex::new(Vec::new()),
            queues,
            ids: AtomicU64::new(0),
        }
    }

    /// Events published since start.
    pub fn events(&self) -> Vec<EventEnvelope> {
        LocalQueue::lock(&self.events).clone()
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
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), PublishError> {
        // EventBridge's entry size limit, checked as the EventBridge adapter does, before anything is routed.
        for envelope in events {
            pos_shared::bus::check_entry(envelope)?;
        }
        for envelope in events {
            let id = format!("eb-{}", self.ids.fetch_add(1, Ordering::Relaxed));
            let message = BusMessage::new(id, envelope.clone());
            let as_json = serde_json::to_value(&message)
                .map_err(|e| PublishError::Unavailable(e.to_string()))?;
            let body = as_json.to_string();
            for q in self.queues.iter().filter(|q| q.matches(&as_json)) {
                q.send(body.clone());
            }
            LocalQueue::lock(&self.events).push(envelope.clone());
        }
        Ok(())
    }
}

/// A consumer of SQS batches (the Lambda handler of an SQS-triggered function).
#[async_trait]
pub trait BatchConsumer: Send + Sync {
    /// Handles a batch, reporting partial failures.
    async fn handle(&self, event: &SqsEvent) -> SqsBatchResponse;
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

/// Polls `queue` and feeds `consumer` batches of up to 10, like an event source mapping, until the
/// task is dropped.
pub async fn poll(queue: Arc<LocalQueue>, consumer: Arc<dyn BatchConsumer>) {
    loop {
        let records = queue.receive(10);
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
        for r in &event.records {
            let id = r.message_id.as_deref().unwrap_or_default();
            // An empty identifier means "the whole batch failed" (Lambda's rule): delete nothing.
            if failed.contains(&"") {
                break;
            }
            if !failed.contains(&id) {
                queue.delete(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::embedded_consumer_queues;

    fn queue(visibility_ms: u64) -> LocalQueue {
        let q = embedded_consumer_queues()
            .into_iter()
            .next()
            .expect("a consumer queue");
        LocalQueue::from_infra(&q, Some(Duration::from_millis(visibility_ms)))
    }

    #[tokio::test]
    async fn received_messages_are_invisible_until_the_timeout_then_dead_lettered() {
        let q = queue(30);
        q.send("poison".into());
        for attempt in 1..=q.max_receive_count {
            let got = q.receive(10);
            assert_eq!(got.len(), 1, "attempt {attempt}");
            assert_eq!(
                got[0].attributes.get("ApproximateReceiveCount"),
                Some(&attempt.to_string())
            );
            assert!(q.receive(10).is_empty(), "invisible while in flight");
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        assert!(q.receive(10).is_empty());
        let v = q.view();
        assert_eq!((v.visible, v.in_flight, v.dlq.len()), (0, 0, 1));
        assert_eq!(q.redrive(), 1);
        assert_eq!(
            q.receive(10).len(),
            1,
            "redriven with a fresh receive count"
        );
    }

    #[tokio::test]
    async fn deleted_messages_are_gone() {
        let q = queue(1000);
        let id = q.send("x".into());
        assert_eq!(q.receive(10).len(), 1);
        q.delete(&id);
        assert_eq!(q.pending(), 0);
    }
}
