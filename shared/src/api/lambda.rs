//! The query API under Lambda: an API Gateway request in, the axum router's answer out.
//!
//! The request is rebuilt as an axum request (method, URI with its query string, headers, body) and the
//! response body is collected (the router's bodies are in memory), so the function serves exactly what
//! `pos-local` serves.

use axum::Router;
use axum::body::Body as AxumBody;
use lambda_http::{Body, Request, Response};
use tower::ServiceExt;

/// Largest response Lambda can return through API Gateway.
const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Answers one API Gateway request with `router`.
pub async fn handle(router: &Router, req: Request) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::Bytes::copy_from_slice(&body);
    let request = http::Request::from_parts(parts, AxumBody::from(bytes));
    let response = match router.clone().oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let body = match axum::body::to_bytes(body, MAX_RESPONSE_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "response body could not be collected");
            let mut resp = Response::new(Body::Text(
                r#"{"type":"urn:pos-platform:problem:internal","title":"Internal Server Error","status":500,"detail":"the response could not be produced"}"#.to_owned(),
            ));
            *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/problem+json"),
            );
            return resp;
        }
    };
    let body = match String::from_utf8(body.to_vec()) {
        Ok(text) if text.is_empty() => Body::Empty,
        Ok(text) => Body::Text(text),
        Err(e) => Body::Binary(e.into_bytes()),
    };
    Response::from_parts(parts, body)
}
