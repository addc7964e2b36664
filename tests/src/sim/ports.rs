//! Port wrappers that put the production adapters (redb in memory) under the simulation's control: a
//! step point before and after every call, injected failures (before the call: nothing happened; after
//! it: it happened but the answer was lost), and the broken variants of [`super::ctl::Breaks`].
//!
//! The simulated bus and queues live here too: EventBridge routing with the rules compiled from
//! `infra/consumers.tf`, and SQS standard queues on the simulated clock (visibility timeout, receive
//! count, redrive to a DLQ, stale receipt handles, occasional duplicate delivery).

use super::ctl::Ctl;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use pos_local::infra::{ConsumerQueue, pattern_matches};
use pos_shared::bus::{BusMessage, PublishError, check_entry};
use pos_shared::delivery::breaker::{BreakerRecord, BreakerStore, BreakerStoreError};
use pos_shared::delivery::engine::{Destination, Failure as DeliveryFailure, Landed};
use pos_shared::delivery::ledger::{
    DeliveryEntry, DeliveryLedger, LedgerError as DeliveryLedgerError,
};
use pos_shared::delivery::sync::{QueueControl, QueueError};
use pos_shared::ids::{EventId, MemberId, SaleId, Sku, StoreId};
use pos_shared::loyalty::rules::NegativeBalancePolicy;
use pos_shared::loyalty::{
    AccrualRecord, LedgerEntry, LedgerPage, LoyaltyLedger, LoyaltyStoreError, ReversalPlanner,
};
use pos_shared::model::CanonicalEvent;
use pos_shared::model::EventEnvelope;
use pos_shared::outbox::OutboxSource;
use pos_shared::ports::{CaptureStore, EventPublisher, SecretSource};
use pos_shared::secrets::{SecretError, VendorSecrets};
use pos_shared::stock::{ApplyOutcome, LedgerError, StockCount, StockDelta, StockLedger};
use pos_shared::store::embedded::EmbeddedStore;
use pos_shared::store::{CaptureOutcome, CaptureWrite, OutboxEntry, QuarantineRecord, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The capture store (and the relay's view of it) under control.
pub struct SimStore {
    pub(crate) inner: EmbeddedStore,
    pub(crate) ctl: Ctl,
}

#[async_trait]
impl CaptureStore for SimStore {
    async fn capture(&self, write: CaptureWrite) -> Result<CaptureOutcome, StoreError> {
        if self.ctl.breaks().ack_without_store && self.ctl.chance(500) {
            self.ctl.step().await;
            return Ok(CaptureOutcome::Stored);
        }
        self.ctl
            .gate(
                "capture store",
                self.inner.capture(write),
                StoreError::Unavailable,
            )
            .await
    }

    async fn outbox_entry(&self, event_id: &EventId) -> Result<Option<OutboxEntry>, StoreError> {
        self.ctl
            .gate(
                "capture store",
                self.inner.outbox_entry(event_id),
                StoreError::Unavailable,
            )
            .await
    }

    async fn mark_published(
        &self,
        event_id: &EventId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.ctl
            .gate(
                "capture store",
                self.inner.mark_published(event_id, at),
                StoreError::Unavailable,
            )
            .await
    }

    async fn quarantine(&self, record: QuarantineRecord) -> Result<(), StoreError> {
        self.ctl
            .gate(
                "capture store",
                self.inner.quarantine(record),
                StoreError::Unavailable,
            )
            .await
    }
}

#[async_trait]
impl OutboxSource for SimStore {
    async fn pending_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.ctl
            .gate(
                "outbox scan",
                self.inner.pending_before(cutoff, limit),
                StoreError::Unavailable,
            )
            .await
    }

    async fn mark_failed(
        &self,
        event_id: &EventId,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.ctl
            .gate(
                "outbox scan",
                self.inner.mark_failed(event_id, at, reason),
                StoreError::Unavailable,
            )
            .await
    }
}

/// The secret source under control.
pub struct SimSecrets {
    pub(crate) inner: Arc<dyn SecretSource>,
    pub(crate) ctl: Ctl,
}

#[async_trait]
impl SecretSource for SimSecrets {
    async fn load(&self) -> Result<Arc<VendorSecrets>, SecretError> {
        self.ctl
            .gate("secrets", self.inner.load(), SecretError::Unavailable)
            .await
    }
}

/// The stock ledger under control.
pub struct SimStock {
    pub(crate) inner: Arc<dyn StockLedger>,
    pub(crate) ctl: Ctl,
}

#[async_trait]
impl StockLedger for SimStock {
    async fn apply(
        &self,
        event_id: &EventId,
        at: DateTime<Utc>,
        deltas: &[StockDelta],
    ) -> Result<ApplyOutcome, LedgerError> {
        let out = self
            .ctl
            .gate(
                "stock ledger",
                self.inner.apply(event_id, at, deltas),
                LedgerError,
            )
            .await?;
        if self.ctl.breaks().double_apply_stock && self.ctl.chance(300) {
            let again = EventId::parse(format!("{}-again", event_id.as_str()))
                .map_err(|e| LedgerError(e.to_string()))?;
            self.inner.apply(&again, at, deltas).await?;
        }
        Ok(out)
    }

    async fn apply_count(
        &self,
        event_id: &EventId,
        count: &StockCount,
        now: DateTime<Utc>,
    ) -> Result<ApplyOutcome, LedgerError> {
        self.ctl
            .gate(
                "stock ledger",
                self.inner.apply_count(event_id, count, now),
                LedgerError,
            )
            .await
    }

    async fn on_hand(&self, store: &StoreId, sku: &Sku) -> Result<i64, LedgerError> {
        self.ctl
            .gate("stock ledger", self.inner.on_hand(store, sku), LedgerError)
            .await
    }

    async fn store_levels(
        &self,
        store: &StoreId,
        after: Option<&Sku>,
        limit: usize,
    ) -> Result<(Vec<(Sku, i64)>, Option<Sku>), LedgerError> {
        self.ctl
            .gate(
                "stock ledger",
                self.inner.store_levels(store, after, limit),
                LedgerError,
            )
            .await
    }
}

/// The loyalty ledger under control.
pub struct SimLoyalty {
    pub(crate) inner: Arc<dyn LoyaltyLedger>,
    pub(crate) ctl: Ctl,
}

#[async_trait]
impl LoyaltyLedger for SimLoyalty {
    async fn tier(&self, member: &MemberId) -> Result<Option<String>, LoyaltyStoreError> {
        self.ctl
            .gate("loyalty ledger", self.inner.tier(member), LoyaltyStoreError)
            .await
    }

    async fn record_sale(
        &self,
        accrual: &AccrualRecord,
        entry: Option<&LedgerEntry>,
    ) -> Result<bool, LoyaltyStoreError> {
        self.ctl
            .gate(
                "loyalty ledger",
                self.inner.record_sale(accrual, entry),
                LoyaltyStoreError,
            )
            .await
    }

    async fn accrual(&self, sale: &SaleId) -> Result<Option<AccrualRecord>, LoyaltyStoreError> {
        self.ctl
            .gate(
                "loyalty ledger",
                self.inner.accrual(sale),
                LoyaltyStoreError,
            )
            .await
    }

    async fn reverse(
        &self,
        template: &LedgerEntry,
        requested: i64,
        policy: NegativeBalancePolicy,
    ) -> Result<Option<LedgerEntry>, LoyaltyStoreError> {
        self.ctl
            .gate(
                "loyalty ledger",
                self.inner.reverse(template, requested, policy),
                LoyaltyStoreError,
            )
            .await
    }

    async fn reverse_return(
        &self,
        template: &LedgerEntry,
        sale: &SaleId,
        plan: ReversalPlanner,
        policy: NegativeBalancePolicy,
    ) -> Result<Option<LedgerEntry>, LoyaltyStoreError> {
        let plan = if self.ctl.breaks().over_reverse_points {
            let honest = plan;
            Arc::new(move |record: &AccrualRecord| {
                let (totals, points) = honest(record);
                (totals, points * 2)
            }) as ReversalPlanner
        } else {
            plan
        };
        self.ctl
            .gate(
                "loyalty ledger",
                self.inner.reverse_return(template, sale, plan, policy),
                LoyaltyStoreError,
            )
            .await
    }

    async fn balance(&self, member: &MemberId) -> Result<i64, LoyaltyStoreError> {
        self.ctl
            .gate(
                "loyalty ledger",
                self.inner.balance(member),
                LoyaltyStoreError,
            )
            .await
    }

    async fn entries(&self, member: &MemberId) -> Result<Vec<LedgerEntry>, LoyaltyStoreError> {
        self.ctl
            .gate(
                "loyalty ledger",
                self.inner.entries(member),
                LoyaltyStoreError,
            )
            .await
    }

    async fn entries_page(
        &self,
        member: &MemberId,
        after: Option<&EventId>,
        limit: usize,
    ) -> Result<LedgerPage, LoyaltyStoreError> {
        self.ctl
            .gate(
                "loyalty ledger",
                self.inner.entries_page(member, after, limit),
                LoyaltyStoreError,
            )
            .await
    }
}

/// Which function a queue feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Consumer {
    /// `stock-sync`.
    Stock,
    /// `loyalty-accrual`.
    Loyalty,
    /// The delivery function (`dynamics-sync`'s queue and engine, to [`SimDestination`]).
    Delivery,
}

