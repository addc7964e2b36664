//! `bench-rig`: the AWS world of every function on a running moto server, and fresh events for
//! `../shared/bench/lambda_harness.py` (used by `scripts/bench-lambda.sh`).
//!
//! `bench-rig ENDPOINT OUT_DIR RUNS EVENTS` creates the tables (from `infra/`), the bus, the queues
//! (with their DLQs and rules, from `infra/`) and the secrets, then writes:
//! - `OUT_DIR/<function>.env`: the function's environment as `K=V` lines, every key its `module` in
//!   `infra/` sets (checked: a key infra adds and the rig does not know fails the rig);
//! - `OUT_DIR/<function>/run-<k>/<n>.json`: `EVENTS` events for run `k`, new every run (sale-capture gets
//!   signed 10-line Shopify orders, stock-sync and loyalty-accrual the SQS events their bus rules carry,
//!   one 10-line sale each), so idempotent functions do the work of a new sale every time.
//!
//! The delivery functions get empty SQS batches: their destinations are not on moto, so only their
//! cold start and the runtime's own cost per invocation are measured.

use pos_shared::samples;
use pos_tests::{moto, queues};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

const FUNCTIONS: [(&str, &str); 9] = [
    ("sale-capture", "sale_capture"),
    ("outbox-publisher", "outbox_publisher"),
    ("stock-sync", "stock_sync"),
    ("loyalty-accrual", "loyalty_accrual"),
    ("outbox-relay", "outbox_relay"),
    ("query-api", "query_api"),
    ("commercetools-sync", "commercetools_sync"),
    ("dynamics-sync", "dynamics_sync"),
    ("webhooks-sync", "webhooks_sync"),
];

