//! Fuzz target bodies: one `pub fn <target>(data: &[u8])` per parser reached by untrusted input. The
//! cargo-fuzz wrappers in `fuzz/fuzz_targets/` call them, and `shared/tests/fuzz_corpus.rs` replays every
//! corpus and regression file through them on stable (`scripts/fuzz.sh` runs the campaigns).
//!
//! A body panics only when a property fails; what each checks:
//!
//! - `vendor_{shopify,square,lightspeed,standard}`: [`vendors::interpret`] (the per-vendor mapping, the
//!   Lightspeed form body included) on headers + body. An accepted delivery has a 1..=256-byte key without
//!   control characters; every fact it yields is consistent: every amount in the fact's currency, line
//!   totals (`unit_price x quantity - discount`) and their sum computable without overflow, and the fact
//!   survives its stored/published JSON form unchanged.
//! - `signature_{shopify,square,lightspeed,standard}`: the vendor's `verify` on fuzzed headers. It never
//!   accepts a header whose signature is not the one we compute for that body; the header the vendor
//!   would send for the fuzzed body always verifies (for Standard Webhooks, also when injected among
//!   fuzzed `webhook-signature` entries).
//! - `apigw_event`: [`http::request_from_event_json`], [`http::webhook_request`] and the whole capture
//!   path behind it (in-memory store, dev secrets): any event answers, never a 5xx.
//! - `cursor`: [`read::CursorCodec::decode`] of a fuzzed cursor: a cursor that decodes re-encodes to the
//!   same position; and any position encodes to a cursor that decodes to itself, only for its own query.
//! - `jwt`: [`auth::Authenticator::authenticate`] with the dev JWKS and a fixed clock, on raw tokens and
//!   on fuzzed headers + claims signed with the dev key. An accepted token has the right `iss`, `aud`, an
//!   `exp` in the future and no `nbf` in the future (within the leeway), and its `sub` is the subject.
//! - `graphql`: a fuzzed query on the schema the query API builds (default depth and complexity limits)
//!   over the in-memory read models. It answers or is refused; when it runs, it reads at most
//!   `max_complexity` sales.
//!
//! Input format of the header + body targets: `name: value` lines, an empty line, then the raw body
//! (no empty line: no headers, all body). Lines that are not valid headers are skipped.

use crate::api::ApiState;
use crate::api::graphql::{self, GraphqlConfig};
use crate::auth::{API_AUDIENCE, AuthConfig, Authenticator, DEV_ISSUER, Principal, StaticJwks};
use crate::capture::{CaptureService, CaptureSettings};
use crate::ids::{SaleId, StoreId};
use crate::model::{CanonicalEvent, Return, Sale, Vendor};
use crate::money::Money;
use crate::ports::ManualClock;
use crate::read::{CursorCodec, Position, ReadError, SalesPage, SalesReader};
use crate::secrets::{StaticSecrets, VendorSecrets, dev_secrets};
use crate::vendors::{self, Interpretation, MappingConfig, Signer, signing};
use crate::{auth, http, samples};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The one runtime the async targets block on (current thread: fuzzing is single-threaded).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
    })
}

fn secrets() -> &'static VendorSecrets {
    static S: OnceLock<VendorSecrets> = OnceLock::new();
    S.get_or_init(dev_secrets)
}

/// Splits `name: value` header lines from the body at the first empty line.
fn headers_and_body(data: &[u8]) -> (::http::HeaderMap, &[u8]) {
    let mut headers = ::http::HeaderMap::new();
    let Some(split) = data.windows(2).position(|w| w == b"\n\n") else {
        return (headers, data);
    };
    for line in data[..split].split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let value = &line[colon + 1..];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (
            ::http::HeaderName::from_bytes(&line[..colon]),
            ::http::HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    }
    (headers, &data[split + 2..])
}

