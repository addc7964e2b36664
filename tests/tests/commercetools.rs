//! The delivery framework against commercetools' own API emulator (a real peer, not a fake of ours):
//! OAuth2 client credentials at its token endpoint, the order import, the read-back by `orderNumber`,
//! and exactly one order per sale when an answer is lost or the record is redelivered.

use async_trait::async_trait;
use pos_shared::delivery::breaker::{BreakerConfig, CircuitBreaker, MemoryBreakerStore};
use pos_shared::delivery::commercetools::{CommercetoolsConfig, CommercetoolsOrders};
use pos_shared::delivery::engine::{Deliverer, Destination, Failure, Landed, Outcome};
use pos_shared::delivery::ledger::{DeliveryLedger, DeliveryStatus, MemoryDeliveryLedger};
use pos_shared::delivery::retry::RetryPolicy;
use pos_shared::model::EventEnvelope;
use pos_shared::ports::{Clock, SystemClock};
use pos_shared::samples;
use pos_tests::ctp::Emulator;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const PROJECT: &str = "pos-test";

fn sale(id: &str) -> EventEnvelope {
    let body = samples::standard_sale(id, "store-001", Some("m-1"), 2);
    samples::envelope_of(&samples::standard("m", &body, samples::sample_time(), None))
        .expect("a sale")
}

/// Lands the first write but loses its answer, as a timeout after the request left would.
struct LosesFirstAnswer {
    inner: CommercetoolsOrders,
    lost: AtomicBool,
}

#[async_trait]
impl Destination for LosesFirstAnswer {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn wants(&self, event: &EventEnvelope) -> bool {
        self.inner.wants(event)
    }
    async fn read_back(&self, event: &EventEnvelope) -> Result<Option<Landed>, Failure> {
        self.inner.read_back(event).await
    }
    async fn send(&self, event: &EventEnvelope) -> Result<Landed, Failure> {
        let landed = self.inner.send(event).await?;
        if !self.lost.swap(true, Ordering::SeqCst) {
            return Err(Failure::Transient {
                reason: "timeout".into(),
                retry_after: None,
            });
        }
        Ok(landed)
    }
}

fn engine(dest: Arc<dyn Destination>, ledger: Arc<MemoryDeliveryLedger>) -> Deliverer {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Deliverer::new(
        dest,
        ledger,
        CircuitBreaker::new(
            Arc::new(MemoryBreakerStore::default()),
            clock.clone(),
            BreakerConfig::default(),
        ),
        RetryPolicy {
            in_process: pos_shared::backoff::Backoff {
                attempts: 3,
                base: Duration::from_millis(10),
                cap: Duration::from_millis(50),
            },
            ..RetryPolicy::default()
        },
        clock,
    )
}

#[tokio::test]
async fn each_sale_is_one_order_even_when_an_answer_is_lost_or_the_record_redelivered() {
    let Some(emulator) = Emulator::start() else {
        return;
    };
    let http = emulator.client(PROJECT);
    emulator
        .seed_products(PROJECT, &["SKU-001", "SKU-002"])
        .await;
    let config = CommercetoolsConfig {
        project_key: PROJECT.into(),
        api_url: emulator.url.clone(),
        auth_url: emulator.url.clone(),
    };
    let ledger = Arc::new(MemoryDeliveryLedger::default());

    // A plain delivery, then the SQS redelivery of the same record.
    let plain = engine(
        Arc::new(CommercetoolsOrders::new(http.clone(), config.clone())),
        ledger.clone(),
    );
    let first = sale("ct-1");
    let out = plain.deliver(&first, 1).await.expect("deliver");
    let Outcome::Delivered(landed) = out else {
        panic!("not delivered: {out:?}");
    };
    assert!(landed.remote_id.is_some());
    assert_eq!(
        plain.deliver(&first, 2).await.expect("redelivery"),
        Outcome::Skipped
    );
    let orders = emulator.orders_numbered(PROJECT, "dev-till:ct-1").await;
    assert_eq!(orders.len(), 1, "one order");
    assert_eq!(orders[0]["totalPrice"]["centAmount"], 2500);
    assert_eq!(orders[0]["totalPrice"]["currencyCode"], "EUR");
    assert_eq!(orders[0]["lineItems"].as_array().map(Vec::len), Some(2));
    assert_eq!(orders[0]["lineItems"][0]["variant"]["sku"], "SKU-001");

    // The import lands but its answer is lost: the retry reads it back instead of importing again
    // (the emulator, unlike the real API, would accept a second order with the same number).
    let losing = engine(
        Arc::new(LosesFirstAnswer {
            inner: CommercetoolsOrders::new(http.clone(), config),
            lost: AtomicBool::new(false),
        }),
        ledger.clone(),
    );
    let second = sale("ct-2");
    let out = losing.deliver(&second, 1).await.expect("deliver");
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert_eq!(
        emulator
            .orders_numbered(PROJECT, "dev-till:ct-2")
            .await
            .len(),
        1,
        "read back, never imported twice"
    );
    let entry = ledger
        .get(&second.event_id, "commercetools")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(entry.status, DeliveryStatus::Delivered);
    assert_eq!(entry.attempts, 2);
    assert!(entry.remote_id.is_some());
}

