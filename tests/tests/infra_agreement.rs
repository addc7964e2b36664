//! Code and `infra/` must agree: the table keys and indexes the DynamoDB adapter writes, and the
//! environment the sale-capture function reads.

use pos_shared::store::dynamodb::{GSI_OUTBOX_PENDING, GSI_STORE, PK, SK};
use pos_tests::infra;

#[test]
fn capture_table_keys_and_indexes_match_the_adapter() {
    let t = infra::table("capture");
    assert_eq!(t.hash_key, PK);
    assert_eq!(t.range_key.as_deref(), Some(SK));
    assert_eq!(
        t.ttl_attribute.as_deref(),
        Some("expires_at"),
        "delivery records carry expires_at"
    );
    let gsi = |name: &str| {
        t.gsis
            .iter()
            .find(|g| g.name == name)
            .unwrap_or_else(|| panic!("GSI {name} missing in infra/"))
    };
    let store = gsi(GSI_STORE);
    assert_eq!(
        (store.hash_key.as_str(), store.range_key.as_deref()),
        ("gsi1pk", Some("gsi1sk"))
    );
    let pending = gsi(GSI_OUTBOX_PENDING);
    assert_eq!(
        (pending.hash_key.as_str(), pending.range_key.as_deref()),
        ("outbox_pending", Some("pending_since"))
    );
    for key in [
        PK,
        SK,
        "gsi1pk",
        "gsi1sk",
        "outbox_pending",
        "pending_since",
    ] {
        assert!(
            t.attributes.iter().any(|(n, ty)| n == key && ty == "S"),
            "attribute {key} (S) declared"
        );
    }
}

