//! Bearer-token authentication for the read APIs (OAuth2 / OIDC access tokens as JWTs), checked in the
//! function as defence in depth behind the API Gateway JWT authorizer.
//!
//! - Signatures are verified against the issuer's JWKS, cached, and refetched (rate-limited) when a
//!   token names an unknown `kid`, so key rotation at the issuer needs no deploy.
//! - Only RS256 and ES256 are accepted, and only with a key of the matching type from the JWKS: `none`,
//!   HS256 (including the "public key as HMAC secret" confusion) and any other algorithm are refused.
//! - `iss`, `aud`, `exp` and `nbf` are required and checked with a small leeway.
//! - Scopes come from `scope` or `scp`, each either one space-separated string (OAuth2 `scope`, Entra ID
//!   `scp`) or a list of strings (Okta `scp`); any other shape is an invalid token. A missing scope is
//!   403, every other failure 401 with `WWW-Authenticate`.
//! - While the issuer is unreachable, keys already fetched keep verifying tokens, but only for
//!   [`AuthConfig::jwks_max_stale`] after their last successful fetch (24 h by default); after that the
//!   keys are unavailable (503) rather than trusted forever (a key the issuer revoked meanwhile would
//!   otherwise stay valid for as long as the outage lasts). After a failed fetch the next attempt waits
//!   [`AuthConfig::min_refetch`], so requests during an outage do not each wait for a fetch timeout.
//!
//! `dev/` holds the public development issuer of `pos-local` (a P-256 key pair and its JWKS): never trust
//! it in a deployment.

pub mod http;

use crate::ports::Clock;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The development issuer's private key (PKCS#8 PEM, P-256). Public: for `pos-local token` only.
pub const DEV_SIGNING_KEY_PEM: &str = include_str!("dev/dev-es256.pem");
/// The development issuer's JWKS.
pub const DEV_JWKS_JSON: &str = include_str!("dev/dev-jwks.json");
/// The development issuer's key id.
pub const DEV_KID: &str = "pos-local-dev";
/// The development issuer (`iss`) of `pos-local token`.
pub const DEV_ISSUER: &str = "https://pos-local.invalid/dev-issuer";
/// The audience (`aud`) the read APIs expect.
pub const API_AUDIENCE: &str = "pos-platform";

/// Why a request is not authorised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No `Authorization: Bearer …` header.
    #[error("a bearer token is required")]
    MissingToken,
    /// Not a JWT, or an algorithm we refuse.
    #[error("the token is malformed or uses a refused algorithm")]
    Malformed,
    /// The token names a key the issuer does not publish.
    #[error("the token's signing key is unknown")]
    UnknownKey,
    /// Bad signature, expired, not yet valid, wrong issuer or audience.
    #[error("the token is invalid: {0}")]
    Invalid(String),
    /// Authenticated, but without the scope the route needs.
    #[error("the token lacks the scope {0}")]
    InsufficientScope(String),
    /// The issuer's keys could not be fetched (infrastructure: 503).
    #[error("the token issuer's keys are unavailable")]
    KeysUnavailable,
}

impl AuthFailure {
    /// HTTP status: 401, 403 for a missing scope, 503 when the keys cannot be fetched.
    pub fn status(&self) -> u16 {
        match self {
            AuthFailure::InsufficientScope(_) => 403,
            AuthFailure::KeysUnavailable => 503,
            _ => 401,
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750).
    pub fn challenge(&self) -> String {
        match self {
            AuthFailure::MissingToken => "Bearer".to_owned(),
            AuthFailure::InsufficientScope(s) => {
                format!("Bearer error=\"insufficient_scope\", scope=\"{s}\"")
            }
            AuthFailure::KeysUnavailable => "Bearer".to_owned(),
            _ => "Bearer error=\"invalid_token\"".to_owned(),
        }
    }
}

/// Where the issuer's keys come from.
#[async_trait]
pub trait JwksSource: Send + Sync {
    /// The current key set.
    async fn fetch(&self) -> Result<JwkSet, AuthFailure>;
}

/// A fixed key set (a JWKS file, tests).
pub struct StaticJwks(pub JwkSet);

impl StaticJwks {
    /// Parses a JWKS document.
    pub fn parse(json: &str) -> Result<Self, String> {
        serde_json::from_str(json)
            .map(Self)
            .map_err(|e| format!("invalid JWKS: {e}"))
    }
}

#[async_trait]
impl JwksSource for StaticJwks {
    async fn fetch(&self) -> Result<JwkSet, AuthFailure> {
        Ok(self.0.clone())
    }
}

/// Who the issuer, audience and leeway are.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// Clock skew allowed on `exp` / `nbf`, seconds.
    pub leeway_seconds: u64,
    /// How long a fetched JWKS is trusted.
    pub jwks_ttl: Duration,
    /// Minimum time between two refetches triggered by unknown `kid`s (forged tokens cannot hammer the issuer).
    pub min_refetch: Duration,
    /// How long after their last successful fetch cached keys may still be used while the issuer cannot
    /// be reached; older keys are not trusted (503 until the issuer answers again).
    pub jwks_max_stale: Duration,
}

