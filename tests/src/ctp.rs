//! commercetools' own API emulator (`commercetools.testing`, shipped in the commercetools Python SDK)
//! served by `scripts/ctp_emulator.py` on a free loopback port per test, killed when the handle drops.
//!
//! Like moto, it is installed by `scripts/test.sh`; without it the tests skip, unless
//! `POS_REQUIRE_MOTO=1` (the same switch: the test script installs both), where its absence fails.
//!
//! Known differences from the real API, checked (see ARCHITECTURE.md):
//! - it matches requests by host name: address it as `localhost`, not `127.0.0.1`;
//! - it accepts a second order with an existing `orderNumber` (the real API answers 400
//!   `DuplicateField`), so nothing may rely on the server to deduplicate;
//! - it serves `?where=orderNumber="…"` but not `/orders/order-number=…`;
//! - it applies inventory `version` checks (409 `ConcurrentModification`);
//! - an order import resolves its line items to existing products (by product id or SKU): create the
//!   products first (the real API accepts line items of unknown products).

use pos_shared::delivery::client::DestinationClient;
use pos_shared::delivery::oauth::{ClientAuth, ClientCredentials, TokenProvider};
use pos_shared::ports::{Clock, SystemClock};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A running emulator.
pub struct Emulator {
    /// Held for its drop: the process lives as long as this handle.
    _process: crate::peer::Peer,
    /// `http://localhost:PORT` (API and token endpoint).
    pub url: String,
}

impl Emulator {
    /// Starts the emulator, or returns `None` (skip) when its Python package is missing and not
    /// required.
    pub fn start() -> Option<Emulator> {
        let peer = crate::peer::start(
            "ctp_emulator.py",
            "http://localhost:",
            "pip install commercetools Werkzeug",
        )?;
        Some(Emulator {
            url: peer.url.clone(),
            _process: peer,
        })
    }
}

impl Emulator {
    /// A destination client of `project` with tokens from the emulator's token endpoint.
    pub fn client(&self, project: &str) -> DestinationClient {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let tokens = TokenProvider::new(
            ClientCredentials {
                token_url: format!("{}/oauth/token", self.url),
                client_id: "pos-platform".into(),
                client_secret: SecretString::from("emulator-secret"),
                scope: Some(format!("manage_orders:{project}")),
                auth: ClientAuth::Basic,
            },
            reqwest::Client::new(),
            clock.clone(),
            chrono::Duration::seconds(60),
        );
        DestinationClient::new(
            reqwest::Client::new(),
            Arc::new(tokens),
            clock,
            Duration::from_secs(5),
        )
    }

    /// Creates the catalogue of `project`: the emulator resolves imported line items to existing
    /// products.
    pub async fn seed_products(&self, project: &str, skus: &[&str]) {
        let client = self.client(project);
        for sku in skus {
            let body = json!({
                "productType": {"typeId": "product-type", "id": "tee"},
                "name": {"en": sku}, "slug": {"en": sku.to_lowercase()},
                "masterVariant": {"sku": sku}, "publish": true
            });
            let url = format!("{}/{project}/products", self.url);
            let reply = client
                .send(|http| http.post(&url).json(&body))
                .await
                .expect("product created");
            assert!(reply.status.is_success(), "{:?}", reply.status);
        }
    }

    /// The orders of `project` numbered `number`.
    pub async fn orders_numbered(&self, project: &str, number: &str) -> Vec<Value> {
        let url = format!("{}/{project}/orders", self.url);
        let reply = self
            .client(project)
            .send(|http| http.get(&url).header("accept", "application/json"))
            .await
            .expect("orders");
        let body = reply.json().expect("json");
        body["results"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o["orderNumber"] == number)
            .collect()
    }

    /// The inventory entry of `sku` in the supply channel keyed `store`, asserting there is at most one.
    pub async fn inventory_entry(&self, project: &str, store: &str, sku: &str) -> Option<Value> {
        let client = self.client(project);
        let url = format!("{}/{project}/channels", self.url);
        let channels = client
            .send(|h| h.get(&url))
            .await
            .expect("channels")
            .json()
            .expect("json");
        let channel = channels["results"]
            .as_array()?
            .iter()
            .find(|c| c["key"] == store)?["id"]
            .clone();
        let predicate = format!("sku=\"{sku}\" and supplyChannel(id={channel})");
        let url = reqwest::Url::parse_with_params(
            &format!("{}/{project}/inventory", self.url),
            [("where", predicate)],
        )
        .expect("url");
        let entries = client
            .send(|h| h.get(url.clone()))
            .await
            .expect("inventory")
            .json()
            .expect("json");
        let found: Vec<Value> = entries["results"]
            .as_array()?
            .iter()
            .filter(|e| e["sku"] == sku && e["supplyChannel"]["id"] == channel)
            .cloned()
            .collect();
        assert!(found.len() <= 1, "one entry per SKU and channel: {found:?}");
        found.into_iter().next()
    }
}
