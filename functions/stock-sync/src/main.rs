//! `stock-sync`: SQS-triggered Lambda applying `SaleCompleted` / `ReturnCompleted` to stock levels.
//!
//! Thin: the consumer is built once per cold start; each batch goes to
//! [`pos_shared::stock::StockSync::handle_batch`], which reports partial batch failures.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use pos_shared::stock::StockSync;
use tracing::Instrument;

async fn handler(
    sync: &StockSync,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let span = pos_shared::runtime::invocation_span("stock-sync", &event.context.request_id);
    Ok(sync.handle_batch(&event.payload).instrument(span).await)
}

// One thread: Lambda runs one invocation at a time on a fraction of a vCPU; a worker pool only adds
// threads to start and cross-thread wake-ups to every SDK call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    pos_shared::runtime::init_logging("stock-sync");
    let sync = pos_shared::stock::config::stock_sync_from_env().await?;
    run(service_fn(|event| handler(&sync, event))).await
}