impl AuthConfig {
    /// The deployed settings for `issuer` and `audience`: 30 s leeway, keys trusted for 10 minutes, an
    /// unknown `kid` refetches at most every 30 s, stale keys served for at most 24 h while the issuer is
    /// unreachable.
    pub fn standard(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_seconds: 30,
            jwks_ttl: Duration::minutes(10),
            min_refetch: Duration::seconds(30),
            jwks_max_stale: Duration::hours(24),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `sub`.
    pub subject: String,
    /// Granted scopes.
    pub scopes: BTreeSet<String>,
}

impl Principal {
    /// Requires `scope`.
    pub fn require(&self, scope: &str) -> Result<(), AuthFailure> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(AuthFailure::InsufficientScope(scope.to_owned()))
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    #[serde(default)]
    scope: Option<ScopeClaim>,
    #[serde(default)]
    scp: Option<ScopeClaim>,
}

/// The two shapes issuers use for scopes: one space-separated string (OAuth2 `scope`, Entra ID `scp`)
/// or a list (Okta `scp`). Anything else fails deserialisation, so the token is invalid.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    Text(String),
    List(Vec<String>),
}

impl ScopeClaim {
    fn into_scopes(self) -> Vec<String> {
        match self {
            ScopeClaim::Text(s) => s.split_whitespace().map(str::to_owned).collect(),
            ScopeClaim::List(l) => l,
        }
    }
}

struct Cached {
    keys: JwkSet,
    fetched_at: DateTime<Utc>,
}

/// Validates bearer tokens.
pub struct Authenticator {
    source: Arc<dyn JwksSource>,
    clock: Arc<dyn Clock>,
    config: AuthConfig,
    cache: Mutex<KeyCache>,
}

#[derive(Default)]
struct KeyCache {
    keys: Option<Cached>,
    /// When the last fetch failed: the next attempt waits `min_refetch`, so requests during an issuer
    /// outage do not each wait for a fetch timeout (stale keys, within the cap, answer meanwhile).
    failed_at: Option<DateTime<Utc>>,
}

/// The algorithm a JWK can verify, if it is one we accept (RSA -> RS256, P-256 -> ES256), and agrees
/// with the JWK's own `alg` when it declares one.
fn accepted_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(alg),
        Some(declared) if format!("{declared:?}") == format!("{alg:?}") => Some(alg),
        Some(_) => None,
    }
}

impl Authenticator {
    /// An authenticator trusting the keys of `source`.
    pub fn new(source: Arc<dyn JwksSource>, clock: Arc<dyn Clock>, config: AuthConfig) -> Self {
        Self {
            source,
            clock,
            config,
            cache: Mutex::new(KeyCache::default()),
        }
    }