fn a_return(id: &str, sale: &str, sku: &str) -> EventEnvelope {
    let mut body = samples::standard_return(id, sale, "store-001");
    body["data"]["lines"][0]["sku"] = serde_json::json!(sku);
    samples::envelope_of(&samples::standard("r", &body, samples::sample_time(), None))
        .expect("a return")
}

#[tokio::test]
async fn a_return_is_added_to_its_order_once_and_waits_for_the_order() {
    let Some(emulator) = Emulator::start() else {
        return;
    };
    let http = emulator.client(PROJECT);
    emulator
        .seed_products(PROJECT, &["SKU-001", "SKU-002"])
        .await;
    let config = CommercetoolsConfig {
        project_key: PROJECT.into(),
        api_url: emulator.url.clone(),
        auth_url: emulator.url.clone(),
    };
    let ledger = Arc::new(MemoryDeliveryLedger::default());
    let plain = engine(
        Arc::new(CommercetoolsOrders::new(http.clone(), config.clone())),
        ledger.clone(),
    );

    // The return arrives before its sale's order: retried later, nothing written.
    let ret = a_return("ret-1", "ret-sale", "SKU-002");
    let out = plain.deliver(&ret, 1).await.expect("deliver");
    assert!(matches!(out, Outcome::Requeue(_)), "{out:?}");

    // The sale lands; the return is added once, even when its answer is lost, and on redelivery.
    let sale_event = sale("ret-sale");
    assert!(matches!(
        plain.deliver(&sale_event, 1).await.expect("sale"),
        Outcome::Delivered(_)
    ));
    let losing = engine(
        Arc::new(LosesFirstAnswer {
            inner: CommercetoolsOrders::new(http.clone(), config.clone()),
            lost: AtomicBool::new(false),
        }),
        ledger.clone(),
    );
    let out = losing.deliver(&ret, 2).await.expect("deliver");
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert_eq!(
        plain.deliver(&ret, 3).await.expect("redelivery"),
        Outcome::Skipped
    );
    let orders = emulator.orders_numbered(PROJECT, "dev-till:ret-sale").await;
    assert_eq!(orders.len(), 1);
    let infos = orders[0]["returnInfo"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(infos.len(), 1, "one return info: {infos:?}");
    assert_eq!(infos[0]["returnTrackingId"], "dev-till:ret-1");
    let sku_002 = orders[0]["lineItems"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["variant"]["sku"] == "SKU-002"))
        .and_then(|i| i["id"].as_str())
        .map(str::to_owned);
    assert_eq!(
        infos[0]["items"][0]["lineItemId"]
            .as_str()
            .map(str::to_owned),
        sku_002
    );
    assert_eq!(infos[0]["items"][0]["shipmentState"], "BackInStock");

    // A second return of the same order is added beside the first (under the order's new version).
    let second = a_return("ret-2", "ret-sale", "SKU-001");
    assert!(matches!(
        plain.deliver(&second, 1).await.expect("second"),
        Outcome::Delivered(_)
    ));
    let orders = emulator.orders_numbered(PROJECT, "dev-till:ret-sale").await;
    assert_eq!(orders[0]["returnInfo"].as_array().map(Vec::len), Some(2));

    // A returned SKU the order does not have is refused for good: dead, the order unchanged.
    let stranger = a_return("ret-3", "ret-sale", "SKU-404");
    let out = plain.deliver(&stranger, 1).await.expect("deliver");
    assert!(matches!(out, Outcome::Dead(_)), "{out:?}");
    let orders = emulator.orders_numbered(PROJECT, "dev-till:ret-sale").await;
    assert_eq!(orders[0]["returnInfo"].as_array().map(Vec::len), Some(2));
}