/// Every amount of a sale is in its currency; line totals and their sum do not overflow.
fn check_sale(s: &Sale) {
    let c = s.currency;
    assert_eq!(s.total.currency, c, "sale total currency");
    assert_eq!(s.tax.currency, c, "sale tax currency");
    let mut sum = Money::zero(c);
    for l in &s.lines {
        assert_eq!(l.unit_price.currency, c, "line price currency");
        assert_eq!(l.discount.currency, c, "line discount currency");
        assert!(l.quantity.get() >= 1, "positive quantity");
        let gross = l
            .unit_price
            .checked_mul(i64::from(l.quantity))
            .unwrap_or_else(|e| panic!("line {} gross overflows: {e}", l.line_id));
        let net = gross
            .minor
            .checked_sub(l.discount.minor)
            .map(|minor| Money::from_minor(minor, c))
            .unwrap_or_else(|| panic!("line {} net overflows", l.line_id));
        sum = sum
            .checked_add(net)
            .unwrap_or_else(|e| panic!("sale line sum overflows: {e}"));
    }
}

fn check_return(r: &Return) {
    let c = r.currency;
    assert_eq!(r.total_refund.currency, c, "return total currency");
    let mut sum = Money::zero(c);
    for l in &r.lines {
        assert_eq!(l.refund.currency, c, "refund currency");
        assert!(l.quantity.get() >= 1, "positive quantity");
        sum = sum
            .checked_add(l.refund)
            .unwrap_or_else(|e| panic!("refund sum overflows: {e}"));
    }
}

fn check_event(e: &CanonicalEvent) {
    match e {
        CanonicalEvent::SaleCompleted(s) => check_sale(s),
        CanonicalEvent::ReturnCompleted(r) => check_return(r),
        CanonicalEvent::SaleAwaitingEnrichment(_)
        | CanonicalEvent::StockAdjusted(_)
        | CanonicalEvent::StockLow(_)
        | CanonicalEvent::StockNegative(_) => {}
    }
    // Stored and published as JSON: the fact must come back identical.
    let json = serde_json::to_string(e).unwrap_or_else(|err| panic!("serialize: {err}"));
    let back: CanonicalEvent =
        serde_json::from_str(&json).unwrap_or_else(|err| panic!("deserialize {json}: {err}"));
    assert_eq!(&back, e, "the fact survives its JSON form");
    let _ = (e.record_key(), e.event_id(), e.detail_type());
}

fn interpret_as(vendor: Vendor, signer: &Signer, data: &[u8]) {
    let (headers, body) = headers_and_body(data);
    let config = MappingConfig {
        lightspeed_currency: crate::money::Currency::parse("EUR").ok(),
        // Both settings reached: the length's parity picks one.
        shopify_accept_test_orders: data.len().is_multiple_of(2),
        ..MappingConfig::default()
    };
    let Ok(interpreted) = vendors::interpret(vendor, signer, &headers, body, &config) else {
        return;
    };
    let key = &interpreted.delivery_key;
    assert!(
        !key.is_empty() && key.len() <= vendors::MAX_DELIVERY_KEY_LEN,
        "delivery key length"
    );
    assert!(!key.chars().any(char::is_control), "delivery key control");
    match &interpreted.interpretation {
        Interpretation::Event(e) => check_event(e),
        Interpretation::Events(es) => es.iter().for_each(check_event),
        Interpretation::Reversal { event, .. } => check_event(event),
        Interpretation::Ignored(_) | Interpretation::Unmappable(_) => {}
    }
}

/// Shopify mapping (topic and id headers + JSON body).
pub fn vendor_shopify(data: &[u8]) {
    interpret_as(Vendor::Shopify, &Signer::Vendor, data);
}

/// Square mapping (JSON body).
pub fn vendor_square(data: &[u8]) {
    interpret_as(Vendor::Square, &Signer::Vendor, data);
}

/// Lightspeed mapping (form body with a JSON `payload`).
pub fn vendor_lightspeed(data: &[u8]) {
    interpret_as(Vendor::Lightspeed, &Signer::Vendor, data);
}

/// Standard Webhooks mapping (our canonical JSON), as signed by the dev sender.
pub fn vendor_standard(data: &[u8]) {
    static SENDER: OnceLock<Signer> = OnceLock::new();
    let signer = SENDER.get_or_init(|| {
        Signer::Sender(crate::secrets::SenderName::parse("dev-till").expect("a sender name"))
    });
    interpret_as(Vendor::Standard, signer, data);
}