    /// The key for `kid`, from the cache, or refetched when unknown (rate-limited) or expired.
    async fn key(&self, kid: &str) -> Result<Jwk, AuthFailure> {
        let now = self.clock.now();
        let mut cache = self.cache.lock().await;
        let fresh = cache
            .keys
            .as_ref()
            .is_some_and(|c| now - c.fetched_at < self.config.jwks_ttl);
        if fresh {
            if let Some(k) = cache.keys.as_ref().and_then(|c| c.keys.find(kid)) {
                return Ok(k.clone());
            }
            let may_refetch = cache
                .keys
                .as_ref()
                .is_none_or(|c| now - c.fetched_at >= self.config.min_refetch);
            if !may_refetch {
                return Err(AuthFailure::UnknownKey);
            }
        }
        let backing_off = cache
            .failed_at
            .is_some_and(|t| now - t < self.config.min_refetch);
        let fetched = if backing_off {
            Err(AuthFailure::KeysUnavailable)
        } else {
            self.source.fetch().await
        };
        if !backing_off {
            cache.failed_at = fetched.is_err().then_some(now);
        }
        let keys = match fetched {
            Ok(k) => k,
            // Keep serving a stale set rather than refusing everyone while the issuer is down, but not
            // past `jwks_max_stale`: a key revoked during a long outage must not stay trusted.
            Err(e) => match cache
                .keys
                .as_ref()
                .filter(|c| now - c.fetched_at < self.config.jwks_max_stale)
                .and_then(|c| c.keys.find(kid))
            {
                Some(k) => return Ok(k.clone()),
                None => return Err(e),
            },
        };
        let found = keys.find(kid).cloned();
        cache.keys = Some(Cached {
            keys,
            fetched_at: now,
        });
        found.ok_or(AuthFailure::UnknownKey)
    }

    /// Authenticates the value of an `Authorization` header.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<Principal, AuthFailure> {
        let header = authorization.ok_or(AuthFailure::MissingToken)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthFailure::MissingToken)?;
        // The header is parsed only to pick the key; nothing in it is trusted.
        let jwt_header = decode_header(token).map_err(|_| AuthFailure::Malformed)?;
        if !matches!(jwt_header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(AuthFailure::Malformed);
        }
        let kid = jwt_header.kid.ok_or(AuthFailure::UnknownKey)?;
        let jwk = self.key(&kid).await?;
        let alg = accepted_algorithm(&jwk).ok_or(AuthFailure::UnknownKey)?;
        if alg != jwt_header.alg {
            return Err(AuthFailure::Malformed);
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| AuthFailure::UnknownKey)?;
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.leeway = self.config.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Time comes from our clock, so tests are deterministic: check exp/nbf ourselves with it.
        validation.validate_exp = false;
        let data = decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| AuthFailure::Invalid(e.to_string()))?;
        let now = self.clock.now().timestamp();
        let leeway = i64::try_from(self.config.leeway_seconds).unwrap_or(0);
        let exp = data
            .claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .ok_or(AuthFailure::Invalid("exp is required".into()))?;
        // Saturating: a token's times are input, and i64::MAX must not wrap to "expired" (or panic).
        if exp.saturating_add(leeway) <= now {
            return Err(AuthFailure::Invalid("expired".into()));
        }
        if let Some(nbf) = data.claims.get("nbf").and_then(serde_json::Value::as_i64)
            && nbf.saturating_sub(leeway) > now
        {
            return Err(AuthFailure::Invalid("not yet valid".into()));
        }
        let claims: Claims =
            serde_json::from_value(data.claims).map_err(|e| AuthFailure::Invalid(e.to_string()))?;
        let scopes: BTreeSet<String> = [claims.scope, claims.scp]
            .into_iter()
            .flatten()
            .flat_map(ScopeClaim::into_scopes)
            .collect();
        Ok(Principal {
            subject: claims.sub.unwrap_or_default(),
            scopes,
        })
    }
}

/// Signs a development token with the `pos-local` dev key (ES256, kid [`DEV_KID`]).
pub fn dev_token(
    issuer: &str,
    audience: &str,
    subject: &str,
    scopes: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<String, String> {
    let key = jsonwebtoken::EncodingKey::from_ec_pem(DEV_SIGNING_KEY_PEM.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.kid = Some(DEV_KID.to_owned());
    let claims = serde_json::json!({
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "scope": scopes,
        "iat": now.timestamp(),
        "nbf": now.timestamp(),
        "exp": (now + ttl).timestamp(),
    });
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
