//! The SQS side of a delivery function (`functions/<destination>-sync`): one queue record, one event,
//! delivered by the function's [`RecordDelivery`] (a destination may be several ledger entries, e.g.
//! commercetools orders and commercetools inventory, or one entry per webhook subscription), with
//! partial batch failure reporting. A `Vec<Deliverer>` runs each of its deliverers; the webhooks'
//! fan-out (`super::webhooks::WebhookFanout`) decides per subscription (filters, disabled endpoints, the
//! spec's schedule). Either answers one outcome per destination, which this module turns into what
//! happens to the record.
//!
//! What each record's outcomes do to the queue:
//! - every destination `Delivered` or `Skipped`: acknowledged (deleted);
//! - any `Requeue(after)`: its visibility timeout is set to `after` (`ChangeMessageVisibility`) and it is
//!   reported failed, so it comes back then, not after the queue's default. Its deliverers that already
//!   delivered skip it next time (the ledger). On the receive that reaches the queue's `maxReceiveCount`
//!   the record is given up instead: the ledger says `dead`, and the record is sent to the DLQ by us
//!   (with the reason) and acknowledged, so the ledger and the DLQ agree;
//! - any `Dead` (the destination refuses it for good): sent to the DLQ with the reason and acknowledged;
//!   nothing is lost, the DLQ alarm fires, and a redrive replays it (the ledger reads back first);
//! - the engine's own stores failing, the claim-checked lines unavailable: reported failed with the
//!   queue's default visibility (retried, then the DLQ through the redrive policy);
//! - a body that is not one of our events: poison, reported failed (the redrive policy moves it).
//!
//! When sending to the DLQ fails, the record is reported failed and comes back (nothing is lost; the
//! deliverers that delivered skip it).

use super::engine::{Deliverer, EngineError, Outcome};
use crate::metrics::Metrics;
use crate::model::EventEnvelope;
use crate::ports::LinesSource;
use crate::sqs_batch::{RecordError, RecordHandler};
use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A queue operation failed.
#[derive(Debug, thiserror::Error)]
#[error("queue: {0}")]
pub struct QueueError(pub String);

/// What a delivery function asks of its queue beyond acknowledging records.
#[async_trait]
pub trait QueueControl: Send + Sync {
    /// Makes the record of `receipt_handle` visible again after `after`.
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        after: Duration,
    ) -> Result<(), QueueError>;

    /// Sends `body` to the dead-letter queue with `reason`.
    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), QueueError>;
}

/// One queue operation, as the in-memory queue recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueCall {
    /// `ChangeMessageVisibility`.
    Visibility {
        /// The record's receipt handle.
        receipt_handle: String,
        /// Seconds.
        after_s: u64,
    },
    /// `SendMessage` to the DLQ.
    DeadLetter {
        /// The record body.
        body: String,
        /// Why.
        reason: String,
    },
}

/// An in-memory [`QueueControl`] for tests: records the calls, fails them on demand. It does not model
/// visibility or receive counts (the tests drive those).
#[derive(Debug, Default)]
pub struct MemoryQueueControl {
    /// The calls made, in order.
    pub calls: Mutex<Vec<QueueCall>>,
    /// When set, every call fails.
    pub failing: std::sync::atomic::AtomicBool,
}

impl MemoryQueueControl {
    fn record(&self, call: QueueCall) -> Result<(), QueueError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(QueueError("queue unavailable".into()));
        }
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(call);
        Ok(())
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<QueueCall> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl QueueControl for MemoryQueueControl {
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        after: Duration,
    ) -> Result<(), QueueError> {
        self.record(QueueCall::Visibility {
            receipt_handle: receipt_handle.to_owned(),
            after_s: after.as_secs(),
        })
    }

    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), QueueError> {
        self.record(QueueCall::DeadLetter {
            body: body.to_owned(),
            reason: reason.to_owned(),
        })
    }
}

/// The queue of a delivery function on SQS.
#[derive(Debug, Clone)]
pub struct SqsQueueControl {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dlq_url: String,
}

impl SqsQueueControl {
    /// The queue at `queue_url` and its DLQ at `dlq_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String, dlq_url: String) -> Self {
        Self {
            client,
            queue_url,
            dlq_url,
        }
    }
}