fn header_text<'a>(headers: &'a ::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Verifies with the dev secrets; on acceptance, `computed` must confirm the header we were given.
fn verify_as(vendor: Vendor, headers: &::http::HeaderMap, body: &[u8]) -> bool {
    vendors::verify(vendor, headers, body, secrets(), samples::sample_time()).is_ok()
}

fn with_header(headers: &::http::HeaderMap, name: &str, value: &str) -> ::http::HeaderMap {
    let mut h = headers.clone();
    if let (Ok(n), Ok(v)) = (
        ::http::HeaderName::from_bytes(name.as_bytes()),
        ::http::HeaderValue::from_str(value),
    ) {
        h.insert(n, v);
    }
    h
}

fn key_of(ring: Option<&crate::secrets::KeyRing>) -> &str {
    ring.and_then(|r| r.current()).unwrap_or_default()
}

/// Shopify `X-Shopify-Hmac-Sha256` / `Shopify-Hmac-Sha256`.
pub fn signature_shopify(data: &[u8]) {
    use vendors::shopify::{HMAC_HEADER, HMAC_HEADER_NEW};
    let (headers, body) = headers_and_body(data);
    let secret = key_of(secrets().shopify.as_ref().map(|s| &s.webhook_secret));
    let ours = B64.decode(signing::shopify_signature(secret, body)).ok();
    if verify_as(Vendor::Shopify, &headers, body) {
        let used = header_text(&headers, HMAC_HEADER).or(header_text(&headers, HMAC_HEADER_NEW));
        let given = used.and_then(|s| B64.decode(s.trim()).ok());
        assert_eq!(given, ours, "accepted a signature we did not compute");
    }
    let signed = with_header(
        &headers,
        HMAC_HEADER,
        &signing::shopify_signature(secret, body),
    );
    assert!(
        verify_as(Vendor::Shopify, &signed, body),
        "our signature refused"
    );
}

/// Square `x-square-hmacsha256-signature` over notification URL + body.
pub fn signature_square(data: &[u8]) {
    use vendors::square::SIGNATURE_HEADER;
    let (headers, body) = headers_and_body(data);
    let Some(sq) = secrets().square.as_ref() else {
        return;
    };
    let ours =
        signing::square_signature(key_of(Some(&sq.signature_key)), &sq.notification_url, body);
    if verify_as(Vendor::Square, &headers, body) {
        let given = header_text(&headers, SIGNATURE_HEADER).and_then(|s| B64.decode(s.trim()).ok());
        assert_eq!(
            given,
            B64.decode(&ours).ok(),
            "accepted a foreign signature"
        );
    }
    let signed = with_header(&headers, SIGNATURE_HEADER, &ours);
    assert!(
        verify_as(Vendor::Square, &signed, body),
        "our signature refused"
    );
}

/// Lightspeed `X-Signature: signature=…,algorithm=HMAC-SHA256`.
pub fn signature_lightspeed(data: &[u8]) {
    use vendors::lightspeed::SIGNATURE_HEADER;
    let (headers, body) = headers_and_body(data);
    let secret = key_of(secrets().lightspeed.as_ref().map(|s| &s.client_secret));
    let mac = signing::hmac_sha256(secret.as_bytes(), &[body]);
    if verify_as(Vendor::Lightspeed, &headers, body) {
        let value = header_text(&headers, SIGNATURE_HEADER).unwrap_or_default();
        // The last `signature=` part is the one verified; it must decode (hex or base64) to our MAC.
        let sig = value
            .split(',')
            .filter_map(|p| p.trim().split_once('='))
            .filter(|(k, _)| k.trim() == "signature")
            .map(|(_, v)| v.trim())
            .next_back()
            .unwrap_or_default();
        let given = hex::decode(sig).or_else(|_| B64.decode(sig)).ok();
        assert_eq!(
            given.as_deref(),
            Some(&mac[..]),
            "accepted a foreign signature"
        );
    }
    let signed = with_header(
        &headers,
        SIGNATURE_HEADER,
        &signing::lightspeed_signature_header(secret, body),
    );
    assert!(
        verify_as(Vendor::Lightspeed, &signed, body),
        "our signature refused"
    );
}

