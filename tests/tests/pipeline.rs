//! The event pipeline on the AWS path, against moto: the stock table, the stock-sync queue with its DLQ
//! and redrive policy, and the rule on the bus are created from `infra/`; capture stores, the table's
//! stream (read from moto's DynamoDB Streams API) feeds outbox-publisher, the rule routes to both
//! consumer queues, stock-sync and loyalty-accrual apply their effects once, a poison message ends in
//! the DLQ. Also counts the AWS requests per sale, per function.

use pos_shared::bus::eventbridge::EventBridgePublisher;
use pos_shared::capture::{CaptureService, CaptureSettings};
use pos_shared::ids::{MemberId, Sku, StoreId};
use pos_shared::loyalty::dynamodb::DynamoLoyaltyLedger;
use pos_shared::loyalty::rules::LoyaltyRules;
use pos_shared::loyalty::{LoyaltyAccrual, LoyaltyLedger};
use pos_shared::metrics::{Metrics, Sink};
use pos_shared::ports::ManualClock;
use pos_shared::samples;
use pos_shared::secrets::{StaticSecrets, dev_secrets};
use pos_shared::stock::dynamodb::DynamoStockLedger;
use pos_shared::stock::{StockLedger, StockSync};
use pos_shared::store::dynamodb::DynamoStore;
use pos_tests::infra;
use pos_tests::moto::{
    CountRequests, Moto, OutboxStream, create_table_from_infra, outbox_publisher,
};
use pos_tests::queues::{create_consumer_queue, delete_succeeded, receive};
use std::sync::Arc;
use std::sync::atomic::Ordering;

