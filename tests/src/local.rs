//! pos-local in process, configured by a connectors file: start it, post signed deliveries to it, and
//! wait for the delivery ledger (served by its read API) to show a sale delivered.

use pos_local::server::{LocalOptions, Platform};
use pos_shared::capture::CaptureSettings;
use pos_shared::samples::SignedDelivery;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A running pos-local.
pub struct Local {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its parts (the ledger, the stores), for what a test sets up behind the API.
    pub platform: Arc<Platform>,
    http: reqwest::Client,
    token: String,
}

impl Local {
    /// Starts pos-local on `data_dir` with the connectors file `connectors` (short visibility timeout
    /// and relay interval, so retries happen within a test).
    pub async fn start(connectors: &std::path::Path, data_dir: &std::path::Path) -> Local {
        let platform = Arc::new(
            Platform::open(&LocalOptions {
                data_dir: data_dir.to_owned(),
                secrets_file: None,
                settings: CaptureSettings::default(),
                visibility_timeout: Some(Duration::from_millis(300)),
                low_stock_threshold: 5,
                loyalty_rules: None,
                relay_interval: Duration::from_millis(500),
                jwks_file: None,
                jwt_issuer: pos_shared::auth::DEV_ISSUER.into(),
                jwt_audience: pos_shared::auth::API_AUDIENCE.into(),
                connectors_file: Some(connectors.to_owned()),
            })
            .await
            .expect("platform"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(pos_local::server::serve(
            listener,
            platform.clone(),
            std::future::pending(),
        ));
        let token = pos_shared::auth::dev_token(
            pos_shared::auth::DEV_ISSUER,
            pos_shared::auth::API_AUDIENCE,
            "test",
            "deliveries:read",
            chrono::Utc::now(),
            chrono::Duration::minutes(10),
        )
        .expect("token");
        Local {
            url,
            platform,
            http: reqwest::Client::new(),
            token,
        }
    }

    /// Posts a signed delivery to its vendor's webhook; the HTTP status.
    pub async fn send(&self, d: &SignedDelivery) -> u16 {
        let mut req = self
            .http
            .post(format!("{}/webhooks/{}", self.url, d.vendor.as_str()));
        for (name, value) in &d.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        req.body(d.body.clone())
            .send()
            .await
            .expect("post")
            .status()
            .as_u16()
    }

    /// The sale's ledger entries once `destinations` all say delivered (or after 10 s, as they are).
    pub async fn delivered(&self, sale_id: &str, destinations: &[&str]) -> Vec<Value> {
        self.ledger_until(sale_id, |entries| {
            destinations.iter().all(|d| {
                entries
                    .iter()
                    .any(|e| e["destination"] == *d && e["status"] == "delivered")
            })
        })
        .await
    }

    /// The sale's ledger entries once `done` holds for them (or after 10 s, as they are).
    pub async fn ledger_until(&self, sale_id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut entries = Vec::new();
        for _ in 0..100 {
            let reply: Value = self
                .http
                .get(format!("{}/v1/sales/{sale_id}/deliveries", self.url))
                .bearer_auth(&self.token)
                .send()
                .await
                .expect("deliveries")
                .json()
                .await
                .unwrap_or(Value::Null);
            entries = reply["deliveries"].as_array().cloned().unwrap_or_default();
            if done(&entries) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        entries
    }
}