/// Standard Webhooks `webhook-id`, `webhook-timestamp`, `webhook-signature` (a list of `v1,` entries).
pub fn signature_standard(data: &[u8]) {
    use vendors::standard::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
    let (headers, body) = headers_and_body(data);
    let Some(std_secrets) = secrets().standard.as_ref() else {
        return;
    };
    let keys: Vec<Vec<u8>> = std_secrets
        .senders
        .iter()
        .flat_map(|s| s.secrets.values())
        .filter_map(signing::standard_key)
        .collect();
    let id = header_text(&headers, ID_HEADER);
    let ts = header_text(&headers, TIMESTAMP_HEADER).map(str::trim);
    let macs: Vec<[u8; 32]> = match (id, ts) {
        (Some(id), Some(ts)) => keys
            .iter()
            .map(|k| signing::hmac_sha256(k, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]))
            .collect(),
        _ => Vec::new(),
    };
    let list = header_text(&headers, SIGNATURE_HEADER).unwrap_or_default();
    if verify_as(Vendor::Standard, &headers, body) {
        let ours = list
            .split_whitespace()
            .filter_map(|e| e.strip_prefix("v1,"))
            .filter_map(|b| B64.decode(b).ok())
            .any(|sig| macs.iter().any(|m| sig == m));
        assert!(ours, "accepted a signature list without one of ours");
    }
    // Our entry among the fuzzed ones verifies whenever id and timestamp are acceptable.
    if let Some(mac) = macs.first() {
        let injected = format!("{list} v1,{}", B64.encode(mac));
        let signed = with_header(&headers, SIGNATURE_HEADER, &injected);
        if header_text(&signed, SIGNATURE_HEADER) == Some(injected.as_str()) {
            let r = vendors::standard::verify(
                &signed,
                body,
                &std_secrets.senders,
                samples::sample_time(),
            );
            assert!(
                !matches!(
                    r,
                    Err(vendors::AuthError::BadSignature
                        | vendors::AuthError::MalformedHeader(SIGNATURE_HEADER))
                ),
                "our entry in {injected:?} refused: {r:?}"
            );
        }
    }
}

/// The capture service over an in-memory store with the dev secrets, at the samples' time.
fn capture() -> &'static CaptureService {
    static C: OnceLock<CaptureService> = OnceLock::new();
    C.get_or_init(|| {
        let store = crate::store::embedded::EmbeddedStore::in_memory().expect("in-memory store");
        CaptureService::new(
            Arc::new(store),
            Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
            Arc::new(ManualClock::new(samples::sample_time())),
            CaptureSettings::default(),
        )
    })
}

/// An API Gateway HTTP API event through decoding and the whole webhook path.
pub fn apigw_event(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // libFuzzer's panic hook aborts on any panic, even one `request_from_event_json` catches (the one
    // lambda_http raises on an invalid host): a quiet hook while it runs, then libFuzzer's again.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let parsed = http::request_from_event_json(text);
    std::panic::set_hook(hook);
    let Ok(request) = parsed else {
        return;
    };
    let webhook = http::webhook_request(request);
    assert!(
        !webhook.correlation_id.is_empty(),
        "every request gets a correlation id"
    );
    let result = runtime().block_on(capture().handle(&webhook));
    if let Err(e) = &result {
        assert!(!e.status().is_server_error(), "server error: {e}");
    }
    let response = http::to_response(result, &webhook.correlation_id);
    assert!(!response.status().is_server_error());
}

fn codec() -> &'static CursorCodec {
    static C: OnceLock<CursorCodec> = OnceLock::new();
    C.get_or_init(|| {
        CursorCodec::new(b"0123456789abcdef0123456789abcdef".to_vec()).expect("a 32-byte key")
    })
}

/// Cursors: `query \n cursor` (split at the last newline: queries have newlines); and a position built
/// from the same bytes round-trips.
pub fn cursor(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (query, cursor) = text.rsplit_once('\n').unwrap_or(("", &text));
    let codec = codec();
    if let Ok(position) = codec.decode(cursor, query) {
        let again = codec.encode(&position, query);
        assert_eq!(
            codec.decode(&again, query),
            Ok(position),
            "re-encoded cursor"
        );
    }
    // Any position we can issue comes back exactly, and only for its own query.
    if data.len() >= 12 {
        let secs = i64::from_le_bytes(data[..8].try_into().unwrap_or_default());
        let nanos = u32::from_le_bytes(data[8..12].try_into().unwrap_or_default());
        if let Some(at) = DateTime::<Utc>::from_timestamp(secs, nanos % 1_000_000_000) {
            let position = Position {
                occurred_at: at,
                key: String::from_utf8_lossy(&data[12..]).into_owned(),
            };
            let issued = codec.encode(&position, query);
            assert_eq!(
                codec.decode(&issued, query),
                Ok(position.clone()),
                "issued cursor"
            );
            let other = format!("{query}.");
            assert!(
                codec.decode(&issued, &other).is_err(),
                "cursor of another query"
            );
        }
    }
}

