//! A `moto_server` per test, on a free loopback port, killed when the handle drops.
//!
//! When moto is not installed the tests skip with a message, unless `POS_REQUIRE_MOTO=1` (set by
//! `scripts/test.sh`, which installs it), where a missing moto fails the run.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

impl Moto {
    /// Starts moto, or returns `None` (skip) when it is not installed and not required.
    pub fn start() -> Option<Moto> {
        let port = free_port();
        let spawned = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("POS_REQUIRE_MOTO").is_ok_and(|v| v == "1") {
                    panic!(
                        "moto_server is required (POS_REQUIRE_MOTO=1) but cannot start: {e}; pip install 'moto[server]'"
                    );
                }
                eprintln!(
                    "SKIP: moto_server not available ({e}); run ./scripts/test.sh to install it"
                );
                return None;
            }
        };
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(moto)
    }

    /// SDK configuration for this server (dummy credentials, fixed region).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "moto",
            ))
            .load()
            .await
    }
}

/// Creates table `name` exactly as `infra/` declares `aws_dynamodb_table.<resource>` (keys, attributes,
/// GSIs; on-demand billing).
pub async fn create_table_from_infra(ddb: &aws_sdk_dynamodb::Client, name: &str, resource: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType,
    };
    let def = crate::infra::table(resource);
    let key = |attr: &str, kt: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(attr)
            .key_type(kt)
            .build()
            .unwrap_or_else(|e| panic!("key {attr}: {e}"))
    };
    let mut req = ddb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for (attr, ty) in &def.attributes {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attr)
                .attribute_type(ScalarAttributeType::from(ty.as_str()))
                .build()
                .unwrap_or_else(|e| panic!("attribute {attr}: {e}")),
        );
    }
    req = req.key_schema(key(&def.hash_key, KeyType::Hash));
    if let Some(range) = &def.range_key {
        req = req.key_schema(key(range, KeyType::Range));
    }
    for gsi in &def.gsis {
        let mut g = GlobalSecondaryIndex::builder()
            .index_name(&gsi.name)
            .key_schema(key(&gsi.hash_key, KeyType::Hash))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::from(gsi.projection.as_str()))
                    .build(),
            );
        if let Some(range) = &gsi.range_key {
            g = g.key_schema(key(range, KeyType::Range));
        }
        req = req.global_secondary_indexes(
            g.build()
                .unwrap_or_else(|e| panic!("gsi {}: {e}", gsi.name)),
        );
    }
    if let Some(view) = &def.stream_view {
        req = req.stream_specification(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::from(view.as_str()))
                .build()
                .unwrap_or_else(|e| panic!("stream of {name}: {e}")),
        );
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("CreateTable {name} from infra {resource}: {e}"));
}

