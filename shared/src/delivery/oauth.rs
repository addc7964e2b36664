//! OAuth 2.0 client credentials (RFC 6749 §4.4) with a token cache, for the destinations we deliver to
//! (commercetools at `{auth_url}/oauth/token`, Entra ID at
//! `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token` with scope `{environment}/.default`).
//!
//! - One token per provider, shared by every call of the process; one fetch at a time (callers waiting
//!   for a token wait for that fetch instead of each starting one).
//! - Refreshed before it expires: `margin` before `expires_in` runs out (at most half its lifetime), so
//!   a request never leaves with a token about to die in flight.
//! - On a 401 the caller asks [`TokenProvider::refresh_rejected`] with the token that was refused: the
//!   first such caller fetches a new one, the others get it; the caller retries once.
//! - Client authentication per RFC 6749 §2.3.1: HTTP Basic (commercetools) or the form body (Entra ID
//!   accepts both; some servers only the body).
//! - The client secret and tokens are [`SecretString`]s: never logged, never in errors.

use crate::ports::Clock;
use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::Mutex;

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic base64(client_id:client_secret)`.
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// A client-credentials grant.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// The token endpoint.
    pub token_url: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: SecretString,
    /// Requested scopes, space-separated (`None`: the client's default).
    pub scope: Option<String>,
    /// How to authenticate.
    pub auth: ClientAuth,
}

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The server refused the client (wrong id/secret, scope not granted): a configuration error,
    /// retrying does not help until an operator fixes it.
    #[error("token endpoint refused the client: HTTP {status} {error}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The OAuth `error` code (`invalid_client`, `invalid_scope`, …), never the description.
        error: String,
    },
    /// The endpoint could not be reached or failed (network, 5xx, 429, unreadable answer): retry later.
    #[error("token endpoint unavailable: {0}")]
    Unavailable(String),
}

impl TokenError {
    /// Whether a later retry may succeed without an operator.
    pub fn is_transient(&self) -> bool {
        matches!(self, TokenError::Unavailable(_))
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

#[derive(Deserialize)]
struct TokenErrorBody {
    error: String,
}

struct Cached {
    token: SecretString,
    refresh_at: DateTime<Utc>,
}

/// Lifetime assumed when the server does not say (RFC 6749 makes `expires_in` only recommended).
const DEFAULT_LIFETIME: Duration = Duration::seconds(300);

/// A cached client-credentials token source.
pub struct TokenProvider {
    grant: ClientCredentials,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    margin: Duration,
    cached: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("token_url", &self.grant.token_url)
            .field("client_id", &self.grant.client_id)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// A provider for `grant`, refreshing `margin` before expiry.
    pub fn new(
        grant: ClientCredentials,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
        margin: Duration,
    ) -> Self {
        Self {
            grant,
            http,
            clock,
            margin,
            cached: Mutex::new(None),
        }
    }

    /// A valid token: the cached one, or a fresh one when it is within the margin of its expiry.
    pub async fn token(&self) -> Result<SecretString, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && self.clock.now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// The destination refused `rejected` with 401: fetch a new token unless another caller already
    /// replaced it, and return the token to retry with (once).
    pub async fn refresh_rejected(
        &self,
        rejected: &SecretString,
    ) -> Result<SecretString, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && c.token.expose_secret() != rejected.expose_secret()
        {
            return Ok(c.token.clone());
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    async fn fetch(&self) -> Result<Cached, TokenError> {
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.grant.scope {
            form.push(("scope", scope));
        }
        let mut req = self.http.post(&self.grant.token_url);
        match self.grant.auth {
            ClientAuth::Basic => {
                req = req.basic_auth(
                    &self.grant.client_id,
                    Some(self.grant.client_secret.expose_secret()),
                );
            }
            ClientAuth::Body => {
                form.push(("client_id", &self.grant.client_id));
                form.push(("client_secret", self.grant.client_secret.expose_secret()));
            }
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let started = self.clock.now();
        let resp = req
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            // reqwest's error text names the URL, never the body we sent.
            .map_err(|e| TokenError::Unavailable(e.without_url().to_string()))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| TokenError::Unavailable(e.without_url().to_string()))?;
        if status.is_success() {
            let parsed: TokenResponse = serde_json::from_slice(&bytes).map_err(|_| {
                TokenError::Unavailable("token endpoint answered without an access_token".into())
            })?;
            if parsed.access_token.is_empty() {
                return Err(TokenError::Unavailable(
                    "token endpoint answered an empty access_token".into(),
                ));
            }
            let lifetime = parsed
                .expires_in
                .filter(|s| *s > 0)
                .map_or(DEFAULT_LIFETIME, Duration::seconds);
            // Refresh `margin` early, but never later than half-way through a short lifetime.
            let early = self.margin.min(lifetime / 2);
            tracing::info!(
                token_url = %self.grant.token_url,
                lifetime_s = lifetime.num_seconds(),
                "access token fetched"
            );
            return Ok(Cached {
                token: SecretString::from(parsed.access_token),
                refresh_at: started + lifetime - early,
            });
        }
        let code = serde_json::from_slice::<TokenErrorBody>(&bytes)
            .map(|b| b.error.chars().take(64).collect())
            .unwrap_or_else(|_| "unknown".to_owned());
        if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            return Err(TokenError::Unavailable(format!("HTTP {status} {code}")));
        }
        tracing::error!(token_url = %self.grant.token_url, status = status.as_u16(), error = %code, "token endpoint refused the client");
        Err(TokenError::Rejected {
            status: status.as_u16(),
            error: code,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ManualClock;
    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::routing::post;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A token endpoint of our own (for unit tests; the commercetools emulator is the real peer in
    /// `tests/`): counts requests, checks the grant, answers per `mode`.
    #[derive(Default)]
    struct Endpoint {
        hits: AtomicUsize,
        mode: std::sync::Mutex<&'static str>,
        last_body: std::sync::Mutex<String>,
        last_auth: std::sync::Mutex<Option<String>>,
    }

    async fn token(
        State(e): State<Arc<Endpoint>>,
        headers: HeaderMap,
        body: String,
    ) -> (axum::http::StatusCode, String) {
        let n = e.hits.fetch_add(1, Ordering::SeqCst) + 1;
        *e.last_body.lock().expect("lock") = body;
        *e.last_auth.lock().expect("lock") = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match *e.mode.lock().expect("lock") {
            "refuse" => (
                axum::http::StatusCode::UNAUTHORIZED,
                r#"{"error":"invalid_client","error_description":"secret s3cr3t is wrong"}"#.into(),
            ),
            "down" => (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new()),
            _ => (
                axum::http::StatusCode::OK,
                format!(r#"{{"access_token":"tok-{n}","token_type":"Bearer","expires_in":3600}}"#),
            ),
        }
    }

    async fn serve() -> (Arc<Endpoint>, String) {
        let e = Arc::new(Endpoint::default());
        let app = axum::Router::new()
            .route("/oauth/token", post(token))
            .with_state(e.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (e, format!("http://{addr}/oauth/token"))
    }

    fn provider(url: &str, auth: ClientAuth, clock: Arc<ManualClock>) -> TokenProvider {
        TokenProvider::new(
            ClientCredentials {
                token_url: url.to_owned(),
                client_id: "client-1".into(),
                client_secret: SecretString::from("s3cr3t"),
                scope: Some("manage_orders:proj".into()),
                auth,
            },
            reqwest::Client::new(),
            clock,
            Duration::seconds(60),
        )
    }

    #[tokio::test]
    async fn a_token_is_cached_until_the_margin_before_expiry_then_refreshed() {
        let (e, url) = serve().await;
        let clock = Arc::new(ManualClock::new(DateTime::<Utc>::UNIX_EPOCH));
        let p = provider(&url, ClientAuth::Basic, clock.clone());
        let (a, b) = tokio::join!(p.token(), p.token());
        assert_eq!(a.expect("a").expose_secret(), "tok-1");
        assert_eq!(b.expect("b").expose_secret(), "tok-1");
        assert_eq!(
            e.hits.load(Ordering::SeqCst),
            1,
            "one fetch for concurrent callers"
        );
        let body = e.last_body.lock().expect("lock").clone();
        assert!(body.contains("grant_type=client_credentials"), "{body}");
        assert!(body.contains("scope=manage_orders%3Aproj"), "{body}");
        assert!(
            !body.contains("s3cr3t"),
            "Basic: the secret is not in the body"
        );
        assert!(
            e.last_auth
                .lock()
                .expect("lock")
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic ")),
        );
        clock.advance(Duration::seconds(3600 - 61));
        assert_eq!(p.token().await.expect("cached").expose_secret(), "tok-1");
        clock.advance(Duration::seconds(2));
        assert_eq!(p.token().await.expect("fresh").expose_secret(), "tok-2");
    }

    #[tokio::test]
    async fn a_401_refreshes_once_for_all_callers_holding_the_rejected_token() {
        let (e, url) = serve().await;
        let clock = Arc::new(ManualClock::new(DateTime::<Utc>::UNIX_EPOCH));
        let p = provider(&url, ClientAuth::Body, clock);
        let old = p.token().await.expect("token");
        let body = e.last_body.lock().expect("lock").clone();
        assert!(body.contains("client_id=client-1"), "{body}");
        let new1 = p.refresh_rejected(&old).await.expect("refresh");
        let new2 = p.refresh_rejected(&old).await.expect("already refreshed");
        assert_eq!(new1.expose_secret(), "tok-2");
        assert_eq!(new2.expose_secret(), "tok-2");
        assert_eq!(e.hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn refusals_are_configuration_errors_outages_are_transient_and_nothing_leaks() {
        let (e, url) = serve().await;
        let clock = Arc::new(ManualClock::new(DateTime::<Utc>::UNIX_EPOCH));
        let p = provider(&url, ClientAuth::Basic, clock);
        *e.mode.lock().expect("lock") = "refuse";
        let err = p.token().await.expect_err("refused");
        assert_eq!(
            err,
            TokenError::Rejected {
                status: 401,
                error: "invalid_client".into()
            }
        );
        assert!(!err.is_transient());
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(!format!("{p:?}").contains("s3cr3t"));
        *e.mode.lock().expect("lock") = "down";
        let err = p.token().await.expect_err("down");
        assert!(err.is_transient(), "{err}");
        let unreachable = provider(
            "http://127.0.0.1:9/oauth/token",
            ClientAuth::Basic,
            Arc::new(ManualClock::new(DateTime::<Utc>::UNIX_EPOCH)),
        );
        assert!(
            unreachable
                .token()
                .await
                .expect_err("no server")
                .is_transient()
        );
    }
}
