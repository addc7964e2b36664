//! A Standard Webhooks receiver (`scripts/webhook_receiver.py`) that verifies every request with the
//! reference library (`standardwebhooks`, PyPI), on a free loopback port per test, killed when the handle
//! drops.
//!
//! Installed by `scripts/test.sh` (`scripts/requirements-test.txt`); without it the tests skip, unless
//! `POS_REQUIRE_MOTO=1` (the switch the test script sets), where its absence fails.

use serde_json::{Value, json};

/// A running receiver.
pub struct Receiver {
    /// Held for its drop: the process lives as long as this handle.
    _process: crate::peer::Peer,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    http: reqwest::Client,
}

/// One webhook the receiver got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its `webhook-id`.
    pub id: Option<String>,
    /// Whether the reference library verified it.
    pub verified: bool,
    /// The library's error when it did not.
    pub error: Option<String>,
    /// What the receiver answered.
    pub status: u16,
}

impl Receiver {
    /// Starts a receiver, or returns `None` (skip) when `standardwebhooks` is missing and not required.
    pub fn start() -> Option<Receiver> {
        let peer = crate::peer::start(
            "webhook_receiver.py",
            "http://127.0.0.1:",
            "pip install standardwebhooks",
        )?;
        Some(Receiver {
            url: peer.url.clone(),
            _process: peer,
            http: reqwest::Client::new(),
        })
    }

    /// Sets the one secret it verifies with, and queues scripted answers (`500`, `timeout`, `ok`).
    pub async fn configure(&self, secret: &str, script: &[&str]) {
        let status = self
            .http
            .post(format!("{}/_config", self.url))
            .json(&json!({"secret": secret, "script": script}))
            .send()
            .await
            .map(|r| r.status().as_u16());
        assert_eq!(status.ok(), Some(204), "receiver configured");
    }

    /// Every webhook received so far.
    pub async fn received(&self) -> Vec<Received> {
        let body: Value = self
            .http
            .get(format!("{}/_received", self.url))
            .send()
            .await
            .expect("receiver answers")
            .json()
            .await
            .expect("receiver JSON");
        body.as_array()
            .map(|a| {
                a.iter()
                    .map(|r| Received {
                        id: r["id"].as_str().map(str::to_owned),
                        verified: r["verified"].as_bool().unwrap_or(false),
                        error: r["error"].as_str().map(str::to_owned),
                        status: r["status"]
                            .as_u64()
                            .and_then(|s| u16::try_from(s).ok())
                            .unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