/// A message in a simulated SQS standard queue.
#[derive(Debug, Clone)]
pub struct Message {
    /// Its id (stable across receives).
    pub id: String,
    /// The EventBridge event, as SQS carries it.
    pub body: String,
    /// Receives so far.
    pub receive_count: u32,
    /// Invisible until then.
    pub visible_at: DateTime<Utc>,
    /// The generation of its current receipt handle (a delete with an older one does nothing).
    pub receipt: u64,
}

/// One simulated queue with its DLQ.
#[derive(Debug)]
pub struct Queue {
    /// The infra module name, e.g. `stock_sync_queue`.
    pub name: String,
    /// The function it feeds.
    pub consumer: Consumer,
    /// The rule's event pattern.
    pub pattern: serde_json::Value,
    /// Receives before the DLQ, as infra declares it.
    pub declared_max_receives: u32,
    /// Receives before the DLQ, as this run applies it (1 under `eager_dead_letter`).
    pub max_receives: u32,
    /// The visibility timeout.
    pub visibility: Duration,
    /// Messages by sequence number.
    pub messages: BTreeMap<u64, Message>,
    /// Dead letters.
    pub dlq: Vec<Message>,
    next_seq: u64,
    next_receipt: u64,
}

/// A received message: what the consumer's SQS event carries, and the handle to delete it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Sequence number in its queue.
    pub seq: u64,
    /// Receipt generation.
    pub receipt: u64,
    /// The message as received.
    pub message: Message,
}