/// Reads a table's DynamoDB stream the way Lambda's event source mapping does, straight from moto's
/// `DynamoDBStreams` API, and returns the records not read before (`seen` counts them) as the event
/// Lambda would deliver: `{"Records": [...]}`, each with its `eventSourceARN`.
pub async fn stream_event(endpoint: &str, table: &str, seen: &mut usize) -> serde_json::Value {
    let http = reqwest::Client::new();
    let call = |target: &'static str, body: serde_json::Value| {
        let http = http.clone();
        let url = endpoint.to_owned();
        async move {
            let resp = http
                .post(url)
                .header("content-type", "application/x-amz-json-1.0")
                .header("x-amz-target", target)
                // moto routes on the credential scope; it checks no signature.
                .header(
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=test/20260101/eu-west-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
                )
                .body(body.to_string())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{target}: {e}"));
            let status = resp.status();
            let json: serde_json::Value = resp
                .json()
                .await
                .unwrap_or_else(|e| panic!("{target}: {e}"));
            assert!(status.is_success(), "{target}: {status} {json}");
            json
        }
    };
    let table_desc = call(
        "DynamoDB_20120810.DescribeTable",
        serde_json::json!({ "TableName": table }),
    )
    .await;
    let arn = table_desc["Table"]["LatestStreamArn"]
        .as_str()
        .unwrap_or_else(|| panic!("{table} has no stream: {table_desc}"))
        .to_owned();
    let stream = call(
        "DynamoDBStreams_20120810.DescribeStream",
        serde_json::json!({ "StreamArn": arn }),
    )
    .await;
    let mut records = Vec::new();
    for shard in stream["StreamDescription"]["Shards"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let iterator = call(
            "DynamoDBStreams_20120810.GetShardIterator",
            serde_json::json!({"StreamArn": arn, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .await;
        let page = call(
            "DynamoDBStreams_20120810.GetRecords",
            serde_json::json!({ "ShardIterator": iterator["ShardIterator"] }),
        )
        .await;
        records.extend(page["Records"].as_array().cloned().unwrap_or_default());
    }
    let fresh: Vec<serde_json::Value> = records
        .into_iter()
        .skip(*seen)
        .map(|mut r| {
            r["eventSourceARN"] = serde_json::Value::String(arn.clone());
            r
        })
        .collect();
    *seen += fresh.len();
    serde_json::json!({ "Records": fresh })
}

/// Counts DynamoDB operations (one per call, retries excluded): what a request-count test asserts.
#[derive(Debug, Default, Clone)]
pub struct CountRequests(pub std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl aws_sdk_dynamodb::config::Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }
    fn read_before_execution(
        &self,
        _context: &aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef<
            '_,
        >,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

impl CountRequests {
    /// A DynamoDB client on `sdk` whose every operation this counter counts.
    pub fn client(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .interceptor(self.clone())
                .build(),
        )
    }

    /// The operations counted since the last call.
    pub fn take(&self) -> usize {
        self.0.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

/// The capture table's stream as `outbox-publisher`'s event source mapping reads it: each
/// [`OutboxStream::publish`] hands the records written since the last one to the publisher, like one
/// Lambda invocation. [`OutboxStream::rewind`] replays from the start, as Lambda does after a failure.
pub struct OutboxStream {
    endpoint: String,
    table: String,
    seen: tokio::sync::Mutex<usize>,
}

impl OutboxStream {
    /// The stream of `table` on the moto at `endpoint`.
    pub fn new(endpoint: &str, table: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            table: table.to_owned(),
            seen: tokio::sync::Mutex::new(0),
        }
    }

    /// The records written since the last call, as the Lambda event.
    pub async fn next_event(&self) -> aws_lambda_events::dynamodb::Event {
        let mut seen = self.seen.lock().await;
        let json = stream_event(&self.endpoint, &self.table, &mut seen).await;
        serde_json::from_value(json).unwrap_or_else(|e| panic!("a DynamoDB stream event: {e}"))
    }

    /// Reads from the start again.
    pub async fn rewind(&self) {
        *self.seen.lock().await = 0;
    }

    /// One invocation of the publisher on the new records.
    pub async fn publish(
        &self,
        publisher: &pos_shared::outbox::OutboxRelay,
    ) -> aws_lambda_events::streams::DynamoDbEventResponse {
        publisher.publish_stream(&self.next_event().await).await
    }
}

/// `outbox-publisher` on moto: the capture table `table` (marks) and the bus `bus`, over `ddb` and an
/// EventBridge client of `sdk` counted by `counter` when given.
pub fn outbox_publisher(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    sdk: &aws_config::SdkConfig,
    bus: &str,
    counter: Option<&CountRequests>,
) -> pos_shared::outbox::OutboxRelay {
    let store = std::sync::Arc::new(pos_shared::store::dynamodb::DynamoStore::new(
        ddb.clone(),
        table,
    ));
    let mut eb = aws_sdk_eventbridge::config::Builder::from(sdk);
    if let Some(c) = counter {
        eb = eb.interceptor(c.clone());
    }
    pos_shared::outbox::OutboxRelay::new(
        store.clone(),
        store,
        std::sync::Arc::new(pos_shared::bus::eventbridge::EventBridgePublisher::new(
            aws_sdk_eventbridge::Client::from_conf(eb.build()),
            bus,
        )),
        std::sync::Arc::new(pos_shared::ports::SystemClock),
        chrono::Duration::seconds(60),
        0,
        std::sync::Arc::new(pos_shared::metrics::Metrics::new(
            "outbox-publisher",
            pos_shared::metrics::Sink::Off,
        )),
    )
}
