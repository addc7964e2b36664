//! An emulated API Gateway HTTP API: plain HTTP request in, payload-format-2.0 event out.
//!
//! Like API Gateway, header names are lower-cased and repeated headers joined with commas, and a body
//! that is not valid UTF-8 is base64-encoded with `isBase64Encoded: true`.

use base64::Engine;
use serde_json::{Value, json};

/// The route key of the webhook route, as in `infra/`.
pub const WEBHOOK_ROUTE: &str = "POST /webhooks/{vendor}";

/// Builds the event for a request to `/webhooks/{vendor}`.
pub fn webhook_event(
    method: &http::Method,
    path: &str,
    query: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    request_id: &str,
) -> Value {
    let mut hmap = serde_json::Map::new();
    for name in headers.keys() {
        let joined: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        hmap.insert(
            name.as_str().to_ascii_lowercase(),
            Value::String(joined.join(",")),
        );
    }
    let (body, is_b64) = match std::str::from_utf8(body) {
        Ok(t) => (t.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let vendor = path.strip_prefix("/webhooks/").unwrap_or_default();
    let now = chrono::Utc::now();
    json!({
        "version": "2.0",
        "routeKey": WEBHOOK_ROUTE,
        "rawPath": path,
        "rawQueryString": query,
        "headers": hmap,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "pos-local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {"method": method.as_str(), "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("")},
            "requestId": request_id,
            "routeKey": WEBHOOK_ROUTE,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis()
        },
        "pathParameters": {"vendor": vendor},
        "body": body,
        "isBase64Encoded": is_b64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_bodies_are_base64_and_round_trip_through_lambda_http() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "Content-Type",
            http::HeaderValue::from_static("application/json"),
        );
        let body = [0xff_u8, 0x00, 0x7b];
        let event = webhook_event(
            &http::Method::POST,
            "/webhooks/shopify",
            "",
            &headers,
            &body,
            "r1",
        );
        assert_eq!(event["isBase64Encoded"], true);
        let req =
            pos_shared::http::request_from_event_json(&event.to_string()).expect("valid event");
        let webhook = pos_shared::http::webhook_request(req);
        assert_eq!(webhook.body, body);
        assert_eq!(webhook.vendor, "shopify");
        assert_eq!(webhook.correlation_id, "r1");
    }
}
