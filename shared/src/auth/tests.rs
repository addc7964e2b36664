//! Authentication, including the attacks the API must refuse.

use super::*;
use crate::ports::ManualClock;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};

const ISS: &str = "https://issuer.test";
const AUD: &str = "pos-platform";
const TEST_JWKS: &str = include_str!("dev/test-jwks.json");
const RSA_PEM: &str = include_str!("dev/test-rs256.pem");
const RSA_PUBLIC_PEM: &str = include_str!("dev/test-rs256.pub.pem");

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_768_471_200, 0).unwrap_or_default()
}

fn config() -> AuthConfig {
    AuthConfig {
        issuer: ISS.into(),
        audience: AUD.into(),
        leeway_seconds: 30,
        jwks_ttl: Duration::minutes(10),
        min_refetch: Duration::seconds(60),
        jwks_max_stale: Duration::hours(24),
    }
}

/// A source whose keys can change (rotation) and which counts fetches.
struct Rotating {
    keys: std::sync::Mutex<JwkSet>,
    fetches: AtomicUsize,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl JwksSource for Rotating {
    async fn fetch(&self) -> Result<JwkSet, AuthFailure> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(AuthFailure::KeysUnavailable);
        }
        Ok(self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone())
    }
}

fn jwks(json: &str) -> JwkSet {
    serde_json::from_str(json).expect("jwks")
}

struct Setup {
    auth: Authenticator,
    source: Arc<Rotating>,
    clock: Arc<ManualClock>,
}

fn setup(keys: &str) -> Setup {
    let source = Arc::new(Rotating {
        keys: std::sync::Mutex::new(jwks(keys)),
        fetches: AtomicUsize::new(0),
        down: std::sync::atomic::AtomicBool::new(false),
    });
    let clock = Arc::new(ManualClock::new(now()));
    Setup {
        auth: Authenticator::new(source.clone(), clock.clone(), config()),
        source,
        clock,
    }
}

fn claims(scope: &str) -> serde_json::Value {
    json!({"iss": ISS, "aud": AUD, "sub": "user-1", "scope": scope, "iat": now().timestamp(), "exp": now().timestamp() + 600})
}

fn rs256(kid: &str, claims: &serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    encode(
        &h,
        claims,
        &EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).expect("rsa key"),
    )
    .expect("token")
}

fn es256(claims: &serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(DEV_KID.into());
    encode(
        &h,
        claims,
        &EncodingKey::from_ec_pem(DEV_SIGNING_KEY_PEM.as_bytes()).expect("ec key"),
    )
    .expect("token")
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test]
async fn valid_es256_and_rs256_tokens_authenticate_with_their_scopes() {
    let s = setup(TEST_JWKS);
    let p = s
        .auth
        .authenticate(Some(&bearer(&es256(&claims("sales:read stock:read")))))
        .await
        .expect("es256");
    assert_eq!(p.subject, "user-1");
    assert!(p.require("sales:read").is_ok());
    assert_eq!(
        p.require("loyalty:read"),
        Err(AuthFailure::InsufficientScope("loyalty:read".into()))
    );
    assert_eq!(AuthFailure::InsufficientScope("x".into()).status(), 403);
    let mut c = claims("");
    c["scp"] = json!(["loyalty:read"]);
    let p = s
        .auth
        .authenticate(Some(&bearer(&rs256("test-rsa", &c))))
        .await
        .expect("rs256");
    assert!(p.require("loyalty:read").is_ok());
}

#[tokio::test]
async fn the_dev_issuer_token_verifies_against_the_dev_jwks() {
    let s = setup(DEV_JWKS_JSON);
    let t = dev_token(ISS, AUD, "dev", "sales:read", now(), Duration::hours(1)).expect("token");
    assert!(s.auth.authenticate(Some(&bearer(&t))).await.is_ok());
}