#[async_trait]
impl QueueControl for SqsQueueControl {
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        after: Duration,
    ) -> Result<(), QueueError> {
        let seconds = after
            .as_secs()
            .min(super::retry::SQS_MAX_VISIBILITY.as_secs());
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(i32::try_from(seconds).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| QueueError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }

    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), QueueError> {
        let reason: String = reason.chars().take(256).collect();
        self.client
            .send_message()
            .queue_url(&self.dlq_url)
            .message_body(body)
            .message_attributes(
                "reason",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(reason)
                    .build()
                    .map_err(|e| QueueError(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| QueueError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}

/// Why a record's delivery could not decide: a store it depends on failed, so the record is retried as
/// a whole (with the queue's default visibility).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The engine's ledger or breaker store failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Another store the delivery reads failed (endpoint health, the subscriptions' source).
    #[error("{0}")]
    Store(String),
}

/// How a delivery function delivers one record's event: to each of its destinations, one outcome each.
#[async_trait]
pub trait RecordDelivery: Send + Sync {
    /// Delivers `envelope`, received `receives` times (from 1): `(destination, outcome)` per destination.
    async fn deliver(
        &self,
        envelope: &EventEnvelope,
        receives: u32,
    ) -> Result<Vec<(String, Outcome)>, DeliveryError>;

    /// The queue gives up on `envelope` for `destinations` (their last outcome was `Requeue` on the
    /// last receive): their ledger entries say `dead` with `reason`.
    async fn give_up(
        &self,
        envelope: &EventEnvelope,
        destinations: &[String],
        reason: &str,
    ) -> Result<(), DeliveryError>;
}

#[async_trait]
impl RecordDelivery for Vec<Deliverer> {
    async fn deliver(
        &self,
        envelope: &EventEnvelope,
        receives: u32,
    ) -> Result<Vec<(String, Outcome)>, DeliveryError> {
        let mut outcomes = Vec::with_capacity(self.len());
        for deliverer in self {
            let outcome = deliverer.deliver(envelope, receives).await?;
            outcomes.push((deliverer.destination().to_owned(), outcome));
        }
        Ok(outcomes)
    }

    async fn give_up(
        &self,
        envelope: &EventEnvelope,
        destinations: &[String],
        reason: &str,
    ) -> Result<(), DeliveryError> {
        for deliverer in self {
            if destinations.iter().any(|d| d == deliverer.destination()) {
                deliverer.give_up(envelope, reason).await?;
            }
        }
        Ok(())
    }
}

/// A delivery function's handler: records in, deliveries out.
pub struct DeliverySync {
    delivery: Box<dyn RecordDelivery>,
    queue: Arc<dyn QueueControl>,
    lines: Arc<dyn LinesSource>,
    max_receives: u32,
    metrics: Arc<Metrics>,
}

impl DeliverySync {
    /// A handler running `delivery` (e.g. a `Vec<Deliverer>`) for every record of a queue whose
    /// redrive policy moves a record to the DLQ after `max_receives` receives.
    pub fn new(
        delivery: impl RecordDelivery + 'static,
        queue: Arc<dyn QueueControl>,
        lines: Arc<dyn LinesSource>,
        max_receives: u32,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            delivery: Box::new(delivery),
            queue,
            lines,
            max_receives: max_receives.max(1),
            metrics,
        }
    }

    /// Handles an SQS batch with partial failures.
    pub async fn handle_batch(&self, event: &SqsEvent) -> SqsBatchResponse {
        crate::sqs_batch::process_standard_batch(event, self, &self.metrics).await
    }

    async fn dead_letter(&self, body: &str, reason: &str) -> Result<(), RecordError> {
        self.queue.dead_letter(body, reason).await.map_err(|e| {
            tracing::error!(error = %e, "could not send the record to the DLQ; it comes back");
            RecordError::Retryable(e.to_string())
        })
    }
}

fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
}

