//! The HTTP edge of sale-capture: API Gateway (HTTP API, payload v2) requests in, JSON or
//! `application/problem+json` out. The same functions serve the Lambda and `pos-local`.

use crate::capture::{CaptureError, CaptureService, Captured, WebhookRequest};
use crate::metrics::Unit;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use tracing::Instrument;

/// Header a caller may set to carry its own correlation id.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// A correlation id: the caller's `x-correlation-id` when it is short printable ASCII, else the API
/// Gateway request id, else a fresh one.
pub fn correlation_id(req: &Request) -> String {
    if let Some(v) = req
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        && !v.is_empty()
        && v.len() <= 128
        && v.bytes().all(|b| b.is_ascii_graphic())
    {
        return v.to_owned();
    }
    if let lambda_http::request::RequestContext::ApiGatewayV2(ctx) = req.request_context()
        && let Some(id) = ctx.request_id
    {
        return id;
    }
    random_id()
}

fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS per process; mixing in the time gives distinct ids per call.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("local-{:016x}", h.finish())
}

/// Parses an API Gateway HTTP API (payload 2.0) proxy event, exactly as the Lambda runtime does.
///
/// lambda_http unwraps its URI parse: an event whose host (`Host` or `requestContext.domainName`) or path
/// does not make a valid URI panics inside it. That panic is caught here and becomes an error, so a
/// replayed or hand-written event is refused, never a crash.
pub fn request_from_event_json(event: &str) -> Result<Request, serde_json::Error> {
    std::panic::catch_unwind(|| lambda_http::request::from_str(event)).unwrap_or_else(|_| {
        Err(<serde_json::Error as serde::de::Error>::custom(
            "the event's host or path does not form a valid URI",
        ))
    })
}

/// Turns an API Gateway request into a [`WebhookRequest`]: the raw bytes exactly as sent (lambda_http has
/// already decoded `isBase64Encoded` bodies to binary).
pub fn webhook_request(req: Request) -> WebhookRequest {
    let correlation_id = correlation_id(&req);
    let vendor = req
        .path_parameters_ref()
        .and_then(|p| p.first("vendor"))
        .map(str::to_owned)
        .unwrap_or_else(|| vendor_from_path(req.uri().path()));
    let (parts, body) = req.into_parts();
    let body = match body {
        Body::Empty => Vec::new(),
        Body::Text(t) => t.into_bytes(),
        Body::Binary(b) => b,
        _ => Vec::new(),
    };
    WebhookRequest {
        method: parts.method,
        vendor,
        headers: parts.headers,
        body,
        correlation_id,
    }
}

fn vendor_from_path(path: &str) -> String {
    path.trim_end_matches('/')
        .strip_prefix("/webhooks/")
        .filter(|v| !v.contains('/'))
        .unwrap_or_default()
        .to_owned()
}

fn json_response(
    status: http::StatusCode,
    content_type: &str,
    body: &serde_json::Value,
    correlation_id: &str,
) -> Response<Body> {
    let mut resp = Response::new(Body::Text(body.to_string()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    if let Ok(v) = http::HeaderValue::from_str(correlation_id) {
        headers.insert(CORRELATION_HEADER, v);
    }
    resp
}

/// The one mapping of capture results to HTTP.
pub fn to_response(result: Result<Captured, CaptureError>, correlation_id: &str) -> Response<Body> {
    match result {
        Ok(captured) => {
            let body = serde_json::to_value(&captured).unwrap_or_else(|_| json!({}));
            json_response(captured.status(), "application/json", &body, correlation_id)
        }
        Err(err) => {
            let status = err.status();
            if status.is_server_error() {
                // The full error (with its cause) goes to the log, never to the caller.
                tracing::error!(error = %err, %correlation_id, "capture failed on our side");
            }
            let body = json!({
                "type": format!("urn:pos-platform:problem:{}", err.slug()),
                "title": status.canonical_reason().unwrap_or("Error"),
                "status": status.as_u16(),
                "detail": err.public_detail(),
                "correlation_id": correlation_id,
            });
            let mut resp = json_response(status, "application/problem+json", &body, correlation_id);
            if status == http::StatusCode::SERVICE_UNAVAILABLE {
                resp.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("30"),
                );
            }
            if status == http::StatusCode::METHOD_NOT_ALLOWED {
                resp.headers_mut()
                    .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
            }
            resp
        }
    }
}

/// The metric an outcome counts towards (see [`crate::metrics`]).
pub fn outcome_metric(result: &Result<Captured, CaptureError>) -> &'static str {
    match result {
        Ok(Captured::Accepted { .. }) => "Captured",
        Ok(Captured::Duplicate { .. }) => "Duplicates",
        Ok(Captured::Ignored { .. }) => "Ignored",
        Err(CaptureError::Unauthorized(_)) => "SignatureFailures",
        Ok(Captured::Quarantined) | Err(CaptureError::Unmappable { .. }) => "Quarantined",
        Err(e) if e.status().is_server_error() => "Failures",
        Err(_) => "Rejected",
    }
}

/// The Lambda handler body: request in, response out. Never fails: every error is an HTTP answer.
pub async fn handle(service: &CaptureService, req: Request) -> Response<Body> {
    let started = std::time::Instant::now();
    let webhook = webhook_request(req);
    let span = tracing::info_span!("webhook", vendor = %webhook.vendor, correlation_id = %webhook.correlation_id);
    let result = service.handle(&webhook).instrument(span.clone()).await;
    let _guard = span.enter();
    service.metrics().emit(&[
        (outcome_metric(&result), Unit::Count, 1.0),
        (
            "HandlerLatency",
            Unit::Milliseconds,
            started.elapsed().as_secs_f64() * 1000.0,
        ),
    ]);
    to_response(result, &webhook.correlation_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_is_taken_from_the_path_when_no_path_parameters() {
        assert_eq!(vendor_from_path("/webhooks/shopify"), "shopify");
        assert_eq!(vendor_from_path("/webhooks/shopify/"), "shopify");
        assert_eq!(vendor_from_path("/webhooks/a/b"), "");
        assert_eq!(vendor_from_path("/other"), "");
    }

    // Found by the `apigw_event` fuzz target: lambda_http unwraps its URI parse, so an event whose
    // domain name (or Host) is not a valid URI host panicked instead of being refused.
    #[test]
    fn an_event_with_an_invalid_host_is_an_error_not_a_panic() {
        let event = serde_json::json!({
            "version": "2.0", "routeKey": "POST /webhooks/{vendor}", "rawPath": "/webhooks/shopify",
            "rawQueryString": "", "headers": {}, "isBase64Encoded": false,
            "requestContext": {"domainName": "loca]lhost", "http": {"method": "POST", "path": "/webhooks/shopify"}}
        });
        assert!(request_from_event_json(&event.to_string()).is_err());
        let good = event.to_string().replace("loca]lhost", "localhost");
        assert!(request_from_event_json(&good).is_ok());
    }
}
