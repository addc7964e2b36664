//! SQS queues in moto as `infra/` declares them, and batches received as the Lambda SQS event carries
//! them (for the consumer and delivery function tests).

use crate::infra;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::QueueAttributeName;

/// A consumer queue created in moto.
pub struct Queue {
    /// Its URL.
    pub url: String,
    /// Its DLQ's URL.
    pub dlq_url: String,
}

/// The stock-sync queue, its DLQ and its rule, from `module "stock_sync_queue"` in infra/.
pub async fn create_consumer_queue(sdk: &aws_config::SdkConfig, bus: &str, module: &str) -> Queue {
    let q = infra::consumer_queue(module);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let eb = aws_sdk_eventbridge::Client::new(sdk);
    let name = format!("{}-{}", module, std::process::id());
    let dlq_url = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("dlq")
        .queue_url
        .expect("url");
    let dlq_arn = format!("arn:aws:sqs:eu-west-1:123456789012:{name}-dlq");
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .attributes(QueueAttributeName::VisibilityTimeout, q.visibility_timeout_seconds.to_string())
        .attributes(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": q.max_receive_count}).to_string(),
        )
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    eb.put_rule()
        .name(&name)
        .event_bus_name(bus)
        .event_pattern(q.event_pattern.to_string())
        .send()
        .await
        .expect("rule");
    eb.put_targets()
        .rule(&name)
        .event_bus_name(bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(format!("arn:aws:sqs:eu-west-1:123456789012:{name}"))
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("targets");
    Queue { url, dlq_url }
}

/// Receives up to 10 messages as the Lambda SQS event would carry them (visibility 0: immediately
/// receivable again, so the test can play the redeliveries).
pub async fn receive(sqs: &aws_sdk_sqs::Client, url: &str) -> SqsEvent {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive");
    let mut event = SqsEvent::default();
    for m in out.messages.unwrap_or_default() {
        let mut r = SqsMessage::default();
        r.message_id = m.message_id.clone();
        r.receipt_handle = m.receipt_handle.clone();
        r.body = m.body.clone();
        for (name, value) in m.attributes.unwrap_or_default() {
            r.attributes.insert(name.as_str().to_owned(), value);
        }
        event.records.push(r);
    }
    event
}

/// Deletes the records not reported failed, as the Lambda service does after a batch.
pub async fn delete_succeeded(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    event: &SqsEvent,
    failed: &[String],
) {
    for r in &event.records {
        if !failed.contains(r.message_id.as_ref().expect("id")) {
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(r.receipt_handle.clone().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }
}

/// A delivery function's world on moto: the deliveries table, a bus, and the function's queue (with its
/// DLQ and rule) as `infra/` declares them.
pub struct DeliveryRig {
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// The function's queue and DLQ.
    pub queue: Queue,
    /// The ledger and breakers on the deliveries table.
    pub deliveries: std::sync::Arc<pos_shared::delivery::dynamodb::DynamoDeliveries>,
    /// The bus the rule listens on.
    pub bus: pos_shared::bus::eventbridge::EventBridgePublisher,
}

impl DeliveryRig {
    /// Creates the table (through `ddb`, which may count its requests), the bus and the queue module
    /// `queue_module`; `tag` keeps names apart between tests of one moto.
    pub async fn start(
        sdk: &aws_config::SdkConfig,
        ddb: aws_sdk_dynamodb::Client,
        queue_module: &str,
        tag: &str,
    ) -> DeliveryRig {
        let pid = std::process::id();
        let table = format!("deliveries-{tag}-{pid}");
        crate::moto::create_table_from_infra(&ddb, &table, "deliveries").await;
        let bus = format!("pos-{tag}-{pid}");
        aws_sdk_eventbridge::Client::new(sdk)
            .create_event_bus()
            .name(&bus)
            .send()
            .await
            .expect("bus");
        DeliveryRig {
            sqs: aws_sdk_sqs::Client::new(sdk),
            queue: create_consumer_queue(sdk, &bus, queue_module).await,
            deliveries: std::sync::Arc::new(pos_shared::delivery::dynamodb::DynamoDeliveries::new(
                ddb, &table,
            )),
            bus: pos_shared::bus::eventbridge::EventBridgePublisher::new(
                aws_sdk_eventbridge::Client::new(sdk),
                &bus,
            ),
        }
    }

    /// The function's queue operations on the real queue and DLQ.
    pub fn queue_control(&self) -> std::sync::Arc<pos_shared::delivery::sync::SqsQueueControl> {
        std::sync::Arc::new(pos_shared::delivery::sync::SqsQueueControl::new(
            self.sqs.clone(),
            self.queue.url.clone(),
            self.queue.dlq_url.clone(),
        ))
    }
}

/// A free loopback port nothing listens on: a destination that is down.
pub fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

/// Short in-process retries, so a test's outage turns into a requeue quickly.
pub fn quick_retries() -> pos_shared::delivery::retry::RetryPolicy {
    pos_shared::delivery::retry::RetryPolicy {
        in_process: pos_shared::backoff::Backoff {
            attempts: 2,
            base: std::time::Duration::from_millis(10),
            cap: std::time::Duration::from_millis(20),
        },
        ..pos_shared::delivery::retry::RetryPolicy::default()
    }
}