/// The queues, shared by the bus (sends), the scheduler (receives) and the consumer tasks (deletes).
#[derive(Debug, Clone)]
pub struct Queues(Arc<Mutex<Vec<Queue>>>);

impl Queues {
    /// The stock-sync and loyalty-accrual queues from infra.
    pub fn from_infra(declared: &[ConsumerQueue], eager_dead_letter: bool) -> Self {
        let queues = declared
            .iter()
            .filter_map(|q| {
                let consumer = if q.module.contains("stock") {
                    Consumer::Stock
                } else if q.module.contains("loyalty") {
                    Consumer::Loyalty
                } else if q.module.contains("dynamics") {
                    Consumer::Delivery
                } else {
                    return None;
                };
                let declared_max = u32::try_from(q.max_receive_count).unwrap_or(5);
                Some(Queue {
                    name: q.module.clone(),
                    consumer,
                    pattern: q.event_pattern.clone(),
                    declared_max_receives: declared_max,
                    max_receives: if eager_dead_letter { 1 } else { declared_max },
                    visibility: Duration::seconds(q.visibility_timeout_seconds),
                    messages: BTreeMap::new(),
                    dlq: Vec::new(),
                    next_seq: 0,
                    next_receipt: 0,
                })
            })
            .collect();
        Self(Arc::new(Mutex::new(queues)))
    }

