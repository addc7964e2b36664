//! The HTTP client every destination adapter calls through: bearer token from [`TokenProvider`], one
//! token refresh and one retry on a 401, a timeout per request, and the answer classified once
//! ([`super::retry::classify`]) into a [`Reply`] the adapter reads or a [`Failure`] the engine acts on.
//! A client built with [`DestinationClient::unauthenticated`] sends no token (signed webhooks carry
//! their own signature): a 401 is then an answer like any other refusal.
//!
//! Failures carry our classification, the HTTP status and the destination's error code (commercetools
//! `errors[].code`, OData `error.code`), never bodies or messages: those may echo customer data.

use super::engine::Failure;
use super::oauth::TokenProvider;
use super::retry::{Class, classify, retry_after};
use crate::ports::Clock;
use http::{HeaderMap, StatusCode};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;

/// An answer the adapter reads: 2xx, a concurrency conflict (409/412) or a 404 (read-backs look for
/// what may not exist).
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers (`ETag`, `Location`).
    pub headers: HeaderMap,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, Failure> {
        serde_json::from_slice(&self.body).map_err(|_| Failure::Transient {
            reason: format!("HTTP {} with a body that is not JSON", self.status.as_u16()),
            retry_after: None,
        })
    }
}

/// A destination's HTTP client.
#[derive(Clone)]
pub struct DestinationClient {
    http: reqwest::Client,
    /// `None`: requests go without a token.
    tokens: Option<Arc<TokenProvider>>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

/// The destination's error code in an error body, if it has one we know.
pub fn error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = v["errors"][0]["code"]
        .as_str()
        .or_else(|| v["error"]["code"].as_str())
        .or_else(|| v["error"].as_str())?;
    Some(code.chars().take(64).collect())
}

impl DestinationClient {
    /// A client with `tokens`, each request bounded by `timeout`.
    pub fn new(
        http: reqwest::Client,
        tokens: Arc<TokenProvider>,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> Self {
        Self {
            http,
            tokens: Some(tokens),
            clock,
            timeout,
        }
    }

    /// A client that sends no token, each request bounded by `timeout`.
    pub fn unauthenticated(
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> Self {
        Self {
            http,
            tokens: None,
            clock,
            timeout,
        }
    }

    /// Sends the request `build` makes (called again for the retry after a 401, with the new token).
    pub async fn send<F>(&self, build: F) -> Result<Reply, Failure>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let Some(tokens) = &self.tokens else {
            let reply = self.once(&build, None).await?;
            return self.classified(reply);
        };
        let token = tokens.token().await.map_err(token_failure)?;
        let reply = self.once(&build, Some(token.expose_secret())).await?;
        if reply.status != StatusCode::UNAUTHORIZED {
            return self.classified(reply);
        }
        let fresh = tokens
            .refresh_rejected(&token)
            .await
            .map_err(token_failure)?;
        let reply = self.once(&build, Some(fresh.expose_secret())).await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            // A fresh token refused too: the client lacks a permission. That is about the destination's
            // configuration, not this record: retry later (the breaker opens and alarms, the records
            // wait in the queue) rather than dead-letter every record until an operator fixes it.
            return Err(Failure::Transient {
                reason: "HTTP 401 with a fresh token".into(),
                retry_after: None,
            });
        }
        self.classified(reply)
    }

