//! `sale-capture`: the webhook Lambda behind `POST /webhooks/{vendor}`.
//!
//! Thin by design: configuration and clients are built once per cold start, then every invocation is
//! [`pos_shared::http::handle`]. All logic, and its tests, live in `pos-shared`.

use lambda_http::{Body, Error, Request, RequestExt, Response, run, service_fn};
use pos_shared::capture::CaptureService;
use pos_shared::config::CaptureConfig;
use pos_shared::runtime;
use tracing::Instrument;

async fn handler(service: &CaptureService, req: Request) -> Result<Response<Body>, Error> {
    let request_id = req
        .lambda_context_ref()
        .map(|c| c.request_id.clone())
        .unwrap_or_default();
    let span = runtime::invocation_span("sale-capture", &request_id);
    Ok(pos_shared::http::handle(service, req)
        .instrument(span)
        .await)
}

// One thread: Lambda runs one invocation at a time on a fraction of a vCPU; a worker pool only adds
// threads to start and cross-thread wake-ups to every SDK call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    runtime::init_logging("sale-capture");
    let config = CaptureConfig::from_env()?;
    let service = runtime::capture_service(&config).await?;
    run(service_fn(|req| handler(&service, req))).await
}