#[tokio::test]
async fn alg_none_is_refused() {
    let s = setup(TEST_JWKS);
    let header = B64URL.encode(br#"{"alg":"none","typ":"JWT","kid":"pos-local-dev"}"#);
    let body = B64URL.encode(claims("sales:read").to_string());
    for token in [format!("{header}.{body}."), format!("{header}.{body}")] {
        let e = s
            .auth
            .authenticate(Some(&bearer(&token)))
            .await
            .expect_err("none");
        assert_eq!(e, AuthFailure::Malformed);
        assert_eq!(e.status(), 401);
    }
}

#[tokio::test]
async fn hs256_with_the_public_key_as_secret_is_refused() {
    let s = setup(TEST_JWKS);
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("test-rsa".into());
    let forged = encode(
        &h,
        &claims("sales:read"),
        &EncodingKey::from_secret(RSA_PUBLIC_PEM.as_bytes()),
    )
    .expect("token");
    assert_eq!(
        s.auth.authenticate(Some(&bearer(&forged))).await,
        Err(AuthFailure::Malformed)
    );
}

#[tokio::test]
async fn an_algorithm_that_does_not_match_the_key_is_refused() {
    let s = setup(TEST_JWKS);
    // Signed with the RSA key but naming the EC key.
    assert!(
        s.auth
            .authenticate(Some(&bearer(&rs256(DEV_KID, &claims("sales:read")))))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused_with_a_small_leeway() {
    let s = setup(TEST_JWKS);
    let mut c = claims("sales:read");
    c["exp"] = json!(now().timestamp() - 10);
    assert!(
        s.auth.authenticate(Some(&bearer(&es256(&c)))).await.is_ok(),
        "within the 30 s leeway"
    );
    c["exp"] = json!(now().timestamp() - 31);
    assert!(matches!(
        s.auth.authenticate(Some(&bearer(&es256(&c)))).await,
        Err(AuthFailure::Invalid(_))
    ));
    let mut c = claims("sales:read");
    c["nbf"] = json!(now().timestamp() + 120);
    assert!(matches!(
        s.auth.authenticate(Some(&bearer(&es256(&c)))).await,
        Err(AuthFailure::Invalid(_))
    ));
    let mut c = claims("sales:read");
    c.as_object_mut().expect("object").remove("exp");
    assert!(
        matches!(
            s.auth.authenticate(Some(&bearer(&es256(&c)))).await,
            Err(AuthFailure::Invalid(_))
        ),
        "exp is required"
    );
}

#[tokio::test]
async fn wrong_issuer_or_audience_is_refused() {
    let s = setup(TEST_JWKS);
    let mut c = claims("sales:read");
    c["iss"] = json!("https://evil.test");
    assert!(matches!(
        s.auth.authenticate(Some(&bearer(&es256(&c)))).await,
        Err(AuthFailure::Invalid(_))
    ));
    let mut c = claims("sales:read");
    c["aud"] = json!("another-api");
    assert!(matches!(
        s.auth.authenticate(Some(&bearer(&es256(&c)))).await,
        Err(AuthFailure::Invalid(_))
    ));
}

#[tokio::test]
async fn a_tampered_payload_fails_the_signature() {
    let s = setup(TEST_JWKS);
    let t = es256(&claims("sales:read"));
    let parts: Vec<&str> = t.split('.').collect();
    let forged_body = B64URL.encode(claims("sales:read stock:read loyalty:read").to_string());
    let forged = format!("{}.{}.{}", parts[0], forged_body, parts[2]);
    assert!(matches!(
        s.auth.authenticate(Some(&bearer(&forged))).await,
        Err(AuthFailure::Invalid(_))
    ));
}

#[tokio::test]
async fn unknown_kids_refetch_the_jwks_rate_limited() {
    // The issuer starts with the EC key only, then rotates the RSA key in.
    let s = setup(DEV_JWKS_JSON);
    let t = rs256("test-rsa", &claims("sales:read"));
    assert_eq!(
        s.auth.authenticate(Some(&bearer(&t))).await,
        Err(AuthFailure::UnknownKey)
    );
    assert_eq!(s.source.fetches.load(Ordering::SeqCst), 1);
    *s.source
        .keys
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = jwks(TEST_JWKS);
    // Within min_refetch: no new fetch, still unknown (forged kids cannot hammer the issuer).
    assert_eq!(
        s.auth.authenticate(Some(&bearer(&t))).await,
        Err(AuthFailure::UnknownKey)
    );
    assert_eq!(s.source.fetches.load(Ordering::SeqCst), 1);
    s.clock.advance(Duration::seconds(61));
    assert!(
        s.auth.authenticate(Some(&bearer(&t))).await.is_ok(),
        "refetched on the unknown kid"
    );
    assert_eq!(s.source.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn missing_or_garbage_credentials_are_401_and_an_unreachable_issuer_503() {
    let s = setup(TEST_JWKS);
    assert_eq!(
        s.auth.authenticate(None).await,
        Err(AuthFailure::MissingToken)
    );
    assert_eq!(
        s.auth.authenticate(Some("Basic dXNlcjpwYXNz")).await,
        Err(AuthFailure::MissingToken)
    );
    assert_eq!(
        s.auth.authenticate(Some("Bearer not.a.jwt")).await,
        Err(AuthFailure::Malformed)
    );
    assert_eq!(AuthFailure::MissingToken.challenge(), "Bearer");
    assert!(AuthFailure::Malformed.challenge().contains("invalid_token"));
    let down = setup(TEST_JWKS);
    down.source.down.store(true, Ordering::SeqCst);
    let e = down
        .auth
        .authenticate(Some(&bearer(&es256(&claims("sales:read")))))
        .await
        .expect_err("down");
    assert_eq!((e.clone(), e.status()), (AuthFailure::KeysUnavailable, 503));
}

/// Claims with `scope` / `scp` set to the given JSON values (absent when `None`).
fn scope_claims(
    scope: Option<serde_json::Value>,
    scp: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut c = claims("");
    let obj = c.as_object_mut().expect("object");
    obj.remove("scope");
    if let Some(v) = scope {
        obj.insert("scope".into(), v);
    }
    if let Some(v) = scp {
        obj.insert("scp".into(), v);
    }
    c
}

#[tokio::test]
async fn entra_scp_string_okta_scp_list_and_oauth2_scope_string_all_grant_scopes() {
    let s = setup(TEST_JWKS);
    let cases = [
        (
            "Entra ID: scp as one space-separated string",
            None,
            Some(json!("sales:read  stock:read")),
        ),
        (
            "scp as a list",
            None,
            Some(json!(["sales:read", "stock:read"])),
        ),
        (
            "OAuth2: scope as a string",
            Some(json!("sales:read stock:read")),
            None,
        ),
        (
            "scope as a list",
            Some(json!(["sales:read", "stock:read"])),
            None,
        ),
        (
            "both, merged",
            Some(json!("sales:read")),
            Some(json!("stock:read")),
        ),
    ];
    for (what, scope, scp) in cases {
        let p = s
            .auth
            .authenticate(Some(&bearer(&es256(&scope_claims(scope, scp)))))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            p.scopes,
            BTreeSet::from(["sales:read".to_owned(), "stock:read".to_owned()]),
            "{what}"
        );
    }
    let p = s
        .auth
        .authenticate(Some(&bearer(&es256(&scope_claims(None, None)))))
        .await
        .expect("no scope claim at all is a valid token");
    assert!(p.scopes.is_empty());
    assert_eq!(
        p.require("sales:read"),
        Err(AuthFailure::InsufficientScope("sales:read".into()))
    );
}

#[tokio::test]
async fn scope_claims_of_another_shape_make_the_token_invalid() {
    let s = setup(TEST_JWKS);
    let garbage = [
        json!(42),
        json!(true),
        json!({"sales": "read"}),
        json!([["sales:read"]]),
        json!([1, 2]),
        json!([{"scope": "sales:read"}]),
    ];
    for g in garbage {
        for (scope, scp) in [(Some(g.clone()), None), (None, Some(g.clone()))] {
            let r = s
                .auth
                .authenticate(Some(&bearer(&es256(&scope_claims(scope, scp)))))
                .await;
            assert!(matches!(r, Err(AuthFailure::Invalid(_))), "{g}: {r:?}");
            assert_eq!(r.err().map(|e| e.status()), Some(401), "{g}");
        }
    }
}

#[tokio::test]
async fn stale_keys_serve_while_the_issuer_is_down_but_only_up_to_the_maximum_age() {
    let s = setup(TEST_JWKS);
    let token = |s: &Setup| {
        let mut c = claims("sales:read");
        let t = s.clock.now().timestamp();
        c["iat"] = json!(t);
        c["exp"] = json!(t + 600);
        es256(&c)
    };
    assert!(s.auth.authenticate(Some(&bearer(&token(&s)))).await.is_ok());
    s.source.down.store(true, Ordering::SeqCst);
    // Past the 10-minute TTL: the refetch fails, the cached keys still verify.
    s.clock.advance(Duration::hours(23));
    assert!(
        s.auth.authenticate(Some(&bearer(&token(&s)))).await.is_ok(),
        "stale but within jwks_max_stale"
    );
    // 24 h after the last successful fetch the keys are no longer trusted.
    s.clock.advance(Duration::hours(1));
    let e = s
        .auth
        .authenticate(Some(&bearer(&token(&s))))
        .await
        .expect_err("too stale");
    assert_eq!((e.clone(), e.status()), (AuthFailure::KeysUnavailable, 503));
    // The issuer answers again: the next attempt (at most min_refetch later) gets fresh keys.
    s.source.down.store(false, Ordering::SeqCst);
    s.clock.advance(Duration::seconds(61));
    assert!(s.auth.authenticate(Some(&bearer(&token(&s)))).await.is_ok());
}

#[test]
fn the_standard_settings_cap_stale_keys_at_24_hours() {
    assert_eq!(
        AuthConfig::standard(ISS, AUD).jwks_max_stale,
        Duration::hours(24)
    );
}

#[tokio::test]
async fn an_unreachable_issuer_is_retried_at_most_every_min_refetch_not_on_every_request() {
    let s = setup(TEST_JWKS);
    let token = |s: &Setup| {
        let mut c = claims("sales:read");
        let t = s.clock.now().timestamp();
        c["iat"] = json!(t);
        c["exp"] = json!(t + 600);
        es256(&c)
    };
    assert!(s.auth.authenticate(Some(&bearer(&token(&s)))).await.is_ok());
    s.source.down.store(true, Ordering::SeqCst);
    s.clock.advance(Duration::minutes(11));
    // Each attempt against a down issuer waits for its timeout: one per min_refetch, stale keys meanwhile.
    for _ in 0..5 {
        assert!(s.auth.authenticate(Some(&bearer(&token(&s)))).await.is_ok());
    }
    assert_eq!(
        s.source.fetches.load(Ordering::SeqCst),
        2,
        "one refetch attempt"
    );
    s.clock.advance(Duration::seconds(61));
    assert!(s.auth.authenticate(Some(&bearer(&token(&s)))).await.is_ok());
    assert_eq!(
        s.source.fetches.load(Ordering::SeqCst),
        3,
        "retried after min_refetch"
    );
    // Back up: the next attempt (after min_refetch) refreshes the keys.
    s.source.down.store(false, Ordering::SeqCst);
    s.clock.advance(Duration::seconds(61));
    assert!(s.auth.authenticate(Some(&bearer(&token(&s)))).await.is_ok());
    assert!(s.auth.authenticate(Some(&bearer(&token(&s)))).await.is_ok());
    assert_eq!(s.source.fetches.load(Ordering::SeqCst), 4, "fresh again");
}

// Found by the `jwt` fuzz target: `exp + leeway` overflowed (a panic with overflow checks, a wrapped
// "expired" without). Extreme times are compared without overflow: a far-future `exp` is valid, a
// far-past `nbf` is no bar; a far-future `nbf` still is.
#[tokio::test]
async fn extreme_exp_and_nbf_are_compared_without_overflow() {
    let s = setup(TEST_JWKS);
    let mut c = claims("sales:read");
    c["exp"] = json!(i64::MAX);
    let far_future = s.auth.authenticate(Some(&bearer(&es256(&c)))).await;
    assert!(far_future.is_ok(), "{far_future:?}");
    c["nbf"] = json!(i64::MIN);
    let far_past_nbf = s.auth.authenticate(Some(&bearer(&es256(&c)))).await;
    assert!(
        !matches!(&far_past_nbf, Err(AuthFailure::Invalid(m)) if m == "not yet valid"),
        "{far_past_nbf:?}"
    );
    c["nbf"] = json!(i64::MAX);
    let not_yet = s.auth.authenticate(Some(&bearer(&es256(&c)))).await;
    assert!(not_yet.is_err(), "{not_yet:?}");
}
