//! `outbox-publisher`: invoked by the capture table's DynamoDB stream (an event source mapping filtered
//! to new outbox entries); publishes them to the bus and marks them published. Records it could not
//! publish are reported as batch item failures, so Lambda retries from the first of them; what the
//! stream gives up on stays pending for `outbox-relay`'s sweep.

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::DynamoDbEventResponse;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use pos_shared::outbox::OutboxRelay;
use tracing::Instrument;

async fn handler(
    publisher: &OutboxRelay,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, Error> {
    let span = pos_shared::runtime::invocation_span("outbox-publisher", &event.context.request_id);
    Ok(publisher
        .publish_stream(&event.payload)
        .instrument(span)
        .await)
}

// One thread: Lambda runs one invocation at a time on a fraction of a vCPU; a worker pool only adds
// threads to start and cross-thread wake-ups to every SDK call.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    pos_shared::runtime::init_logging("outbox-publisher");
    let publisher = pos_shared::outbox::config::outbox_publisher_from_env().await?;
    run(service_fn(|event| handler(&publisher, event))).await
}