    async fn once<F>(&self, build: &F, token: Option<&str>) -> Result<Reply, Failure>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let mut request = build(&self.http);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let resp = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| Failure::Transient {
                reason: if e.is_timeout() {
                    "timeout".into()
                } else {
                    format!("network: {}", e.without_url())
                },
                retry_after: None,
            })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| Failure::Transient {
            reason: format!("reading the answer: {}", e.without_url()),
            retry_after: None,
        })?;
        Ok(Reply {
            status,
            headers,
            body: body.to_vec(),
        })
    }

    fn classified(&self, reply: Reply) -> Result<Reply, Failure> {
        let code = || error_code(&reply.body).map_or_else(String::new, |c| format!(" {c}"));
        match classify(reply.status) {
            Class::Delivered | Class::Conflict => Ok(reply),
            _ if reply.status == StatusCode::NOT_FOUND => Ok(reply),
            Class::Transient => Err(Failure::Transient {
                reason: format!("HTTP {}{}", reply.status.as_u16(), code()),
                retry_after: matches!(reply.status.as_u16(), 429 | 503)
                    .then(|| retry_after(&reply.headers, self.clock.now()))
                    .flatten(),
            }),
            Class::Unauthorized | Class::Permanent => Err(Failure::Permanent {
                reason: format!("HTTP {}{}", reply.status.as_u16(), code()),
            }),
        }
    }
}

