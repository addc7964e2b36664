//! The issuer's JWKS fetched over HTTPS (the deployed query API), behind [`super::JwksSource`].
//!
//! Plain `http://` is refused except on loopback (tests, a local issuer): keys fetched over an
//! unauthenticated channel could be swapped by anyone on the path. Fetches are bounded (timeout, body
//! size) so a slow or hostile issuer cannot hold a request; every failure is
//! [`AuthFailure::KeysUnavailable`] (503), and [`super::Authenticator`] keeps serving its cached keys
//! meanwhile.

use super::{AuthFailure, JwksSource};
use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use std::time::Duration;

/// Largest JWKS document accepted (real ones are a few KiB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A JWKS at a URL.
pub struct HttpJwks {
    client: reqwest::Client,
    url: reqwest::Url,
}

/// Whether `url` may carry keys: HTTPS, or HTTP to a loopback host.
fn trusted_transport(url: &reqwest::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => url.host_str().is_some_and(|h| {
            h == "localhost"
                || h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    }
}

impl HttpJwks {
    /// A source for `url`, fetched with `timeout`. Refuses URLs that are not HTTPS (or loopback HTTP).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("invalid JWKS URL: {e}"))?;
        if !trusted_transport(&url) {
            return Err("the JWKS URL must be https:// (http:// only on loopback)".into());
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Keys come from the configured URL only: a redirect elsewhere is a failure.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { client, url })
    }

    /// The conventional JWKS location of an issuer (`{issuer}/.well-known/jwks.json`: Cognito, Auth0,
    /// Keycloak realms publish theirs there; others set `JWKS_URL`).
    pub fn default_url(issuer: &str) -> String {
        format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/'))
    }

    async fn get(&self) -> Result<JwkSet, String> {
        let mut resp = self
            .client
            .get(self.url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("body larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))
    }
}

#[async_trait]
impl JwksSource for HttpJwks {
    async fn fetch(&self) -> Result<JwkSet, AuthFailure> {
        self.get().await.map_err(|cause| {
            tracing::warn!(url = %self.url, %cause, "JWKS fetch failed");
            AuthFailure::KeysUnavailable
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A loopback issuer whose answers follow `reply(n)` for the n-th request.
    async fn issuer(
        reply: impl Fn(usize) -> (StatusCode, String) + Send + Sync + 'static,
    ) -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let reply = Arc::new(reply);
        let app = Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let reply = reply.clone();
                async move { reply(n) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), hits)
    }

    fn source(base: &str) -> HttpJwks {
        HttpJwks::new(&HttpJwks::default_url(base), Duration::from_secs(2)).expect("source")
    }

    #[tokio::test]
    async fn fetches_the_issuers_keys() {
        let (base, hits) =
            issuer(|_| (StatusCode::OK, super::super::DEV_JWKS_JSON.to_owned())).await;
        let keys = source(&base).fetch().await.expect("keys");
        assert!(keys.find(super::super::DEV_KID).is_some());
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_issuer_that_fails_or_lies_is_keys_unavailable() {
        let (base, _) = issuer(|n| match n {
            0 => (StatusCode::INTERNAL_SERVER_ERROR, "oops".into()),
            1 => (StatusCode::OK, "<html>not json</html>".into()),
            2 => (StatusCode::OK, "x".repeat(MAX_JWKS_BYTES + 1)),
            _ => (StatusCode::NOT_FOUND, String::new()),
        })
        .await;
        let s = source(&base);
        for _ in 0..4 {
            assert_eq!(s.fetch().await.err(), Some(AuthFailure::KeysUnavailable));
        }
        // Nobody listening.
        let dead = source("http://127.0.0.1:9");
        assert_eq!(dead.fetch().await.err(), Some(AuthFailure::KeysUnavailable));
    }

    /// The authenticator over a live issuer: keys fetched once, refetched when a token names a key the
    /// issuer has added since (rotation), and an unknown kid still refused.
    #[tokio::test]
    async fn a_rotated_issuer_key_is_fetched_when_a_token_names_it() {
        use super::super::{AuthConfig, Authenticator, DEV_ISSUER, dev_token};
        let (base, hits) = issuer(|n| {
            let keys = if n == 0 {
                super::super::DEV_JWKS_JSON
            } else {
                include_str!("dev/test-jwks.json")
            };
            (StatusCode::OK, keys.to_owned())
        })
        .await;
        let now = chrono::Utc::now();
        let auth = Authenticator::new(
            Arc::new(source(&base)),
            Arc::new(crate::ports::ManualClock::new(now)),
            AuthConfig {
                issuer: DEV_ISSUER.into(),
                audience: "pos-platform".into(),
                leeway_seconds: 30,
                jwks_ttl: chrono::Duration::minutes(10),
                min_refetch: chrono::Duration::zero(),
                jwks_max_stale: chrono::Duration::hours(24),
            },
        );
        let es = dev_token(
            DEV_ISSUER,
            "pos-platform",
            "a",
            "stock:read",
            now,
            chrono::Duration::minutes(5),
        )
        .expect("token");
        assert!(
            auth.authenticate(Some(&format!("Bearer {es}")))
                .await
                .is_ok()
        );
        let claims = serde_json::json!({"iss": DEV_ISSUER, "aud": "pos-platform", "sub": "b",
            "scope": "sales:read", "exp": (now + chrono::Duration::minutes(5)).timestamp()});
        let sign = |kid: &str| {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
            header.kid = Some(kid.to_owned());
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("dev/test-rs256.pem"))
                .expect("rsa key");
            jsonwebtoken::encode(&header, &claims, &key).expect("sign")
        };
        let rotated = auth
            .authenticate(Some(&format!("Bearer {}", sign("test-rsa"))))
            .await
            .expect("the new key is fetched");
        assert!(rotated.scopes.contains("sales:read"));
        assert_eq!(hits.load(Ordering::SeqCst), 2, "one fetch, one refetch");
        assert_eq!(
            auth.authenticate(Some(&format!("Bearer {}", sign("nobody"))))
                .await
                .err(),
            Some(AuthFailure::UnknownKey)
        );
    }

    #[test]
    fn only_https_or_loopback_http_is_trusted() {
        let t = Duration::from_secs(1);
        assert!(HttpJwks::new("https://issuer.example/.well-known/jwks.json", t).is_ok());
        assert!(HttpJwks::new("http://127.0.0.1:8080/jwks", t).is_ok());
        assert!(HttpJwks::new("http://localhost/jwks", t).is_ok());
        assert!(HttpJwks::new("http://[::1]/jwks", t).is_ok());
        for bad in [
            "http://issuer.example/jwks",
            "http://10.0.0.1/jwks",
            "ftp://issuer.example/jwks",
            "file:///etc/jwks.json",
            "not a url",
        ] {
            assert!(HttpJwks::new(bad, t).is_err(), "{bad}");
        }
        assert_eq!(
            HttpJwks::default_url("https://cognito-idp.eu-west-1.amazonaws.com/pool/"),
            "https://cognito-idp.eu-west-1.amazonaws.com/pool/.well-known/jwks.json"
        );
    }
}