    /// The queues.
    pub fn lock(&self) -> MutexGuard<'_, Vec<Queue>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `body` to queue `q`, visible at `now`.
    pub fn send(&self, q: usize, body: String, now: DateTime<Utc>) {
        if let Some(queue) = self.lock().get_mut(q) {
            queue.push(body, now);
        }
    }

    /// Deletes a received message, unless its receipt is stale.
    pub fn delete(&self, q: usize, seq: u64, receipt: u64) {
        if let Some(queue) = self.lock().get_mut(q)
            && queue
                .messages
                .get(&seq)
                .is_some_and(|m| m.receipt == receipt)
        {
            queue.messages.remove(&seq);
        }
    }
}

impl Queue {
    /// Appends a message.
    pub fn push(&mut self, body: String, now: DateTime<Utc>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.messages.insert(
            seq,
            Message {
                id: format!("{}-{seq}", self.name),
                body,
                receive_count: 0,
                visible_at: now,
                receipt: 0,
            },
        );
    }

    /// Sequence numbers of the messages visible at `now`.
    pub fn visible(&self, now: DateTime<Utc>) -> Vec<u64> {
        self.messages
            .iter()
            .filter(|(_, m)| m.visible_at <= now)
            .map(|(s, _)| *s)
            .collect()
    }

    /// Receives the messages `seqs` at `now`: counts the receive and hides each for the visibility
    /// timeout, or moves it to the DLQ when the receive would exceed the maximum (as SQS redrive does).
    pub fn receive(&mut self, seqs: &[u64], now: DateTime<Utc>) -> Vec<Received> {
        let mut out = Vec::new();
        for seq in seqs {
            let Some(mut m) = self.messages.remove(seq) else {
                continue;
            };
            if m.receive_count >= self.max_receives {
                self.dlq.push(m);
                continue;
            }
            m.receive_count += 1;
            self.next_receipt += 1;
            m.receipt = self.next_receipt;
            m.visible_at = now + self.visibility;
            out.push(Received {
                seq: *seq,
                receipt: m.receipt,
                message: m.clone(),
            });
            self.messages.insert(*seq, m);
        }
        out
    }

    /// The earliest time a hidden message becomes visible again.
    pub fn next_visible(&self) -> Option<DateTime<Utc>> {
        self.messages.values().map(|m| m.visible_at).min()
    }
}

/// The simulated EventBridge bus: routes each event to every queue whose rule matches, and records
/// which event ids reached it.
pub struct SimBus {
    pub(crate) ctl: Ctl,
    pub(crate) queues: Queues,
    pub(crate) published: Arc<Mutex<BTreeMap<String, u32>>>,
    pub(crate) now: Arc<Mutex<DateTime<Utc>>>,
    pub(crate) next_id: Mutex<u64>,
}

impl SimBus {
    fn route(&self, events: &[EventEnvelope]) -> Result<(), PublishError> {
        let now = *self.now.lock().unwrap_or_else(PoisonError::into_inner);
        for envelope in events {
            if self.ctl.breaks().bus_drops_events && self.ctl.chance(300) {
                continue;
            }
            let n = {
                let mut next = self.next_id.lock().unwrap_or_else(PoisonError::into_inner);
                *next += 1;
                *next
            };
            let message = BusMessage::new(format!("eb-{n}"), envelope.clone());
            let json = serde_json::to_value(&message)
                .map_err(|e| PublishError::Unavailable(e.to_string()))?;
            let body = json.to_string();
            let targets: Vec<usize> = self
                .queues
                .lock()
                .iter()
                .enumerate()
                .filter(|(_, q)| pattern_matches(&q.pattern, &json))
                .map(|(i, _)| i)
                .collect();
            for q in targets {
                self.queues.send(q, body.clone(), now);
            }
            *self
                .published
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(envelope.event_id.as_str().to_owned())
                .or_default() += 1;
        }
        Ok(())
    }