fn authenticator() -> &'static Authenticator {
    static A: OnceLock<Authenticator> = OnceLock::new();
    A.get_or_init(|| {
        Authenticator::new(
            Arc::new(StaticJwks::parse(auth::DEV_JWKS_JSON).expect("dev jwks")),
            Arc::new(ManualClock::new(samples::sample_time())),
            AuthConfig::standard(DEV_ISSUER, API_AUDIENCE),
        )
    })
}

fn dev_key() -> &'static jsonwebtoken::EncodingKey {
    static K: OnceLock<jsonwebtoken::EncodingKey> = OnceLock::new();
    K.get_or_init(|| {
        jsonwebtoken::EncodingKey::from_ec_pem(auth::DEV_SIGNING_KEY_PEM.as_bytes())
            .expect("dev key")
    })
}

/// JWTs. First byte even: the rest is the token. Odd: `header JSON \0 claims JSON`, signed ES256 with
/// the dev key (so the claims checks, not only the signature, are reached).
pub fn jwt(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let (header, claims) = match rest.iter().position(|b| *b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (&br#"{"alg":"ES256","kid":"pos-local-dev"}"#[..], rest),
        };
        let message = format!("{}.{}", B64URL.encode(header), B64URL.encode(claims));
        let Ok(sig) = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            dev_key(),
            jsonwebtoken::Algorithm::ES256,
        ) else {
            return;
        };
        format!("{message}.{sig}")
    };
    let authorization = format!("Bearer {token}");
    let Ok(principal) = runtime().block_on(authenticator().authenticate(Some(&authorization)))
    else {
        return;
    };
    let claims = token
        .trim()
        .split('.')
        .nth(1)
        .and_then(|p| B64URL.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .unwrap_or_else(|| panic!("accepted a token without JSON claims: {token}"));
    let now = samples::sample_time().timestamp();
    assert_eq!(claims["iss"], DEV_ISSUER, "iss");
    let aud_ok = match &claims["aud"] {
        serde_json::Value::String(a) => a == API_AUDIENCE,
        serde_json::Value::Array(v) => v.iter().any(|a| a == API_AUDIENCE),
        _ => false,
    };
    assert!(aud_ok, "aud");
    let exp = claims["exp"].as_i64().unwrap_or(i64::MIN);
    assert!(exp.saturating_add(30) > now, "expired token accepted");
    if let Some(nbf) = claims.get("nbf").and_then(serde_json::Value::as_i64) {
        assert!(nbf.saturating_sub(30) <= now, "future token accepted");
    }
    assert_eq!(
        Some(principal.subject.as_str()),
        claims["sub"].as_str(),
        "subject"
    );
}

/// Counts the sales the GraphQL layer reads.
struct CountingReader {
    inner: Arc<dyn SalesReader>,
    read: AtomicUsize,
}

