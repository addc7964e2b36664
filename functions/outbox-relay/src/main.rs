//! `outbox-relay`: the safety net of publication. Invoked by an EventBridge Scheduler schedule every
//! minute; publishes the outbox entries still pending a minute after capture (the stream path,
//! `outbox-publisher`, failed on them or has not reached them). A run that cannot publish everything
//! fails, so the schedule's retry policy and the function's error alarm take over; what it could not
//! publish stays pending for the next run.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use pos_shared::outbox::{OutboxRelay, RelayReport, ScheduledJob};
use tracing::Instrument;

/// Pages of `RELAY_BATCH_LIMIT` entries one scheduled run may publish.
const PAGES_PER_RUN: usize = 4;

async fn handler(
    relay: &OutboxRelay,
    event: LambdaEvent<serde_json::Value>,
) -> Result<RelayReport, Error> {
    let span = pos_shared::runtime::invocation_span("outbox-relay", &event.context.request_id);
    async {
        // The input names the job; anything else means a misrouted schedule: refuse loudly.
        let job: ScheduledJob = serde_json::from_value(event.payload)?;
        if job.job != "outbox-relay" {
            return Err(format!("unexpected job {:?}", job.job).into());
        }
        // A backlog (a bus outage the stream gave up on) goes out a few pages per run, not one page a
        // minute; 4 pages of 500 fit well inside the 60 s timeout.
        Ok(relay.drain(PAGES_PER_RUN).await?)
    }
    .instrument(span)
    .await
}

// One thread: Lambda runs one invocation at a time on a fraction of a vCPU; a worker pool only adds
// threads to start and cross-thread wake-ups to every SDK call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    pos_shared::runtime::init_logging("outbox-relay");
    let relay = pos_shared::outbox::config::outbox_relay_from_env().await?;
    run(service_fn(|event| handler(&relay, event))).await
}