    /// Event ids that reached the bus, with how many times.
    pub fn published(&self) -> BTreeMap<String, u32> {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl EventPublisher for SimBus {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), PublishError> {
        for envelope in events {
            check_entry(envelope)?;
        }
        self.ctl
            .gate(
                "bus",
                async { self.route(events) },
                PublishError::Unavailable,
            )
            .await
    }
}

/// Bodies injected as poison (the only messages allowed in a DLQ).
pub type PoisonBodies = BTreeSet<String>;

/// The simulated destination of the delivery function: an ERP that keeps one record per idempotency
/// key (the event id), as commercetools' order number and D365's order number do; a second create with a
/// key it holds is refused and the adapter reads the record back ([`SimDestination::duplicates`] counts
/// them). Its read-back is consistent. It fails like a remote service: before the write (nothing landed),
/// with a 429 and `Retry-After`, or after the write (it landed, the answer was lost).
///
/// Under the broken variant `keyless_destination` it keeps every write, as an endpoint without a unique
/// key would.
pub struct SimDestination {
    pub(crate) ctl: Ctl,
    pub(crate) writes: Mutex<BTreeMap<String, u32>>,
    pub(crate) duplicates: Mutex<u64>,
}

/// Its name in the ledger and the breaker.
pub const DESTINATION: &str = "sim-erp";

impl SimDestination {
    /// Creates refused because the key was there (each one a second write the key stopped).
    pub fn duplicates(&self) -> u64 {
        *self
            .duplicates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records held per event id.
    pub fn writes(&self) -> BTreeMap<String, u32> {
        self.writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn transient(reason: &str, retry_after: Option<std::time::Duration>) -> DeliveryFailure {
        DeliveryFailure::Transient {
            reason: reason.to_owned(),
            retry_after,
        }
    }
}

#[async_trait]
impl Destination for SimDestination {
    fn name(&self) -> &str {
        DESTINATION
    }

    fn wants(&self, event: &EventEnvelope) -> bool {
        matches!(
            event.event,
            CanonicalEvent::SaleCompleted(_) | CanonicalEvent::ReturnCompleted(_)
        )
    }

    async fn read_back(&self, event: &EventEnvelope) -> Result<Option<Landed>, DeliveryFailure> {
        self.ctl.step().await;
        if self.ctl.fail_now() {
            return Err(Self::transient("injected: read-back 503", None));
        }
        let landed = self
            .writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(event.event_id.as_str());
        Ok(landed.then(|| Landed {
            remote_id: Some(event.event_id.as_str().to_owned()),
            remote_version: None,
        }))
    }

    async fn send(&self, event: &EventEnvelope) -> Result<Landed, DeliveryFailure> {
        self.ctl.step().await;
        if self.ctl.fail_now() {
            let retry_after = self.ctl.chance(500).then(|| {
                std::time::Duration::from_secs(self.ctl.lock().rng.range(1, 90).unsigned_abs())
            });
            return Err(Self::transient(
                "injected: 429/503 before the write",
                retry_after,
            ));
        }
        {
            let keyless = self.ctl.breaks().keyless_destination;
            let mut writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
            let held = writes
                .entry(event.event_id.as_str().to_owned())
                .or_default();
            if *held == 0 || keyless {
                *held += 1;
            } else {
                *self
                    .duplicates
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) += 1;
            }
        }
        if std::env::var_os("SIM_TRACE").is_some() {
            eprintln!("    destination write {}", event.event_id);
        }
        self.ctl.step().await;
        if self.ctl.fail_now() {
            return Err(Self::transient("injected: timeout after the write", None));
        }
        Ok(Landed {
            remote_id: Some(event.event_id.as_str().to_owned()),
            remote_version: None,
        })
    }
}

/// The delivery ledger under control.
pub struct SimDeliveryLedger {
    pub(crate) inner: Arc<dyn DeliveryLedger>,
    pub(crate) ctl: Ctl,
}

#[async_trait]
impl DeliveryLedger for SimDeliveryLedger {
    async fn get(
        &self,
        event_id: &EventId,
        destination: &str,
    ) -> Result<Option<DeliveryEntry>, DeliveryLedgerError> {
        self.ctl
            .gate(
                "delivery ledger",
                self.inner.get(event_id, destination),
                DeliveryLedgerError,
            )
            .await
    }

