//! Publication on AWS: the capture table's DynamoDB stream invokes `outbox-publisher` with the new
//! outbox entries (an event source mapping filtered to `INSERT`s of `OUTBOX#` items, `NEW_IMAGE`), and
//! this module publishes them with [`OutboxRelay::publish_entries`], the routine the scheduled sweep
//! uses too.
//!
//! Failures are reported per record (`ReportBatchItemFailures`): Lambda retries the shard from the
//! lowest failed sequence number, so later records are redelivered as well, which the bus's consumers
//! dedupe on the stable event id. A record the stream gives up on stays pending in the table, where the
//! scheduled sweep finds it: the stream is the fast path, the sweep the safety net.

use super::{OutboxRelay, Published};
use crate::ids::EventId;
use crate::metrics::Unit;
use crate::store::OutboxEntry;
use crate::store::dynamodb::outbox_entry_from_image;
use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};

/// The outbox entries of a stream batch, each with the sequence number that identifies its record.
pub fn entries_of(event: &Event) -> Vec<(String, OutboxEntry)> {
    let mut out = Vec::with_capacity(event.records.len());
    for record in &event.records {
        if record.event_name != "INSERT" {
            continue; // the mark (MODIFY) and TTL deletes (REMOVE) are not news
        }
        let seq = record.change.sequence_number.clone().unwrap_or_default();
        match outbox_entry_from_image(&record.change.new_image) {
            Ok(Some(entry)) => out.push((seq, entry)),
            Ok(None) => {}
            // Not retried here (it would block the shard for nothing): the entry is pending in the
            // table, and the sweep, which reads it from there, fails loudly on it.
            Err(e) => {
                tracing::error!(sequence_number = %seq, error = %e, "outbox stream record does not decode; left to the sweep")
            }
        }
    }
    out
}

impl OutboxRelay {
    /// Publishes the outbox entries of one stream batch; the answer names the records to retry.
    pub async fn publish_stream(&self, event: &Event) -> DynamoDbEventResponse {
        let entries = entries_of(event);
        let found = entries.len();
        let ids: Vec<(String, EventId)> = entries
            .iter()
            .map(|(seq, e)| (seq.clone(), e.envelope.event_id.clone()))
            .collect();
        let published: Published = self
            .publish_entries(entries.into_iter().map(|(_, e)| e).collect())
            .await;
        let report = published.report(found);
        self.metrics().emit(&[
            ("OutboxStreamed", Unit::Count, report.published as f64),
            (
                "OutboxStreamFailures",
                Unit::Count,
                published.failed.len() as f64,
            ),
            ("OutboxPoisoned", Unit::Count, report.poisoned as f64),
        ]);
        let mut response = DynamoDbEventResponse::default();
        for (seq, id) in ids {
            if published.failed.contains(&id) {
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(seq);
                response.batch_item_failures.push(failure);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;
    use crate::store::{OutboxStatus, StoreInspect};

    fn record(name: &str, seq: &str, image: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "eventID": format!("id-{seq}"), "eventName": name, "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "eu-west-1",
            "dynamodb": {"ApproximateCreationDateTime": 1.7e9, "Keys": {"pk": image["pk"], "sk": image["sk"]},
                         "NewImage": image, "SequenceNumber": seq, "SizeBytes": 100,
                         "StreamViewType": "NEW_IMAGE"},
            "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/t/stream/2026"
        })
    }

    fn outbox_image(entry: &OutboxEntry) -> serde_json::Value {
        serde_json::json!({
            "pk": {"S": format!("OUTBOX#{}", entry.envelope.event_id)}, "sk": {"S": "OUTBOX"},
            "data": {"S": serde_json::to_string(entry).expect("json")}, "status": {"S": "PENDING"}
        })
    }

    fn entry(n: u32) -> OutboxEntry {
        let body = samples::standard_sale(&format!("stream-{n}"), "store-1", None, 2);
        let delivery = samples::standard(&format!("msg_{n}"), &body, samples::sample_time(), None);
        let envelope = samples::envelope_of(&delivery).expect("one event");
        OutboxEntry {
            envelope,
            status: OutboxStatus::Pending,
            created_at: samples::sample_time(),
        }
    }

    #[test]
    fn only_inserts_of_outbox_items_are_taken_and_a_damaged_one_is_left_to_the_sweep() {
        let good = entry(1);
        let event: Event = serde_json::from_value(serde_json::json!({"Records": [
            record("INSERT", "100", outbox_image(&good)),
            record("MODIFY", "101", outbox_image(&good)),
            record("INSERT", "102", serde_json::json!({"pk": {"S": "RECORD#x"}, "sk": {"S": "RECORD"}, "data": {"S": "{}"}})),
            record("INSERT", "103", serde_json::json!({"pk": {"S": "OUTBOX#y"}, "sk": {"S": "OUTBOX"}, "data": {"S": "{not json"}})),
            record("INSERT", "104", serde_json::json!({"pk": {"S": "OUTBOX#z"}, "sk": {"S": "OUTBOX"}})),
        ]}))
        .expect("a stream event");
        let entries = entries_of(&event);
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].0, "100");
        assert_eq!(entries[0].1, good);
    }

    #[tokio::test]
    async fn a_batch_is_published_and_marked_and_what_the_bus_refuses_is_retried_by_sequence_number()
     {
        let crate::outbox::tests::Rig {
            store, bus, relay, ..
        } = crate::outbox::tests::rig();
        // 12 entries: two PutEvents batches (10 + 2); the first batch fails.
        let entries: Vec<OutboxEntry> = (0..12).map(entry).collect();
        for e in &entries {
            crate::outbox::tests::store_entry(&store, e.clone()).await;
        }
        let records: Vec<serde_json::Value> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| record("INSERT", &format!("{}", 200 + i), outbox_image(e)))
            .collect();
        let event: Event =
            serde_json::from_value(serde_json::json!({ "Records": records })).expect("event");
        bus.fail_next(1);
        let response = relay.publish_stream(&event).await;
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(
            failed,
            (200..210).map(|n| n.to_string()).collect::<Vec<_>>()
        );
        assert_eq!(bus.events().len(), 2, "the second batch went out");
        assert_eq!(store.pending_outbox().await.expect("outbox").len(), 10);
        // Lambda retries from the lowest failed sequence number: the whole batch again.
        let response = relay.publish_stream(&event).await;
        assert!(response.batch_item_failures.is_empty());
        assert!(store.pending_outbox().await.expect("outbox").is_empty());
        let mut ids: Vec<EventId> = bus.events().into_iter().map(|e| e.event_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids.len(),
            12,
            "every entry published, with its own stable id"
        );
    }
}
