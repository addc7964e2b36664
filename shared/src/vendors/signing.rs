//! HMAC-SHA256 primitives, and the sending side of each scheme (what the vendor computes), used by the
//! `events/` generator, `pos-local send`, the load tool and tests.
//!
//! Verification always goes through [`Hmac::verify_slice`], which compares in constant time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time check of `expected` against the HMAC of `parts` under `key`.
pub fn verify_hmac(key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return false;
    };
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(expected).is_ok()
}

/// Hex SHA-256 of a payload (the idempotency record's payload hash).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Shopify: base64 HMAC-SHA256 of the raw body, key = client secret bytes.
pub fn shopify_signature(secret: &str, body: &[u8]) -> String {
    B64.encode(hmac_sha256(secret.as_bytes(), &[body]))
}

/// Square: base64 HMAC-SHA256 of notification URL + raw body, key = signature key bytes.
pub fn square_signature(signature_key: &str, notification_url: &str, body: &[u8]) -> String {
    B64.encode(hmac_sha256(
        signature_key.as_bytes(),
        &[notification_url.as_bytes(), body],
    ))
}

/// Lightspeed X-Series: the `X-Signature` header value, hex HMAC-SHA256 of the raw body.
pub fn lightspeed_signature_header(client_secret: &str, body: &[u8]) -> String {
    format!(
        "signature={},algorithm=HMAC-SHA256",
        hex::encode(hmac_sha256(client_secret.as_bytes(), &[body]))
    )
}

/// Standard Webhooks: the decoded key of a `whsec_…` secret.
pub fn standard_key(secret: &str) -> Option<Vec<u8>> {
    B64.decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .ok()
}

/// Standard Webhooks: the `webhook-signature` entry `v1,<base64>` for id, timestamp and body.
pub fn standard_signature(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Option<String> {
    let key = standard_key(secret)?;
    let ts = timestamp.to_string();
    let sig = hmac_sha256(&key, &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    Some(format!("v1,{}", B64.encode(sig)))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known-answer test from the Standard Webhooks specification's reference example.
    #[test]
    fn standard_webhooks_reference_vector() {
        let sig = standard_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            sig.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    // RFC 4231 test case 2.
    #[test]
    fn hmac_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify_hmac(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &mac
        ));
        assert!(!verify_hmac(
            b"jefe",
            &[b"what do ya want for nothing?"],
            &mac
        ));
    }
}