    async fn put(
        &self,
        entry: &DeliveryEntry,
        expected: Option<u64>,
    ) -> Result<bool, DeliveryLedgerError> {
        self.ctl
            .gate(
                "delivery ledger",
                self.inner.put(entry, expected),
                DeliveryLedgerError,
            )
            .await
    }

    async fn for_sale(&self, sale_id: &SaleId) -> Result<Vec<DeliveryEntry>, DeliveryLedgerError> {
        self.ctl
            .gate(
                "delivery ledger",
                self.inner.for_sale(sale_id),
                DeliveryLedgerError,
            )
            .await
    }
}

/// The breaker store under control.
pub struct SimBreakers {
    pub(crate) inner: Arc<dyn BreakerStore>,
    pub(crate) ctl: Ctl,
}

#[async_trait]
impl BreakerStore for SimBreakers {
    async fn load(&self, destination: &str) -> Result<Option<BreakerRecord>, BreakerStoreError> {
        self.ctl
            .gate("breaker", self.inner.load(destination), BreakerStoreError)
            .await
    }

    async fn compare_and_set(
        &self,
        destination: &str,
        expected: Option<u64>,
        record: &BreakerRecord,
    ) -> Result<bool, BreakerStoreError> {
        self.ctl
            .gate(
                "breaker",
                self.inner.compare_and_set(destination, expected, record),
                BreakerStoreError,
            )
            .await
    }
}

/// The delivery function's own queue calls (`ChangeMessageVisibility`, sending to the DLQ) on the
/// simulated queue `queue`.
pub struct SimQueueControl {
    pub(crate) ctl: Ctl,
    pub(crate) queues: Queues,
    pub(crate) queue: usize,
    pub(crate) now: Arc<Mutex<DateTime<Utc>>>,
}

#[async_trait]
impl QueueControl for SimQueueControl {
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        after: std::time::Duration,
    ) -> Result<(), QueueError> {
        let now = *self.now.lock().unwrap_or_else(PoisonError::into_inner);
        let (seq, receipt) = receipt_handle
            .split_once(':')
            .and_then(|(s, r)| Some((s.parse::<u64>().ok()?, r.parse::<u64>().ok()?)))
            .ok_or_else(|| QueueError(format!("bad receipt handle {receipt_handle}")))?;
        let at = now + Duration::from_std(after).unwrap_or(Duration::hours(12));
        self.ctl
            .gate(
                "queue",
                async {
                    if let Some(q) = self.queues.lock().get_mut(self.queue)
                        && let Some(m) = q.messages.get_mut(&seq)
                        && m.receipt == receipt
                    {
                        m.visible_at = at;
                    }
                    Ok(())
                },
                QueueError,
            )
            .await
    }

    async fn dead_letter(&self, body: &str, _reason: &str) -> Result<(), QueueError> {
        let now = *self.now.lock().unwrap_or_else(PoisonError::into_inner);
        self.ctl
            .gate(
                "queue",
                async {
                    if let Some(q) = self.queues.lock().get_mut(self.queue) {
                        q.dlq.push(Message {
                            id: format!("{}-dlq-{}", q.name, q.dlq.len()),
                            body: body.to_owned(),
                            receive_count: 0,
                            visible_at: now,
                            receipt: 0,
                        });
                    }
                    Ok(())
                },
                QueueError,
            )
            .await
    }
}