#[async_trait]
impl SalesReader for CountingReader {
    async fn sale(&self, id: &SaleId) -> Result<Option<Sale>, ReadError> {
        self.read.fetch_add(1, Ordering::Relaxed);
        self.inner.sale(id).await
    }
    async fn store_sales(
        &self,
        store: &StoreId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<SalesPage, ReadError> {
        let page = self
            .inner
            .store_sales(store, from, to, after, limit)
            .await?;
        self.read
            .fetch_add(page.sales.len().max(1), Ordering::Relaxed);
        Ok(page)
    }
}

struct GraphqlRig {
    schema: graphql::ApiSchema,
    reader: Arc<CountingReader>,
    principal: Principal,
    limits: GraphqlConfig,
}

fn graphql_rig() -> &'static GraphqlRig {
    static R: OnceLock<GraphqlRig> = OnceLock::new();
    R.get_or_init(|| {
        runtime().block_on(async {
            let store =
                crate::store::embedded::EmbeddedStore::in_memory().expect("in-memory store");
            let capture = CaptureService::new(
                Arc::new(store.clone()),
                Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
                Arc::new(ManualClock::new(samples::sample_time())),
                CaptureSettings::default(),
            );
            for i in 0..5 {
                let body = samples::standard_sale(&format!("s-{i}"), "store-a", Some("m-1"), 2);
                let d = samples::standard(&format!("msg_{i}"), &body, samples::sample_time(), None);
                let _ = capture.handle(&d.to_request("fuzz")).await;
            }
            let reader = Arc::new(CountingReader {
                inner: Arc::new(store),
                read: AtomicUsize::new(0),
            });
            let limits = GraphqlConfig::default();
            let state = Arc::new(ApiState {
                sales: reader.clone(),
                stock: Arc::new(
                    crate::stock::embedded::EmbeddedStockLedger::in_memory().expect("stock"),
                ),
                loyalty: Arc::new(
                    crate::loyalty::embedded::EmbeddedLoyaltyLedger::in_memory().expect("loyalty"),
                ),
                deliveries: Arc::new(
                    crate::delivery::embedded::EmbeddedDeliveries::in_memory().expect("deliveries"),
                ),
                auth: Arc::new(Authenticator::new(
                    Arc::new(StaticJwks::parse(auth::DEV_JWKS_JSON).expect("dev jwks")),
                    Arc::new(ManualClock::new(samples::sample_time())),
                    AuthConfig::standard(DEV_ISSUER, API_AUDIENCE),
                )),
                cursors: Arc::new(
                    CursorCodec::new(b"0123456789abcdef0123456789abcdef".to_vec()).expect("key"),
                ),
                graphql: limits.clone(),
            });
            GraphqlRig {
                schema: graphql::schema(state, &limits),
                reader,
                principal: Principal {
                    subject: "fuzz".into(),
                    scopes: [
                        "sales:read",
                        "stock:read",
                        "loyalty:read",
                        "deliveries:read",
                    ]
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                },
                limits,
            }
        })
    })
}

/// A GraphQL query (the bytes as text) with every scope, under the default limits.
pub fn graphql(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let rig = graphql_rig();
    rig.reader.read.store(0, Ordering::Relaxed);
    let request = async_graphql::Request::new(query).data(rig.principal.clone());
    let response = runtime().block_on(rig.schema.execute(request));
    let read = rig.reader.read.load(Ordering::Relaxed);
    assert!(
        read <= rig.limits.max_complexity,
        "read {read} sales under a complexity limit of {}",
        rig.limits.max_complexity
    );
    let refused = !response.errors.is_empty() && response.errors.iter().all(|e| e.path.is_empty());
    if refused {
        assert_eq!(read, 0, "a refused query read nothing");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_split_from_the_body_at_the_first_empty_line() {
        let (h, body) = headers_and_body(b"x-a: 1\nbad line\nx-b:2\n\n{\"x\":1}\n\nmore");
        assert_eq!(header_text(&h, "x-a"), Some("1"));
        assert_eq!(header_text(&h, "x-b"), Some("2"));
        assert_eq!(body, b"{\"x\":1}\n\nmore");
        let (h, body) = headers_and_body(b"{}");
        assert!(h.is_empty());
        assert_eq!(body, b"{}");
    }

    #[test]
    fn a_foreign_or_altered_event_is_caught_by_the_checks() {
        // The checks can fail: a sale whose line is priced in another currency.
        let d = samples::standard(
            "msg_x",
            &samples::standard_sale("s-x", "store-a", None, 1),
            samples::sample_time(),
            None,
        );
        let env = samples::envelope_of(&d).expect("envelope");
        let CanonicalEvent::SaleCompleted(mut sale) = env.event else {
            panic!("a sale");
        };
        check_sale(&sale);
        let other = crate::money::Currency::parse("JPY").expect("jpy");
        sale.lines[0].unit_price = Money::from_minor(1, other);
        let caught = std::panic::catch_unwind(|| check_sale(&sale));
        assert!(caught.is_err());
    }
}