fn usage() -> ! {
    eprintln!("usage: bench-rig ENDPOINT OUT_DIR RUNS EVENTS_PER_RUN");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, out, runs, events] = args.as_slice() else {
        usage()
    };
    let (Ok(runs), Ok(events)) = (runs.parse::<usize>(), events.parse::<usize>()) else {
        usage()
    };
    let out = Path::new(out);
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "moto",
        ))
        .load()
        .await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    for (table, resource) in [
        ("bench-capture", "capture"),
        ("bench-stock", "stock"),
        ("bench-loyalty", "loyalty"),
        ("bench-deliveries", "deliveries"),
    ] {
        moto::create_table_from_infra(&ddb, table, resource).await;
    }
    let bus = "bench-bus";
    aws_sdk_eventbridge::Client::new(&sdk)
        .create_event_bus()
        .name(bus)
        .send()
        .await
        .expect("bus");
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let secret = |name: &'static str, value: String| {
        let sm = sm.clone();
        async move {
            sm.create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await
                .unwrap_or_else(|e| panic!("secret {name}: {e}"))
                .arn
                .unwrap_or_else(|| panic!("secret {name} has no ARN"))
        }
    };
    let vendor_secret = secret(
        "bench-vendor-webhooks",
        pos_shared::secrets::dev_secrets_json().to_owned(),
    )
    .await;
    let cursor_secret = secret("bench-cursor-key", "k".repeat(64)).await;
    let ctp_secret = secret("bench-ctp", r#"{"client_secret":"bench"}"#.to_owned()).await;
    let d365_secret = secret("bench-d365", r#"{"client_secret":"bench"}"#.to_owned()).await;
    let hooks_secret = secret("bench-webhooks", "{}".to_owned()).await;
    // The delivery queues' rules go on a bus of their own: moto delivers rule targets inline in
    // PutEvents (seconds), which the functions' bus, without rules as in the issue's runs, must not pay.
    let delivery_bus = "bench-delivery-bus";
    aws_sdk_eventbridge::Client::new(&sdk)
        .create_event_bus()
        .name(delivery_bus)
        .send()
        .await
        .expect("delivery bus");
    let mut queue = BTreeMap::new();
    for module in [
        "commercetools_sync_queue",
        "dynamics_sync_queue",
        "webhooks_sync_queue",
    ] {
        queue.insert(
            module,
            queues::create_consumer_queue(&sdk, delivery_bus, module).await,
        );
    }

    let common = |extra: &[(&str, String)]| {
        let mut env: BTreeMap<String, String> = [
            ("POS_BACKEND", "aws".to_owned()),
            ("TABLE_NAME", "bench-capture".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        env
    };
    let delivery = |module: &str, extra: &[(&str, String)]| {
        let q = &queue[module];
        let mut env = common(&[
            ("DELIVERIES_TABLE", "bench-deliveries".to_owned()),
            ("QUEUE_URL", q.url.clone()),
            ("DLQ_URL", q.dlq_url.clone()),
            (
                "MAX_RECEIVES",
                pos_tests::infra::consumer_queue(module)
                    .max_receive_count
                    .to_string(),
            ),
        ]);
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        env
    };
    // The destinations are never called (empty batches): any well-formed URL serves.
    let nowhere = "https://destination.invalid".to_owned();
    let envs: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::from([
        (
            "sale-capture",
            common(&[
                ("SECRET_ID", vendor_secret),
                ("MAX_BODY_BYTES", "262144".to_owned()),
                ("SECRETS_TTL_SECONDS", "300".to_owned()),
                ("DELIVERY_TTL_HOURS", "72".to_owned()),
                ("SHOPIFY_ACCEPT_TEST_ORDERS", "false".to_owned()),
            ]),
        ),
        (
            "outbox-publisher",
            common(&[("EVENT_BUS_NAME", bus.to_owned())]),
        ),
        (
            "stock-sync",
            common(&[
                ("STOCK_TABLE_NAME", "bench-stock".to_owned()),
                ("EVENT_BUS_NAME", bus.to_owned()),
                ("LOW_STOCK_THRESHOLD", "5".to_owned()),
            ]),
        ),
        (
            "loyalty-accrual",
            common(&[("LOYALTY_TABLE_NAME", "bench-loyalty".to_owned())]),
        ),
        (
            "outbox-relay",
            common(&[
                ("EVENT_BUS_NAME", bus.to_owned()),
                ("RELAY_MIN_AGE_SECONDS", "60".to_owned()),
                ("RELAY_BATCH_LIMIT", "500".to_owned()),
            ]),
        ),
        (
            "query-api",
            common(&[
                ("STOCK_TABLE_NAME", "bench-stock".to_owned()),
                ("LOYALTY_TABLE_NAME", "bench-loyalty".to_owned()),
                ("DELIVERIES_TABLE", "bench-deliveries".to_owned()),
                ("JWT_ISSUER", "https://issuer.invalid/".to_owned()),
                ("JWT_AUDIENCE", "pos-api".to_owned()),
                // Never fetched: the health check needs no token.
                ("JWKS_URL", "https://issuer.invalid/jwks.json".to_owned()),
                ("CURSOR_SECRET_ID", cursor_secret),
                ("GRAPHQL_MAX_DEPTH", "8".to_owned()),
                ("GRAPHQL_MAX_COMPLEXITY", "500".to_owned()),
                ("GRAPHQL_INTROSPECTION", "false".to_owned()),
                ("JWKS_MAX_STALE_HOURS", "24".to_owned()),
            ]),
        ),
        (
            "commercetools-sync",
            delivery(
                "commercetools_sync_queue",
                &[
                    ("CTP_PROJECT_KEY", "bench".to_owned()),
                    ("CTP_CLIENT_ID", "bench".to_owned()),
                    ("CTP_CLIENT_SECRET_ARN", ctp_secret),
                    ("CTP_AUTH_URL", nowhere.clone()),
                    ("CTP_API_URL", nowhere.clone()),
                    ("CTP_SCOPES", "manage_project:bench".to_owned()),
                    ("CTP_RATE_LIMIT", "10".to_owned()),
                ],
            ),
        ),
        (
            "dynamics-sync",
            delivery(
                "dynamics_sync_queue",
                &[
                    ("D365_TENANT_ID", "contoso.onmicrosoft.com".to_owned()),
                    ("D365_CLIENT_ID", "bench".to_owned()),
                    ("D365_CLIENT_SECRET_ARN", d365_secret),
                    ("D365_ENVIRONMENT_URL", nowhere.clone()),
                    ("D365_LEGAL_ENTITY", "usmf".to_owned()),
                    ("D365_CUSTOMER_ACCOUNT", "US-RETAIL".to_owned()),
                    ("D365_WAREHOUSES", String::new()),
                    ("D365_MOVEMENT_JOURNAL", "IMov".to_owned()),
                    ("D365_COUNTING_JOURNAL", "ICnt".to_owned()),
                    ("D365_RATE_LIMIT", "10".to_owned()),
                ],
            ),
        ),
        (
            "webhooks-sync",
            delivery(
                "webhooks_sync_queue",
                &[
                    ("WEBHOOKS_SECRET_ID", hooks_secret),
                    ("WEBHOOKS_DISABLE_AFTER_HOURS", "72".to_owned()),
                    ("WEBHOOKS_RATE_LIMIT", "10".to_owned()),
                ],
            ),
        ),
    ]);

    std::fs::create_dir_all(out).expect("out dir");
    for (function, module) in FUNCTIONS {
        let env = &envs[function];
        // infra/ adds these only when their Terraform variable is set (defaults: unset).
        let optional = [
            "LIGHTSPEED_CURRENCY",
            "LIGHTSPEED_REGISTERS",
            "LOYALTY_RULES",
        ];
        let missing: Vec<String> = pos_tests::infra::module_environment_keys(module)
            .into_iter()
            .filter(|k| !env.contains_key(k) && !optional.contains(&k.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "infra/ module {module} sets {missing:?}, which bench-rig does not"
        );
        let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(out.join(format!("{function}.env")), text).expect("env file");
    }

    // Ids unique to this rig run: the tables are new, but a reused moto would otherwise answer duplicates.
    let stamp = chrono::Utc::now().timestamp_millis().unsigned_abs();
    for run in 0..runs {
        for function in FUNCTIONS.map(|(f, _)| f) {
            let dir = out.join(function).join(format!("run-{run}"));
            std::fs::create_dir_all(&dir).expect("event dir");
            for n in 0..events {
                let seq = stamp * 10_000 + (run * 1_000 + n) as u64;
                let event = event_for(function, seq);
                std::fs::write(dir.join(format!("{n:03}.json")), event.to_string())
                    .expect("event file");
            }
        }
    }
    println!(
        "bench-rig: {} functions, {runs} runs of {events} events in {}",
        FUNCTIONS.len(),
        out.display()
    );
}

/// A signed 10-line Shopify order (new ids from `seq`).
fn sale(seq: u64) -> samples::SignedDelivery {
    samples::shopify(
        "orders/create",
        &format!("bench-evt-{seq}"),
        &samples::shopify_order(seq, 10),
        None,
    )
}

fn event_for(function: &str, seq: u64) -> Value {
    match function {
        "sale-capture" => sale(seq).to_apigw_event(&format!("bench-{seq}")),
        "stock-sync" | "loyalty-accrual" => {
            let envelope = samples::envelope_of(&sale(seq))
                .unwrap_or_else(|e| panic!("the bench sale is not one event: {e}"));
            let body = serde_json::to_string(&pos_shared::bus::BusMessage::new(
                format!("eb-{seq}"),
                envelope,
            ))
            .expect("bus message JSON");
            sqs_event(function, &format!("m-{seq}"), body)
        }
        "outbox-relay" => {
            json!({"job": "outbox-relay", "scheduled_at": chrono::Utc::now().to_rfc3339()})
        }
        // The stream batch of one new sale: its outbox entry's INSERT, as the filtered mapping sends it.
        "outbox-publisher" => {
            let entry = pos_shared::store::OutboxEntry {
                envelope: samples::envelope_of(&sale(seq))
                    .unwrap_or_else(|e| panic!("the bench sale is not one event: {e}")),
                status: pos_shared::store::OutboxStatus::Pending,
                created_at: chrono::Utc::now(),
            };
            let image: serde_json::Map<String, Value> =
                pos_shared::store::dynamodb::outbox_image(&entry)
                    .expect("outbox image")
                    .into_iter()
                    .map(|(k, v)| (k, json!({ "S": v })))
                    .collect();
            json!({"Records": [{
                "eventID": format!("bench-{seq}"), "eventName": "INSERT", "eventVersion": "1.1",
                "eventSource": "aws:dynamodb", "awsRegion": "eu-west-1",
                "dynamodb": {"Keys": {"pk": image["pk"], "sk": image["sk"]}, "NewImage": image,
                             "SequenceNumber": format!("{seq:021}"), "SizeBytes": 2500,
                             "StreamViewType": "NEW_IMAGE"},
                "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/bench-capture/stream/1"
            }]})
        }
        "query-api" => health(),
        _ => json!({"Records": []}),
    }
}

fn sqs_event(function: &str, id: &str, body: String) -> Value {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_owned());
    m.receipt_handle = Some(format!("receipt-{id}"));
    m.body = Some(body);
    m.event_source = Some("aws:sqs".into());
    m.event_source_arn = Some(format!(
        "arn:aws:sqs:eu-west-1:123456789012:bench-{function}"
    ));
    m.aws_region = Some("eu-west-1".into());
    m.attributes
        .insert("ApproximateReceiveCount".into(), "1".into());
    let mut event = SqsEvent::default();
    event.records.push(m);
    serde_json::to_value(event).expect("SQS event JSON")
}

/// `GET /v1/health` as API Gateway (HTTP API) delivers it.
fn health() -> Value {
    json!({
        "version": "2.0", "routeKey": "GET /v1/{proxy+}", "rawPath": "/v1/health", "rawQueryString": "",
        "headers": {"accept": "application/json"}, "isBase64Encoded": false,
        "requestContext": {"accountId": "123456789012", "apiId": "bench", "domainName": "localhost",
            "domainPrefix": "localhost", "requestId": "bench-health", "routeKey": "GET /v1/{proxy+}",
            "stage": "$default", "time": "15/Jan/2026:10:00:00 +0000", "timeEpoch": 1768471200000_u64,
            "http": {"method": "GET", "path": "/v1/health", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                "userAgent": "bench"}}
    })
}