#[tokio::test]
async fn a_captured_sale_reaches_both_consumers_through_the_rules_and_applies_once() {
    let Some(moto) = Moto::start() else { return };
    let sdk = moto.sdk_config().await;
    let counter = CountRequests::default();
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(counter.clone())
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let pid = std::process::id();
    let (capture_table, stock_table, bus) = (
        format!("capture-p-{pid}"),
        format!("stock-p-{pid}"),
        format!("pos-p-{pid}"),
    );
    let loyalty_table = format!("loyalty-p-{pid}");
    create_table_from_infra(&ddb, &capture_table, "capture").await;
    create_table_from_infra(&ddb, &stock_table, "stock").await;
    aws_sdk_eventbridge::Client::new(&sdk)
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .expect("bus");
    create_table_from_infra(&ddb, &loyalty_table, "loyalty").await;
    let deliveries_table = format!("deliveries-p-{pid}");
    create_table_from_infra(&ddb, &deliveries_table, "deliveries").await;
    let queue = create_consumer_queue(&sdk, &bus, "stock_sync_queue").await;
    let loyalty_queue = create_consumer_queue(&sdk, &bus, "loyalty_accrual_queue").await;

    let clock = Arc::new(ManualClock::new(samples::sample_time()));
    let capture = CaptureService::new(
        Arc::new(DynamoStore::new(ddb.clone(), &capture_table)),
        Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
        clock.clone(),
        CaptureSettings::default(),
    );
    let ledger = Arc::new(DynamoStockLedger::new(ddb.clone(), &stock_table));
    let sync = StockSync::new(
        ledger.clone(),
        Arc::new(EventBridgePublisher::new(
            aws_sdk_eventbridge::Client::new(&sdk),
            &bus,
        )),
        clock.clone(),
        -1000,
        Arc::new(Metrics::new("stock-sync", Sink::Off)),
    );

    let loyalty_ledger = Arc::new(DynamoLoyaltyLedger::new(ddb.clone(), &loyalty_table));
    let loyalty = LoyaltyAccrual::new(
        loyalty_ledger.clone(),
        LoyaltyRules::default_rules(),
        Arc::new(Metrics::new("loyalty-accrual", Sink::Off)),
    );

    // One 10-line sale: count the DynamoDB calls of capture and of stock-sync.
    let sale = samples::standard(
        "msg_pipe_1",
        &samples::standard_sale("pipe-1", "store-001", Some("member-7"), 10),
        samples::sample_time(),
        None,
    );
    counter.0.store(0, Ordering::SeqCst);
    assert_eq!(
        capture
            .handle(&sale.to_request("p1"))
            .await
            .expect("captured")
            .status()
            .as_u16(),
        202
    );
    let capture_calls = counter.0.swap(0, Ordering::SeqCst);
    // The capture's one request is its transaction: nothing is on the bus until the stream publishes.
    assert_eq!(
        capture_calls, 1,
        "one AWS request per new sale on the request path: TransactWriteItems"
    );
    assert!(receive(&sqs, &queue.url).await.records.is_empty());
    // A redelivery: one failed conditional write (the live delivery record comes back with it).
    assert_eq!(
        capture
            .handle(&sale.to_request("p1-again"))
            .await
            .expect("duplicate")
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        counter.0.swap(0, Ordering::SeqCst),
        1,
        "a duplicate costs one request"
    );
    let stream = OutboxStream::new(&moto.endpoint, &capture_table);
    let publisher = outbox_publisher(&ddb, &capture_table, &sdk, &bus, Some(&counter));
    assert!(
        stream
            .publish(&publisher)
            .await
            .batch_item_failures
            .is_empty()
    );
    let publisher_calls = counter.0.swap(0, Ordering::SeqCst);
    assert_eq!(
        publisher_calls, 2,
        "outbox-publisher: PutEvents + one conditional UpdateItem marking the entry"
    );
    let batch = receive(&sqs, &queue.url).await;
    assert_eq!(
        batch.records.len(),
        1,
        "the rule routed the SaleCompleted to the stock-sync queue"
    );
    let resp = sync.handle_batch(&batch).await;
    assert!(resp.batch_item_failures.is_empty());
    let stock_calls = counter.0.swap(0, Ordering::SeqCst);
    println!(
        "AWS requests for one new 10-line sale: capture {capture_calls}, outbox-publisher {publisher_calls}, stock-sync {stock_calls}"
    );

    // The same event reached the loyalty queue through its own rule: 10 x 12.50 EUR = 125 points.
    let loyalty_batch = receive(&sqs, &loyalty_queue.url).await;
    assert_eq!(loyalty_batch.records.len(), 1);
    assert!(
        loyalty
            .handle_batch(&loyalty_batch)
            .await
            .batch_item_failures
            .is_empty()
    );
    let loyalty_calls = counter.0.swap(0, Ordering::SeqCst);
    println!("DynamoDB requests for the same sale in loyalty-accrual: {loyalty_calls}");
    assert!(
        loyalty
            .handle_batch(&loyalty_batch)
            .await
            .batch_item_failures
            .is_empty(),
        "redelivery"
    );
    delete_succeeded(&sqs, &loyalty_queue.url, &loyalty_batch, &[]).await;
    let member = MemberId::parse("member-7").expect("member");
    assert_eq!(
        loyalty_ledger.balance(&member).await.expect("balance"),
        125,
        "one entry despite the redelivery"
    );

    // The queue redelivers the same message (visibility expired before the delete): no second effect.
    let again = sync.handle_batch(&batch).await;
    assert!(again.batch_item_failures.is_empty());
    delete_succeeded(&sqs, &queue.url, &batch, &[]).await;
    let store = StoreId::parse("store-001").expect("id");
    let (levels, next) = ledger
        .store_levels(&StoreId::parse("store-001").expect("id"), None, 4)
        .await
        .expect("levels");
    assert_eq!(levels.len(), 4);
    let (rest, _) = ledger
        .store_levels(
            &StoreId::parse("store-001").expect("id"),
            next.as_ref(),
            100,
        )
        .await
        .expect("levels");
    assert_eq!(
        levels.len() + rest.len(),
        10,
        "paged through the store's SKUs in order"
    );
    for i in 1..=10 {
        let sku = Sku::parse(format!("SKU-{i:03}")).expect("sku");
        assert_eq!(
            ledger.on_hand(&store, &sku).await.expect("level"),
            -1,
            "SKU-{i:03} sold once"
        );
    }

    // A return restocks one unit.
    let ret = samples::standard(
        "msg_pipe_2",
        &samples::standard_return("pipe-r1", "pipe-1", "store-001"),
        samples::sample_time(),
        None,
    );
    capture.handle(&ret.to_request("p2")).await.expect("return");
    assert!(
        stream
            .publish(&publisher)
            .await
            .batch_item_failures
            .is_empty()
    );
    let batch = receive(&sqs, &queue.url).await;
    assert!(
        sync.handle_batch(&batch)
            .await
            .batch_item_failures
            .is_empty()
    );
    delete_succeeded(&sqs, &queue.url, &batch, &[]).await;
    assert_eq!(
        ledger
            .on_hand(&store, &Sku::parse("SKU-001").expect("sku"))
            .await
            .expect("level"),
        0
    );

    // The query API over the same tables (what the query-api Lambda serves): REST and GraphQL.
    read_back_through_the_query_api(
        &ddb,
        &capture_table,
        &stock_table,
        &loyalty_table,
        &deliveries_table,
    )
    .await;

    // A poison message fails every time and moves to the DLQ after maxReceiveCount receives.
    sqs.send_message()
        .queue_url(&queue.url)
        .message_body("{not an event")
        .send()
        .await
        .expect("send");
    let max = infra::consumer_queue("stock_sync_queue").max_receive_count;
    for _ in 0..max {
        let batch = receive(&sqs, &queue.url).await;
        assert_eq!(batch.records.len(), 1);
        let resp = sync.handle_batch(&batch).await;
        assert_eq!(
            resp.batch_item_failures.len(),
            1,
            "poison reported, not dropped"
        );
    }
    let after = receive(&sqs, &queue.url).await;
    assert!(
        after.records.is_empty(),
        "moved out of the queue after {max} receives"
    );
    let dlq = receive(&sqs, &queue.dlq_url).await;
    assert_eq!(dlq.records.len(), 1, "the poison message waits in the DLQ");
    assert_eq!(dlq.records[0].body.as_deref(), Some("{not an event"));
}

