//! `query-api`: the Lambda behind `GET /v1/...` and `POST /graphql`.
//!
//! Thin: the read models, the token validator and the router are built once per cold start; every
//! invocation is [`pos_shared::api::lambda::handle`] over the same axum router `pos-local` serves.

use lambda_http::{Body, Error, Request, RequestExt, Response, run, service_fn};
use pos_shared::runtime;
use tracing::Instrument;

async fn handler(router: &pos_shared::api::Router, req: Request) -> Result<Response<Body>, Error> {
    let request_id = req
        .lambda_context_ref()
        .map(|c| c.request_id.clone())
        .unwrap_or_default();
    let span = runtime::invocation_span("query-api", &request_id);
    Ok(pos_shared::api::lambda::handle(router, req)
        .instrument(span)
        .await)
}

// One thread: Lambda runs one invocation at a time on a fraction of a vCPU; a worker pool only adds
// threads to start and cross-thread wake-ups to every SDK call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    runtime::init_logging("query-api");
    let state = pos_shared::api::config::api_state_from_env().await?;
    let router = pos_shared::api::router(state);
    run(service_fn(|req| handler(&router, req))).await
}
