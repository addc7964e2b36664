//! `loyalty-accrual`: SQS-triggered Lambda turning sales and returns into loyalty ledger entries.
//!
//! Thin: rules are validated and the ledger built once per cold start (bad rules fail the cold start);
//! each batch goes to [`pos_shared::loyalty::LoyaltyAccrual::handle_batch`] (partial batch failures).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use pos_shared::loyalty::LoyaltyAccrual;
use tracing::Instrument;

async fn handler(
    accrual: &LoyaltyAccrual,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let span = pos_shared::runtime::invocation_span("loyalty-accrual", &event.context.request_id);
    Ok(accrual.handle_batch(&event.payload).instrument(span).await)
}

// One thread: Lambda runs one invocation at a time on a fraction of a vCPU; a worker pool only adds
// threads to start and cross-thread wake-ups to every SDK call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    pos_shared::runtime::init_logging("loyalty-accrual");
    let accrual = pos_shared::loyalty::config::loyalty_accrual_from_env().await?;
    run(service_fn(|event| handler(&accrual, event))).await
}