/// The query API's router on the DynamoDB read models, called with API Gateway events as the Lambda is.
async fn read_back_through_the_query_api(
    ddb: &aws_sdk_dynamodb::Client,
    capture_table: &str,
    stock_table: &str,
    loyalty_table: &str,
    deliveries_table: &str,
) {
    use pos_shared::auth::{API_AUDIENCE, AuthConfig, Authenticator, DEV_ISSUER, StaticJwks};
    use pos_shared::delivery::dynamodb::DynamoDeliveries;
    use pos_shared::delivery::ledger::{DeliveryEntry, DeliveryLedger, DeliveryStatus};
    // What a delivery function wrote about the sale: delivered to commercetools.
    let deliveries = Arc::new(DynamoDeliveries::new(ddb.clone(), deliveries_table));
    let mut delivered = DeliveryEntry::pending(
        pos_shared::ids::EventId::parse("evt:sale:pipe-1").expect("event"),
        Some(pos_shared::ids::SaleId::parse("dev-till:pipe-1").expect("sale")),
        "commercetools",
        samples::sample_time(),
    );
    delivered.status = DeliveryStatus::Delivered;
    delivered.attempts = 1;
    delivered.remote_id = Some("order-77".into());
    delivered.version = 1;
    assert_eq!(deliveries.put(&delivered, None).await, Ok(true));
    let state = Arc::new(pos_shared::api::ApiState {
        sales: Arc::new(DynamoStore::new(ddb.clone(), capture_table)),
        stock: Arc::new(pos_shared::stock::dynamodb::DynamoStockLedger::new(
            ddb.clone(),
            stock_table,
        )),
        loyalty: Arc::new(pos_shared::loyalty::dynamodb::DynamoLoyaltyLedger::new(
            ddb.clone(),
            loyalty_table,
        )),
        deliveries,
        auth: Arc::new(Authenticator::new(
            Arc::new(StaticJwks::parse(pos_shared::auth::DEV_JWKS_JSON).expect("jwks")),
            Arc::new(ManualClock::new(samples::sample_time())),
            AuthConfig::standard(DEV_ISSUER, API_AUDIENCE),
        )),
        cursors: Arc::new(
            pos_shared::read::CursorCodec::new(b"0123456789abcdef0123456789abcdef".to_vec())
                .expect("key"),
        ),
        graphql: Default::default(),
    });
    let router = pos_shared::api::router(state);
    let token = pos_shared::auth::dev_token(
        DEV_ISSUER,
        API_AUDIENCE,
        "moto-test",
        "sales:read stock:read loyalty:read deliveries:read",
        samples::sample_time(),
        chrono::Duration::minutes(5),
    )
    .expect("token");
    let call = |method: &str, path: &str, query: &str, body: Option<serde_json::Value>| {
        let mut event = serde_json::json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": query,
            "headers": {"authorization": format!("Bearer {token}"), "content-type": "application/json"},
            "isBase64Encoded": false,
            "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
                               "requestId": "moto", "stage": "$default", "accountId": "123456789012", "apiId": "moto"}
        });
        if let Some(b) = body {
            event["body"] = serde_json::json!(b.to_string());
        }
        let req = pos_shared::http::request_from_event_json(&event.to_string()).expect("event");
        let router = router.clone();
        async move {
            let resp = pos_shared::api::lambda::handle(&router, req).await;
            let status = resp.status().as_u16();
            let body: serde_json::Value = serde_json::from_slice(resp.body()).expect("JSON body");
            (status, body)
        }
    };
    let (status, sale) = call("GET", "/v1/sales/dev-till:pipe-1", "", None).await;
    assert_eq!(status, 200, "{sale}");
    assert_eq!(sale["store_id"], "store-001");
    let (status, page) = call("GET", "/v1/stores/store-001/sales", "limit=1", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["sale_id"], "dev-till:pipe-1");
    let (status, page) = call("GET", "/v1/stores/store-001/stock", "limit=3", None).await;
    assert_eq!(status, 200, "{page}");
    let cursor = page["next_cursor"].as_str().expect("more SKUs").to_owned();
    let (status, next) = call(
        "GET",
        "/v1/stores/store-001/stock",
        &format!("limit=3&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(
        next["items"][0]["sku"], "SKU-004",
        "the second page follows the first"
    );
    let (status, gql) = call(
        "POST",
        "/graphql",
        "",
        Some(serde_json::json!({"query": "{ stockLevel(storeId: \"store-001\", sku: \"SKU-001\") { onHand } member(memberId: \"member-7\") { balance ledger { items { points } } } }"})),
    )
    .await;
    assert_eq!(status, 200, "{gql}");
    assert!(gql.get("errors").is_none(), "{gql}");
    assert_eq!(
        gql["data"]["stockLevel"]["onHand"], 0,
        "sold, then restocked"
    );
    assert_eq!(gql["data"]["member"]["balance"], 125);
    assert_eq!(
        gql["data"]["member"]["ledger"]["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let (status, missing) = call("GET", "/v1/sales/never-captured", "", None).await;
    assert_eq!(status, 404, "{missing}");

    // The delivery ledger, read through the deliveries table's gsi1.
    let (status, body) = call("GET", "/v1/sales/dev-till:pipe-1/deliveries", "", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["deliveries"],
        serde_json::json!([{
            "event_id": "evt:sale:pipe-1",
            "destination": "commercetools",
            "status": "delivered",
            "attempts": 1,
            "remote_id": "order-77",
            "remote_version": null,
            "last_error": null,
            "updated_at": "2026-01-15T10:00:00Z"
        }])
    );
    let (status, gql) = call(
        "POST",
        "/graphql",
        "",
        Some(serde_json::json!({"query": "{ deliveries(saleId: \"dev-till:pipe-1\") { destination status remoteId } }"})),
    )
    .await;
    assert_eq!(status, 200, "{gql}");
    assert_eq!(
        gql["data"]["deliveries"],
        serde_json::json!([{"destination": "commercetools", "status": "delivered", "remoteId": "order-77"}])
    );
    let (status, missing) = call("GET", "/v1/sales/never-captured/deliveries", "", None).await;
    assert_eq!(status, 404, "{missing}");
}

/// SKUs the big sale's lines cycle through on moto: moto deep-copies a table once per item of every
/// `TransactWriteItems`, so thousands of distinct SKUs (80 stock transactions on a growing table) take
/// many minutes there; the embedded twin (`shared/tests/big_sales.rs`) sells a distinct SKU per line.
const BIG_SALE_SKUS: usize = 40;

/// The Standard sale with the most lines whose body fits `limit` bytes (its lines cycling through
/// [`BIG_SALE_SKUS`] SKUs), and its line count.
fn largest_standard_sale(limit: usize) -> (serde_json::Value, usize) {
    let body = |n| {
        let mut b = samples::standard_sale("big-1", "store-big", Some("member-big"), n);
        for (i, line) in b["data"]["lines"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .enumerate()
        {
            line["sku"] = serde_json::json!(format!("SKU-{:03}", i % BIG_SALE_SKUS + 1));
        }
        b
    };
    let (mut lo, mut hi) = (1, limit);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if body(mid).to_string().len() <= limit {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    (body(lo), lo)
}

/// DynamoDB's item size: attribute names plus values (strings and binaries by their bytes, numbers
/// about their digits).
fn item_size(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    A::S(s) | A::N(s) => s.len(),
                    A::B(b) => b.as_ref().len(),
                    _ => 16,
                }
        })
        .sum()
}

/// Issue 9 on the AWS path: the largest Standard sale the capture accepts (a body just under 256 KiB,
/// thousands of lines) is stored within DynamoDB's item and transaction limits, published within
/// EventBridge's entry limit, and applied exactly once by both consumers; the sale read answers it
/// whole. Moto refuses items over 400 KB and transactions over 100 items (checked first: the whole
/// sale in one record item, as before the claim check, is refused), but not transactions over 4 MB:
/// the test adds up the written items itself.
#[tokio::test]
async fn the_largest_sale_is_stored_published_and_applied_once_on_dynamodb() {
    use pos_shared::ports::CaptureStore;
    let Some(moto) = Moto::start() else { return };
    let sdk = moto.sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let pid = std::process::id();
    let (capture_table, stock_table, loyalty_table, bus) = (
        format!("capture-b-{pid}"),
        format!("stock-b-{pid}"),
        format!("loyalty-b-{pid}"),
        format!("pos-b-{pid}"),
    );
    create_table_from_infra(&ddb, &capture_table, "capture").await;
    create_table_from_infra(&ddb, &stock_table, "stock").await;
    create_table_from_infra(&ddb, &loyalty_table, "loyalty").await;
    aws_sdk_eventbridge::Client::new(&sdk)
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .expect("bus");
    let queue = create_consumer_queue(&sdk, &bus, "stock_sync_queue").await;
    let loyalty_queue = create_consumer_queue(&sdk, &bus, "loyalty_accrual_queue").await;
    let clock = Arc::new(ManualClock::new(samples::sample_time()));
    let store = Arc::new(DynamoStore::new(ddb.clone(), &capture_table));
    let settings = CaptureSettings::default();
    let capture = CaptureService::new(
        store.clone(),
        Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
        clock.clone(),
        settings.clone(),
    );
    let (body, lines) = largest_standard_sale(settings.max_body_bytes);
    let request = samples::standard("msg_big", &body, samples::sample_time(), None).to_request("b");
    assert!(
        request.body.len() > settings.max_body_bytes - 1024,
        "just under the limit"
    );
    assert!(lines > 3_500, "{lines} lines");

    // Before the claim check the record item held every line: DynamoDB (and moto) refuse that item.
    let whole = pos_shared::store::CaptureWrite {
        delivery: pos_shared::store::DeliveryRecord {
            vendor: pos_shared::model::Vendor::Standard,
            delivery_key: "msg_whole".into(),
            payload_hash: "h".into(),
            outcome: pos_shared::store::DeliveryOutcome::Ignored {
                reason: "probe".into(),
            },
            correlation_id: "b".into(),
            received_at: samples::sample_time(),
            expires_at: samples::sample_time() + chrono::Duration::days(7),
        },
        fact: None,
        also: Vec::new(),
        requires: None,
        lines: Vec::new(),
    };
    let interpreted = pos_shared::vendors::interpret(
        pos_shared::model::Vendor::Standard,
        &pos_shared::vendors::Signer::Sender(
            pos_shared::secrets::SenderName::parse("dev-till").expect("sender"),
        ),
        &request.headers,
        &request.body,
        &settings.mapping,
    )
    .expect("interpreted");
    let pos_shared::vendors::Interpretation::Event(event) = interpreted.interpretation else {
        panic!("a sale")
    };
    let envelope = pos_shared::model::EventEnvelope::new(event, "b".into(), samples::sample_time());
    let mut old_way = whole.clone();
    old_way.fact = Some((
        pos_shared::store::CanonicalRecord {
            record_key: "sale#probe".into(),
            captured_at: samples::sample_time(),
            vendor: pos_shared::model::Vendor::Standard,
            delivery_key: "msg_whole".into(),
            event: envelope.event.clone(),
            lines_ref: None,
        },
        pos_shared::store::OutboxEntry {
            envelope,
            status: pos_shared::store::OutboxStatus::Pending,
            created_at: samples::sample_time(),
        },
    ));
    let refused = store.capture(old_way).await;
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("size")),
        "an item over 400 KB: {refused:?}"
    );

    // Now: 202, one entry on the bus, routed to both queues.
    let status = capture.handle(&request).await.expect("captured").status();
    assert_eq!(status.as_u16(), 202);
    let items = ddb
        .scan()
        .table_name(&capture_table)
        .send()
        .await
        .expect("scan")
        .items
        .unwrap_or_default();
    let written: Vec<_> = items
        .iter()
        .filter(|i| {
            i.get("pk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|pk| pk.contains("big-1") || pk.contains("msg_big"))
        })
        .collect();
    let chunks = written
        .iter()
        .filter(|i| {
            i.get("pk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|pk| pk.starts_with("LINES#"))
        })
        .count();
    assert!(chunks >= 2, "the lines in chunk items: {chunks}");
    assert_eq!(
        written.len(),
        3 + chunks,
        "delivery, record, outbox and the chunks"
    );
    for item in &written {
        assert!(
            item_size(item) < 300_000,
            "each item well under 400 KB: {}",
            item_size(item)
        );
    }
    let total: usize = written.iter().map(|i| item_size(i)).sum();
    assert!(total < 4_000_000, "the transaction is under 4 MB: {total}");

    let publisher = outbox_publisher(&ddb, &capture_table, &sdk, &bus, None);
    let stream = OutboxStream::new(&moto.endpoint, &capture_table)
        .publish(&publisher)
        .await;
    assert!(stream.batch_item_failures.is_empty(), "{stream:?}");
    for (q, name) in [(&queue, "stock-sync"), (&loyalty_queue, "loyalty-accrual")] {
        let batch = receive(&sqs, &q.url).await;
        assert_eq!(batch.records.len(), 1, "{name} got the sale");
        let size = batch.records[0].body.as_deref().map_or(0, str::len);
        assert!(size < 256 * 1024, "the SQS message is {size} bytes");
    }
    // Consumers on DynamoDB, wired to the capture table as the Lambdas are; each record twice.
    let ledger = Arc::new(DynamoStockLedger::new(ddb.clone(), &stock_table));
    let sync = StockSync::new(
        ledger.clone(),
        Arc::new(EventBridgePublisher::new(
            aws_sdk_eventbridge::Client::new(&sdk),
            &bus,
        )),
        clock.clone(),
        -1_000_000,
        Arc::new(Metrics::new("stock-sync", Sink::Off)),
    )
    .with_lines_source(store.clone());
    let loyalty_ledger = Arc::new(DynamoLoyaltyLedger::new(ddb.clone(), &loyalty_table));
    let loyalty = LoyaltyAccrual::new(
        loyalty_ledger.clone(),
        LoyaltyRules::default_rules(),
        Arc::new(Metrics::new("loyalty-accrual", Sink::Off)),
    )
    .with_lines_source(store.clone());
    let batch = receive(&sqs, &queue.url).await;
    let loyalty_batch = receive(&sqs, &loyalty_queue.url).await;
    for _ in 0..2 {
        let failed = sync.handle_batch(&batch).await.batch_item_failures;
        assert!(failed.is_empty(), "stock: {failed:?}");
        let failed = loyalty
            .handle_batch(&loyalty_batch)
            .await
            .batch_item_failures;
        assert!(failed.is_empty(), "loyalty: {failed:?}");
    }
    let store_id = StoreId::parse("store-big").expect("id");
    let mut levels = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = ledger
            .store_levels(&store_id, after.as_ref(), 1000)
            .await
            .expect("levels");
        levels.extend(page);
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(levels.len(), BIG_SALE_SKUS, "every SKU of the sale");
    for (n, (sku, on_hand)) in levels.iter().enumerate() {
        let sold = (0..lines).filter(|i| i % BIG_SALE_SKUS == n).count();
        assert_eq!(
            *on_hand,
            -i64::try_from(sold).expect("n"),
            "{sku}: each line once"
        );
    }
    let member = MemberId::parse("member-big").expect("member");
    assert_eq!(
        loyalty_ledger.balance(&member).await.expect("balance"),
        i64::try_from(1250 * lines / 100).expect("points"),
        "12.50 EUR a line, 1 point per EUR, once"
    );
    assert_eq!(
        loyalty_ledger
            .entries(&member)
            .await
            .expect("entries")
            .len(),
        1
    );

    // The sale read answers the whole sale.
    let sale = pos_shared::read::SalesReader::sale(
        store.as_ref(),
        &pos_shared::ids::SaleId::parse("dev-till:big-1").expect("id"),
    )
    .await
    .expect("read")
    .expect("stored");
    assert_eq!(sale.lines.len(), lines);
}
