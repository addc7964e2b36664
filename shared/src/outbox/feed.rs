//! Publication locally: the embedded store's feed of new outbox entries
//! ([`EmbeddedStore::subscribe_outbox`]) stands in for the table's DynamoDB stream. [`run`] publishes
//! what the feed announces, in batches, with [`OutboxRelay::publish_entries`]; `pos-local` runs it
//! beside the HTTP server, so a capture's 2xx waits for its own commit only.
//!
//! What the feed misses (a full feed, a failed publish, entries stored by another process, a crash
//! after the commit) stays pending in the store, and the relay's scheduled sweep publishes it: the same
//! split of work as on AWS.
//!
//! [`EmbeddedStore::subscribe_outbox`]: crate::store::embedded::EmbeddedStore::subscribe_outbox

use super::{OutboxRelay, Published};
use crate::store::OutboxEntry;
use tokio::sync::mpsc::Receiver;

/// Most entries taken from the feed for one [`OutboxRelay::publish_entries`] call (it splits them into
/// bus-sized batches; locally one batch is one store transaction).
pub const MAX_DRAIN: usize = 500;

/// Publishes whatever the feed holds right now (up to [`MAX_DRAIN`] entries), without waiting.
pub async fn drain(feed: &mut Receiver<OutboxEntry>, relay: &OutboxRelay) -> Published {
    let mut batch = Vec::new();
    while batch.len() < MAX_DRAIN {
        match feed.try_recv() {
            Ok(entry) => batch.push(entry),
            Err(_) => break,
        }
    }
    publish(batch, relay).await
}

/// Publishes every announced entry until the feed closes: waits for one, then takes what else is
/// waiting, so a burst of captures goes out in few bus batches.
pub async fn run(mut feed: Receiver<OutboxEntry>, relay: &OutboxRelay) {
    let mut batch = Vec::new();
    while feed.recv_many(&mut batch, MAX_DRAIN).await > 0 {
        publish(std::mem::take(&mut batch), relay).await;
    }
}

/// What the feed announced, kept: the events captures produced, in commit order, without publishing
/// them (tests and tools that look at what a capture produced, as a bus recorder would).
pub struct Announced {
    feed: std::sync::Mutex<Receiver<OutboxEntry>>,
    seen: std::sync::Mutex<Vec<crate::model::EventEnvelope>>,
}

impl Announced {
    /// Subscribes to `store`'s feed (replacing any earlier subscriber).
    pub fn new(store: &crate::store::embedded::EmbeddedStore) -> Self {
        Self {
            feed: std::sync::Mutex::new(store.subscribe_outbox()),
            seen: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Every event announced so far.
    pub fn events(&self) -> Vec<crate::model::EventEnvelope> {
        let mut feed = self
            .feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Ok(entry) = feed.try_recv() {
            seen.push(entry.envelope);
        }
        seen.clone()
    }
}

async fn publish(batch: Vec<OutboxEntry>, relay: &OutboxRelay) -> Published {
    if batch.is_empty() {
        return Published::default();
    }
    let published = relay.publish_entries(batch).await;
    if !published.failed.is_empty() {
        tracing::warn!(
            count = published.failed.len(),
            "entries from the feed not published; the relay's sweep retries them"
        );
    }
    published
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;
    use crate::store::StoreInspect;

    #[tokio::test]
    async fn captures_reach_the_bus_through_the_feed_and_a_failed_publish_is_left_to_the_sweep() {
        let crate::outbox::tests::Rig {
            store,
            bus,
            clock,
            capture,
            relay,
        } = crate::outbox::tests::rig();
        let mut feed = store.subscribe_outbox();
        let send = |n: u32| {
            let body = samples::standard_sale(&format!("feed-{n}"), "store-1", None, 3);
            samples::standard(
                &format!("msg_feed_{n}"),
                &body,
                samples::sample_time(),
                None,
            )
            .to_request("c")
        };
        for n in 0..3 {
            capture.handle(&send(n)).await.expect("captured");
        }
        assert!(bus.events().is_empty(), "capture itself publishes nothing");
        assert_eq!(store.pending_outbox().await.expect("outbox").len(), 3);
        let published = drain(&mut feed, &relay).await;
        assert_eq!(published.published.len(), 3);
        assert_eq!(bus.events().len(), 3);
        assert!(store.pending_outbox().await.expect("outbox").is_empty());

        // A redelivery announces nothing (nothing new was stored).
        capture.handle(&send(0)).await.expect("duplicate");
        assert_eq!(drain(&mut feed, &relay).await, Published::default());

        // The bus is down: the entry stays pending and the sweep publishes it once old enough.
        capture.handle(&send(9)).await.expect("captured");
        bus.fail_next(1);
        assert_eq!(drain(&mut feed, &relay).await.failed.len(), 1);
        assert_eq!(store.pending_outbox().await.expect("outbox").len(), 1);
        clock.advance(chrono::Duration::seconds(61));
        assert_eq!(relay.run().await.expect("sweep").published, 1);
        assert_eq!(bus.events().len(), 4);
    }
}
