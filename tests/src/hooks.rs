//! A Standard Webhooks receiver (`scripts/webhook_receiver.py`) that verifies every request with the
//! reference library (`standardwebhooks`, PyPI), on a free loopback port per test, killed when the handle
//! drops.
//!
//! Installed by `scripts/test.sh` (`scripts/requirements-test.txt`); without it the tests skip, unless
//! `POS_REQUIRE_MOTO=1` (the switch the test script sets), where its absence fails.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running receiver.
pub struct Receiver {
    child: Child,
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

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// Starts a receiver, or returns `None` (skip) when `standardwebhooks` is missing and not required.
    pub fn start() -> Option<Receiver> {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/webhook_receiver.py"
        );
        let required = std::env::var("POS_REQUIRE_MOTO").is_ok_and(|v| v == "1");
        let mut child = match Command::new("python3")
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if required => panic!("cannot start the webhook receiver: {e}"),
            Err(e) => {
                eprintln!("SKIP: python3 not available ({e})");
                return None;
            }
        };
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        if !matches!(read, Some(Ok(n)) if n > 0) || !line.starts_with("http://127.0.0.1:") {
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                !required,
                "the webhook receiver did not start; pip install standardwebhooks"
            );
            eprintln!("SKIP: standardwebhooks is not installed (pip install standardwebhooks)");
            return None;
        }
        Some(Receiver {
            child,
            url: line.trim().to_owned(),
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
