//! `webhooks-sync`: SQS-triggered Lambda POSTing every domain event to the webhook subscriptions that
//! take it, signed per Standard Webhooks.
//!
//! Thin: the handler (subscriptions re-read from the deliveries table and their secret, ledger, breakers,
//! endpoint health, queue) is built once per cold start; each batch goes to
//! [`pos_shared::delivery::sync::DeliverySync::handle_batch`], which requeues a failing subscription's
//! record on the spec's schedule, acknowledges a disabled endpoint's and sends an exhausted one to the DLQ.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use pos_shared::delivery::sync::DeliverySync;
use tracing::Instrument;

async fn handler(
    sync: &DeliverySync,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let span = pos_shared::runtime::invocation_span("webhooks-sync", &event.context.request_id);
    Ok(sync.handle_batch(&event.payload).instrument(span).await)
}

// One thread: Lambda runs one invocation at a time on a fraction of a vCPU; a worker pool only adds
// threads to start and cross-thread wake-ups to every SDK call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    pos_shared::runtime::init_logging("webhooks-sync");
    let sync = pos_shared::delivery::webhooks_config::webhooks_sync_from_env().await?;
    run(service_fn(|event| handler(&sync, event))).await
}