#[async_trait]
impl RecordHandler for DeliverySync {
    async fn handle_record(&self, record: &SqsMessage) -> Result<(), RecordError> {
        let body = record.body.as_deref().unwrap_or_default();
        let msg = crate::bus::BusMessage::parse(body).map_err(RecordError::Poison)?;
        let envelope = crate::store::claim::resolve(self.lines.as_ref(), msg.detail)
            .await
            .map_err(crate::store::claim::record_error)?;
        let receives = receive_count(record);
        let outcomes = self
            .delivery
            .deliver(&envelope, receives)
            .await
            .map_err(|e| RecordError::Retryable(e.to_string()))?;
        let mut requeue: Option<(Duration, Vec<String>)> = None;
        let mut dead: Vec<String> = Vec::new();
        for (destination, outcome) in outcomes {
            match outcome {
                Outcome::Delivered(_) | Outcome::Skipped => {}
                Outcome::Dead(reason) => dead.push(format!("{destination}: {reason}")),
                Outcome::Requeue(after) => {
                    let (soonest, waiting) = requeue.get_or_insert((after, Vec::new()));
                    *soonest = (*soonest).min(after);
                    waiting.push(destination);
                }
            }
        }
        if let Some((after, waiting)) = requeue {
            if receives < self.max_receives {
                let handle = record.receipt_handle.as_deref().unwrap_or_default();
                if let Err(e) = self.queue.change_visibility(handle, after).await {
                    // The queue's default visibility applies instead: later or sooner, never lost.
                    tracing::warn!(error = %e, "visibility not changed");
                }
                return Err(RecordError::Retryable(format!(
                    "requeued for {} s",
                    after.as_secs()
                )));
            }
            // The redrive policy would move it now without telling the ledger: do both here.
            let reason = format!("gave up after {receives} receives");
            self.delivery
                .give_up(&envelope, &waiting, &reason)
                .await
                .map_err(|e| RecordError::Retryable(e.to_string()))?;
            dead.extend(waiting.iter().map(|d| format!("{d}: {reason}")));
        }
        if !dead.is_empty() {
            let reason = dead.join("; ");
            tracing::error!(event_id = %envelope.event_id, %reason, "record sent to the DLQ");
            self.dead_letter(body, &reason).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::breaker::{BreakerConfig, CircuitBreaker, MemoryBreakerStore};
    use crate::delivery::engine::{Destination, Failure, Landed};
    use crate::delivery::ledger::{DeliveryLedger, DeliveryStatus, MemoryDeliveryLedger};
    use crate::delivery::retry::RetryPolicy;
    use crate::model::EventEnvelope;
    use crate::ports::ManualClock;

    /// A destination answering from a script (`ok`, `down`, `bad`), counting its writes.
    struct Scripted {
        name: &'static str,
        script: Mutex<Vec<&'static str>>,
        sends: Mutex<u32>,
    }

    impl Scripted {
        fn new(name: &'static str, script: &[&'static str]) -> Arc<Self> {
            Arc::new(Self {
                name,
                script: Mutex::new(script.to_vec()),
                sends: Mutex::new(0),
            })
        }
        fn sends(&self) -> u32 {
            *self.sends.lock().expect("lock")
        }
    }

    #[async_trait]
    impl Destination for Scripted {
        fn name(&self) -> &str {
            self.name
        }
        fn wants(&self, _: &EventEnvelope) -> bool {
            true
        }
        async fn read_back(&self, _: &EventEnvelope) -> Result<Option<Landed>, Failure> {
            Ok(None)
        }
        async fn send(&self, _: &EventEnvelope) -> Result<Landed, Failure> {
            *self.sends.lock().expect("lock") += 1;
            let step = {
                let mut s = self.script.lock().expect("lock");
                if s.is_empty() { "ok" } else { s.remove(0) }
            };
            match step {
                "down" => Err(Failure::Transient {
                    reason: "HTTP 503".into(),
                    retry_after: Some(Duration::from_secs(90)),
                }),
                "bad" => Err(Failure::Permanent {
                    reason: "HTTP 400 InvalidInput".into(),
                }),
                _ => Ok(Landed::default()),
            }
        }
    }

    struct Rig {
        sync: DeliverySync,
        queue: Arc<MemoryQueueControl>,
        ledger: Arc<MemoryDeliveryLedger>,
    }

    fn rig(destinations: &[Arc<Scripted>]) -> Rig {
        let clock = Arc::new(ManualClock::new(crate::samples::sample_time()));
        let ledger = Arc::new(MemoryDeliveryLedger::default());
        let breakers = Arc::new(MemoryBreakerStore::default());
        let deliverers: Vec<Deliverer> = destinations
            .iter()
            .map(|d| {
                Deliverer::new(
                    d.clone(),
                    ledger.clone(),
                    CircuitBreaker::new(breakers.clone(), clock.clone(), BreakerConfig::default()),
                    RetryPolicy::default(),
                    clock.clone(),
                )
            })
            .collect();
        let queue = Arc::new(MemoryQueueControl::default());
        let sync = DeliverySync::new(
            deliverers,
            queue.clone(),
            Arc::new(crate::store::claim::NoLinesSource),
            5,
            Arc::new(Metrics::new("test-sync", crate::metrics::Sink::Off)),
        );
        Rig {
            sync,
            queue,
            ledger,
        }
    }

    fn sale() -> EventEnvelope {
        let body = crate::samples::standard_sale("q-1", "store-1", None, 2);
        crate::samples::envelope_of(&crate::samples::standard(
            "q",
            &body,
            crate::samples::sample_time(),
            None,
        ))
        .expect("a sale")
    }

    fn record(body: &str, receives: u32) -> SqsEvent {
        let mut m = SqsMessage::default();
        m.message_id = Some("m-1".into());
        m.receipt_handle = Some("rh-1".into());
        m.body = Some(body.to_owned());
        m.attributes
            .insert("ApproximateReceiveCount".into(), receives.to_string());
        let mut e = SqsEvent::default();
        e.records = vec![m];
        e
    }

    fn body_of(envelope: &EventEnvelope) -> String {
        serde_json::to_string(&crate::bus::BusMessage::new("evb-1", envelope.clone()))
            .expect("json")
    }

    fn failed(r: &SqsBatchResponse) -> usize {
        r.batch_item_failures.len()
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivered_record_is_acknowledged_without_queue_calls() {
        let dest = Scripted::new("a", &[]);
        let rig = rig(std::slice::from_ref(&dest));
        let r = rig.sync.handle_batch(&record(&body_of(&sale()), 1)).await;
        assert_eq!(failed(&r), 0);
        assert_eq!(dest.sends(), 1);
        assert!(rig.queue.calls().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_requeues_with_the_destinations_delay_and_delivered_parts_are_not_repeated() {
        let fine = Scripted::new("fine", &[]);
        // A 503 with Retry-After 90 s: longer than worth waiting in the function.
        let down = Scripted::new("down", &["down"]);
        let rig = rig(&[fine.clone(), down.clone()]);
        let event = sale();
        let r = rig.sync.handle_batch(&record(&body_of(&event), 1)).await;
        assert_eq!(failed(&r), 1);
        assert_eq!(
            rig.queue.calls(),
            vec![QueueCall::Visibility {
                receipt_handle: "rh-1".into(),
                after_s: 90
            }]
        );
        let r = rig.sync.handle_batch(&record(&body_of(&event), 2)).await;
        assert_eq!(failed(&r), 0);
        assert_eq!(
            (fine.sends(), down.sends()),
            (1, 2),
            "fine is not called again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_receive_gives_up_into_the_dlq_and_the_ledger_says_dead() {
        let down = Scripted::new("down", &["down"]);
        let rig = rig(std::slice::from_ref(&down));
        let event = sale();
        let body = body_of(&event);
        let r = rig.sync.handle_batch(&record(&body, 5)).await;
        assert_eq!(failed(&r), 0, "acknowledged: it is in the DLQ");
        assert_eq!(
            rig.queue.calls(),
            vec![QueueCall::DeadLetter {
                body: body.clone(),
                reason: "down: gave up after 5 receives".into()
            }]
        );
        let entry = rig
            .ledger
            .get(&event.event_id, "down")
            .await
            .expect("get")
            .expect("entry");
        assert_eq!(entry.status, DeliveryStatus::Dead);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_record_goes_to_the_dlq_and_is_kept_when_the_dlq_is_down() {
        let bad = Scripted::new("bad", &["bad", "bad"]);
        let rig = rig(std::slice::from_ref(&bad));
        let body = body_of(&sale());
        rig.queue
            .failing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let r = rig.sync.handle_batch(&record(&body, 1)).await;
        assert_eq!(
            failed(&r),
            1,
            "not acknowledged while the DLQ cannot take it"
        );
        rig.queue
            .failing
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let r = rig.sync.handle_batch(&record(&body, 2)).await;
        assert_eq!(failed(&r), 0);
        assert!(matches!(
            rig.queue.calls().as_slice(),
            [QueueCall::DeadLetter { reason, .. }] if reason == "bad: HTTP 400 InvalidInput"
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_is_not_our_event_is_poison_and_calls_nobody() {
        let dest = Scripted::new("a", &[]);
        let rig = rig(std::slice::from_ref(&dest));
        let r = rig
            .sync
            .handle_batch(&record("{\"not\":\"ours\"}", 1))
            .await;
        assert_eq!(failed(&r), 1);
        assert_eq!(dest.sends(), 0);
    }

    /// A fan-out with `off` (disabled) and `down` (nothing listens) as the function's delivery.
    async fn webhooks_rig() -> (
        DeliverySync,
        Arc<MemoryQueueControl>,
        Arc<MemoryDeliveryLedger>,
    ) {
        use crate::delivery::webhooks::{
            EndpointHealth, FanoutParts, HealthRecord, HealthStore, MemoryHealthStore,
            WebhookFanout, subscriptions_from_json,
        };
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let subs = subscriptions_from_json(&serde_json::json!({"subscriptions": [
            {"id": "off", "url": format!("http://127.0.0.1:{port}/off"), "secrets": key},
            {"id": "down", "url": format!("http://127.0.0.1:{port}/down"), "secrets": key},
        ]}))
        .expect("valid");
        let clock: Arc<dyn crate::ports::Clock> =
            Arc::new(ManualClock::new(crate::samples::sample_time()));
        let health_store = Arc::new(MemoryHealthStore::default());
        let disabled = HealthRecord {
            failing_since: Some(crate::samples::sample_time()),
            disabled_at: Some(crate::samples::sample_time()),
            version: 0,
        };
        assert!(
            health_store
                .compare_and_set("off", None, &disabled)
                .await
                .expect("store")
        );
        let ledger = Arc::new(MemoryDeliveryLedger::default());
        let fanout = WebhookFanout::new(
            subs,
            FanoutParts {
                client: crate::delivery::client::DestinationClient::unauthenticated(
                    crate::delivery::webhooks::http_client().expect("client"),
                    clock.clone(),
                    Duration::from_secs(1),
                ),
                ledger: ledger.clone(),
                breakers: Arc::new(MemoryBreakerStore::default()),
                breaker_config: BreakerConfig::default(),
                health: EndpointHealth::new(health_store, EndpointHealth::DEFAULT_DISABLE_AFTER),
                clock,
                metrics: Arc::new(Metrics::new("test-sync", crate::metrics::Sink::Off)),
            },
        );
        let queue = Arc::new(MemoryQueueControl::default());
        let sync = DeliverySync::new(
            fanout,
            queue.clone(),
            Arc::new(crate::store::claim::NoLinesSource),
            5,
            Arc::new(Metrics::new("test-sync", crate::metrics::Sink::Off)),
        );
        (sync, queue, ledger)
    }

    #[tokio::test]
    async fn the_webhooks_fanout_requeues_its_failing_subscription_and_acknowledges_a_disabled_one()
    {
        let (sync, queue, ledger) = webhooks_rig().await;
        let event = sale();
        let body = body_of(&event);
        let r = sync.handle_batch(&record(&body, 1)).await;
        assert_eq!(failed(&r), 1, "down is retried");
        assert!(
            matches!(queue.calls().as_slice(), [QueueCall::Visibility { after_s, .. }] if *after_s >= 5),
            "the spec's first delay at least: {:?}",
            queue.calls()
        );
        let off = ledger
            .get(&event.event_id, "webhooks:off")
            .await
            .expect("get")
            .expect("entry");
        assert_eq!(
            (off.status, off.last_error.as_deref()),
            (DeliveryStatus::Dead, Some("endpoint disabled"))
        );
        // The last receive: only the waiting subscription is given up; the disabled one is not in the
        // DLQ's reason (it is acknowledged, kept in the ledger for a replay).
        let r = sync.handle_batch(&record(&body, 5)).await;
        assert_eq!(failed(&r), 0);
        assert_eq!(
            queue.calls().last(),
            Some(&QueueCall::DeadLetter {
                body,
                reason: "webhooks:down: gave up after 5 receives".into()
            })
        );
        let down = ledger
            .get(&event.event_id, "webhooks:down")
            .await
            .expect("get")
            .expect("entry");
        assert_eq!(down.status, DeliveryStatus::Dead);
    }
}
