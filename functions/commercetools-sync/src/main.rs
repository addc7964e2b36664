//! `commercetools-sync`: SQS-triggered Lambda delivering sales (order import) and returns (return info)
//! to commercetools, exactly once in effect.
//!
//! Thin: the delivery handler (HTTP client, token cache, ledger, breaker, queue) is built once per cold
//! start; each batch goes to [`pos_shared::delivery::sync::DeliverySync::handle_batch`], which reports
//! partial batch failures, requeues records with a growing visibility timeout during an outage and sends
//! what commercetools refuses for good to the DLQ.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use pos_shared::delivery::sync::DeliverySync;
use tracing::Instrument;

async fn handler(
    sync: &DeliverySync,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let span =
        pos_shared::runtime::invocation_span("commercetools-sync", &event.context.request_id);
    Ok(sync.handle_batch(&event.payload).instrument(span).await)
}

// One thread: Lambda runs one invocation at a time on a fraction of a vCPU; a worker pool only adds
// threads to start and cross-thread wake-ups to every SDK call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    pos_shared::runtime::init_logging("commercetools-sync");
    let sync = pos_shared::delivery::config::commercetools_sync_from_env().await?;
    run(service_fn(|event| handler(&sync, event))).await
}