/// Every variable a config source reads, found in its source (so a new variable cannot be forgotten).
fn variables_read_by(src: &str) -> Vec<String> {
    let mut names = Vec::new();
    for call in [
        "var(\"",
        "required(\"",
        "number(\"",
        "positive(\"",
        "flag(\"",
    ] {
        for part in src.split(call).skip(1) {
            if let Some(name) = part.split('"').next()
                && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                && !name.is_empty()
            {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

fn check_environment(module: &str, config_source: &str, must_read: &[&str]) {
    let read = variables_read_by(config_source);
    for name in must_read {
        assert!(
            read.iter().any(|r| r == name),
            "the scan of {module}'s config found {read:?}"
        );
    }
    let set = infra::module_environment_keys(module);
    // Only the embedded (local) backend reads these; the deployed function runs the AWS backend.
    let local_only = ["POS_DATA_DIR", "POS_SECRETS_FILE", "JWKS_FILE"];
    for name in read.iter().filter(|n| !local_only.contains(&n.as_str())) {
        assert!(
            set.contains(name),
            "infra/ does not set {name} for {module} (sets {set:?})"
        );
    }
    for name in &set {
        assert!(
            read.contains(name) || name == "RUST_LOG",
            "infra/ sets {name} for {module}, which the code never reads"
        );
    }
}

#[test]
fn sale_capture_environment_covers_what_the_code_reads() {
    check_environment(
        "sale_capture",
        include_str!("../../shared/src/config.rs"),
        &["TABLE_NAME", "SECRET_ID"],
    );
}

#[test]
fn stock_sync_environment_covers_what_the_code_reads() {
    check_environment(
        "stock_sync",
        include_str!("../../shared/src/stock/config.rs"),
        &["STOCK_TABLE_NAME"],
    );
}

#[test]
fn loyalty_accrual_environment_covers_what_the_code_reads() {
    check_environment(
        "loyalty_accrual",
        include_str!("../../shared/src/loyalty/config.rs"),
        &["LOYALTY_TABLE_NAME"],
    );
}

#[test]
fn outbox_relay_environment_covers_what_the_code_reads() {
    check_environment(
        "outbox_relay",
        include_str!("../../shared/src/outbox/config.rs"),
        &["RELAY_MIN_AGE_SECONDS"],
    );
}

#[test]
fn query_api_environment_covers_what_the_code_reads() {
    check_environment(
        "query_api",
        include_str!("../../shared/src/api/config.rs"),
        &[
            "TABLE_NAME",
            "STOCK_TABLE_NAME",
            "LOYALTY_TABLE_NAME",
            "JWT_ISSUER",
            "JWKS_URL",
            "CURSOR_SECRET_ID",
            "GRAPHQL_INTROSPECTION",
        ],
    );
}

#[test]
fn the_outbox_relay_is_scheduled_with_the_input_it_parses() {
    let schedule = infra::resource("aws_scheduler_schedule", "outbox_relay").expect("schedule");
    let target = schedule
        .body()
        .blocks()
        .find(|b| b.identifier() == "target")
        .expect("target")
        .clone();
    let input = infra::attr(&target, "input")
        .and_then(infra::literal_json)
        .expect("literal input");
    let job: pos_shared::outbox::ScheduledJob =
        serde_json::from_value(input).expect("the function parses the input");
    assert_eq!(job.job, "outbox-relay");
    assert!(
        target
            .body()
            .blocks()
            .any(|b| b.identifier() == "dead_letter_config"),
        "failed runs are kept"
    );
}

#[test]
fn loyalty_table_keys_match_the_ledger() {
    let t = infra::table("loyalty");
    assert_eq!(
        (t.hash_key.as_str(), t.range_key.as_deref()),
        ("pk", Some("sk"))
    );
}

#[test]
fn stock_table_keys_match_the_ledger() {
    let t = infra::table("stock");
    assert_eq!(
        (t.hash_key.as_str(), t.range_key.as_deref()),
        ("pk", Some("sk"))
    );
    assert_eq!(
        t.ttl_attribute.as_deref(),
        Some("expires_at"),
        "applied markers expire"
    );
}

#[test]
fn every_consumer_queue_has_a_dlq_and_its_mapping_reports_batch_item_failures() {
    let queues = infra::consumer_queues();
    assert!(!queues.is_empty());
    for q in &queues {
        assert!(q.max_receive_count >= 1, "{} redrives to its DLQ", q.module);
        let function = q.module.trim_end_matches("_queue");
        assert!(
            infra::mapping_reports_batch_item_failures(function),
            "{function}'s mapping must report batch item failures"
        );
    }
    let stock = infra::consumer_queue("stock_sync_queue");
    assert_eq!(
        stock.event_pattern["detail-type"],
        serde_json::json!(["SaleCompleted", "ReturnCompleted"])
    );
    assert_eq!(
        stock.event_pattern["source"],
        serde_json::json!([pos_shared::bus::EVENT_SOURCE])
    );
}

#[test]
fn every_function_crate_has_a_lambda_module_and_vice_versa() {
    let functions_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    let mut crates: Vec<String> = std::fs::read_dir(functions_dir)
        .expect("functions/")
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().replace('-', "_"))
        .collect();
    crates.sort();
    let mut modules: Vec<String> = infra::blocks("module")
        .iter()
        .filter(|b| {
            infra::string_attr(b, "source").is_some_and(|s| s.ends_with("modules/lambda_function"))
        })
        .filter_map(|b| b.labels().first().map(|l| l.as_str().to_owned()))
        .collect();
    modules.sort();
    assert_eq!(
        crates, modules,
        "functions/ crates and infra/ Lambda modules must match one to one"
    );
}

/// The keys of a `locals { name = { ... } }` map.
fn local_map_keys(name: &str) -> Vec<String> {
    let mut keys: Vec<String> = infra::blocks("locals")
        .iter()
        .filter_map(|b| infra::attr(b, name).cloned())
        .flat_map(|e| match e {
            hcl::Expression::Object(obj) => obj
                .keys()
                .map(|k| k.to_string().trim_matches('"').to_owned())
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    keys.sort();
    keys
}

#[test]
fn every_function_and_consumer_queue_is_alarmed() {
    let mut functions: Vec<String> = infra::blocks("module")
        .iter()
        .filter(|b| {
            infra::string_attr(b, "source").is_some_and(|s| s.ends_with("modules/lambda_function"))
        })
        .filter_map(|b| b.labels().first().map(|l| l.as_str().to_owned()))
        .collect();
    functions.sort();
    assert_eq!(
        local_map_keys("functions"),
        functions,
        "locals.functions in monitoring.tf drives the error/throttle alarms"
    );
    let mut consumers: Vec<String> = infra::consumer_queues()
        .iter()
        .map(|q| q.module.trim_end_matches("_queue").to_owned())
        .collect();
    consumers.sort();
    assert_eq!(
        local_map_keys("consumer_queues"),
        consumers,
        "locals.consumer_queues drives the DLQ and age alarms"
    );
}

#[test]
fn consumer_queues_are_named_after_their_consumer() {
    for q in infra::blocks("module").iter().filter(|b| {
        infra::string_attr(b, "source").is_some_and(|s| s.ends_with("modules/consumer_queue"))
    }) {
        let module = q
            .labels()
            .first()
            .map(|l| l.as_str().to_owned())
            .unwrap_or_default();
        let consumer = module.trim_end_matches("_queue").replace('_', "-");
        let name = infra::attr(q, "name")
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            name.ends_with(&format!("-{consumer}\"")),
            "module {module} names its queue {name}; expected …-{consumer}"
        );
        let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../functions")
            .join(&consumer);
        assert!(
            crate_dir.join("Cargo.toml").exists(),
            "queue {module} feeds functions/{consumer}, which does not exist"
        );
    }
}

/// The route keys of an `aws_apigatewayv2_route` declared with `for_each = toset([...])`.
fn route_keys(name: &str) -> Vec<String> {
    let block = infra::resource("aws_apigatewayv2_route", name)
        .unwrap_or_else(|| panic!("aws_apigatewayv2_route.{name} in infra/api.tf"));
    let keys = match infra::attr(&block, "for_each") {
        Some(hcl::Expression::FuncCall(call)) if call.name.to_string() == "toset" => call
            .args
            .first()
            .and_then(infra::literal_json)
            .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok()),
        _ => None,
    };
    keys.unwrap_or_else(|| panic!("{name}: for_each = toset([literal route keys])"))
}

#[test]
fn read_api_routes_are_behind_the_jwt_authorizer_and_cover_the_router() {
    let protected = route_keys("read_api");
    let public = route_keys("read_api_public");
    let auth_of = |name: &str| {
        infra::resource("aws_apigatewayv2_route", name)
            .and_then(|b| infra::string_attr(&b, "authorization_type"))
    };
    assert_eq!(auth_of("read_api").as_deref(), Some("JWT"));
    assert_eq!(auth_of("read_api_public").as_deref(), Some("NONE"));
    assert!(
        protected.contains(&"POST /graphql".to_owned()),
        "{protected:?}"
    );
    let authorizer = infra::resource("aws_apigatewayv2_authorizer", "jwt").expect("authorizer");
    assert_eq!(
        infra::string_attr(&authorizer, "authorizer_type").as_deref(),
        Some("JWT")
    );

    // Every documented path is routed; only paths the document marks unauthenticated are public.
    let doc: serde_json::Value =
        serde_json::from_str(&pos_shared::api::openapi_json()).expect("openapi");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, ops) in paths {
        for (method, op) in ops.as_object().expect("operations") {
            let key = format!("{} {path}", method.to_uppercase());
            let needs_token = op.get("security").is_some();
            if public.contains(&key) {
                assert!(
                    !needs_token,
                    "{key} needs a token but infra/ makes it public"
                );
                continue;
            }
            let covered = protected.iter().any(|r| {
                r.strip_suffix("{proxy+}")
                    .is_some_and(|prefix| key.starts_with(prefix))
                    || *r == key
            });
            assert!(
                covered,
                "{key} is not routed by infra/ (routes {protected:?} {public:?})"
            );
        }
    }
    // The document does not describe itself; it is public so clients and gateways can fetch it.
    for key in public.iter().filter(|k| *k != "GET /v1/openapi.json") {
        let (method, path) = key.split_once(' ').expect("METHOD /path");
        assert!(
            paths
                .get(path)
                .and_then(|ops| ops.get(method.to_lowercase()))
                .is_some_and(|op| op.get("security").is_none()),
            "{key} is public in infra/ but not an unauthenticated route of the API"
        );
    }
}