/// No token is never about the record: a refused client (wrong secret, scope not granted) is the
/// destination's configuration, so records wait (the breaker opens and alarms) instead of going to the
/// DLQ one by one.
fn token_failure(e: super::oauth::TokenError) -> Failure {
    Failure::Transient {
        reason: e.to_string(),
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::oauth::{ClientAuth, ClientCredentials};
    use crate::ports::ManualClock;
    use axum::extract::State;
    use axum::routing::{get, post};
    use chrono::{DateTime, Utc};
    use secrecy::SecretString;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A destination of our own for unit tests: tokens `tok-N`; `/orders` accepts only the latest
    /// token (so the first, "revoked" one gets a 401); `/busy` answers 429 with `Retry-After: 7`;
    /// `/bad` a commercetools-shaped 400; `/slow` never answers in time.
    #[derive(Default)]
    struct Peer {
        tokens: AtomicUsize,
    }

    async fn serve() -> (Arc<Peer>, String) {
        let peer = Arc::new(Peer::default());
        let app = axum::Router::new()
            .route(
                "/oauth/token",
                post(|State(p): State<Arc<Peer>>| async move {
                    let n = p.tokens.fetch_add(1, Ordering::SeqCst) + 1;
                    format!(r#"{{"access_token":"tok-{n}","expires_in":3600}}"#)
                }),
            )
            .route(
                "/orders",
                post(
                    |State(p): State<Arc<Peer>>, headers: axum::http::HeaderMap| async move {
                        let latest = format!("Bearer tok-{}", p.tokens.load(Ordering::SeqCst));
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        if p.tokens.load(Ordering::SeqCst) < 2 || auth != latest {
                            (axum::http::StatusCode::UNAUTHORIZED, String::new())
                        } else {
                            (axum::http::StatusCode::CREATED, r#"{"id":"o-1"}"#.into())
                        }
                    },
                ),
            )
            .route(
                "/busy",
                post(|| async {
                    (
                        axum::http::StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "7")],
                        String::new(),
                    )
                }),
            )
            .route(
                "/bad",
                post(|| async {
                    (
                        axum::http::StatusCode::BAD_REQUEST,
                        r#"{"statusCode":400,"message":"Alice Smith's order is invalid","errors":[{"code":"InvalidInput","message":"customer alice@example.com"}]}"#,
                    )
                }),
            )
            .route("/missing", get(|| async { axum::http::StatusCode::NOT_FOUND }))
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .with_state(peer.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (peer, format!("http://{addr}"))
    }

    fn client(base: &str) -> DestinationClient {
        let clock = Arc::new(ManualClock::new(DateTime::<Utc>::UNIX_EPOCH));
        let tokens = Arc::new(TokenProvider::new(
            ClientCredentials {
                token_url: format!("{base}/oauth/token"),
                client_id: "c".into(),
                client_secret: SecretString::from("s"),
                scope: None,
                auth: ClientAuth::Basic,
            },
            reqwest::Client::new(),
            clock.clone(),
            chrono::Duration::seconds(60),
        ));
        DestinationClient::new(
            reqwest::Client::new(),
            tokens,
            clock,
            Duration::from_millis(300),
        )
    }

    #[tokio::test]
    async fn a_401_refreshes_the_token_and_retries_once() {
        let (peer, base) = serve().await;
        let c = client(&base);
        let reply = c
            .send(|http| http.post(format!("{base}/orders")))
            .await
            .expect("delivered after a refresh");
        assert_eq!(reply.status, StatusCode::CREATED);
        assert_eq!(peer.tokens.load(Ordering::SeqCst), 2, "one refresh");
    }

    #[tokio::test]
    async fn answers_become_replies_or_classified_failures_without_bodies() {
        let (_, base) = serve().await;
        let c = client(&base);
        assert_eq!(
            c.send(|http| http.post(format!("{base}/busy"))).await.err(),
            Some(Failure::Transient {
                reason: "HTTP 429".into(),
                retry_after: Some(Duration::from_secs(7)),
            })
        );
        let bad = c.send(|http| http.post(format!("{base}/bad"))).await.err();
        assert_eq!(
            bad,
            Some(Failure::Permanent {
                reason: "HTTP 400 InvalidInput".into()
            }),
            "the code, never the message (it names a customer)"
        );
        let missing = c
            .send(|http| http.get(format!("{base}/missing")))
            .await
            .expect("a 404 is an answer for read-backs");
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(
            c.send(|http| http.post(format!("{base}/slow"))).await.err(),
            Some(Failure::Transient {
                reason: "timeout".into(),
                retry_after: None
            })
        );
        let unreachable = client("http://127.0.0.1:9");
        assert!(matches!(
            unreachable
                .send(|http| http.post("http://127.0.0.1:9/orders"))
                .await,
            Err(Failure::Transient { .. })
        ));
    }

    #[tokio::test]
    async fn an_unauthenticated_client_sends_no_token_and_never_refreshes() {
        let (peer, base) = serve().await;
        let c = DestinationClient::unauthenticated(
            reqwest::Client::new(),
            Arc::new(ManualClock::new(DateTime::<Utc>::UNIX_EPOCH)),
            Duration::from_millis(300),
        );
        assert_eq!(
            c.send(|http| http.post(format!("{base}/orders")))
                .await
                .err(),
            Some(Failure::Permanent {
                reason: "HTTP 401".into()
            }),
            "no bearer token reached /orders"
        );
        assert_eq!(peer.tokens.load(Ordering::SeqCst), 0, "no token requested");
        assert!(matches!(
            c.send(|http| http.post(format!("{base}/busy"))).await,
            Err(Failure::Transient { .. })
        ));
    }

    #[test]
    fn error_codes_of_commercetools_and_odata_bodies() {
        assert_eq!(
            error_code(br#"{"errors":[{"code":"ConcurrentModification"}]}"#).as_deref(),
            Some("ConcurrentModification")
        );
        assert_eq!(
            error_code(br#"{"error":{"code":"0x80040237","message":"x"}}"#).as_deref(),
            Some("0x80040237")
        );
        assert_eq!(
            error_code(br#"{"error":"invalid_client"}"#).as_deref(),
            Some("invalid_client")
        );
        assert_eq!(error_code(b"<html>"), None);
    }

    #[tokio::test]
    async fn a_refused_client_is_a_transient_failure_not_a_dead_record() {
        // The token endpoint refuses the client (a wrong secret): every record would fail the same way.
        let app = axum::Router::new().route(
            "/oauth/token",
            post(|| async {
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    r#"{"error":"invalid_client","error_description":"secret s is wrong"}"#,
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let failure = client(&base)
            .send(|http| http.post(format!("{base}/orders")))
            .await
            .err();
        let Some(Failure::Transient { reason, .. }) = failure else {
            panic!("{failure:?}");
        };
        assert!(reason.contains("invalid_client"), "{reason}");
        assert!(!reason.contains("secret s"), "never the description");
    }
}
