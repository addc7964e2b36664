//! infra/dynamics.tf against the code of dynamics-sync: the environment it sets is what the code reads,
//! the receive limit the function knows is the queue's, the event source mapping is capped, and the
//! breaker alarm watches the metric the engine emits with the right dimensions.

use pos_shared::delivery::dynamics_config::FUNCTION;
use pos_shared::metrics::{Metrics, NAMESPACE, Sink, Unit};
use pos_tests::infra;

/// Every upper-case variable a source reads through one of its readers (its tests aside).
fn variables_read_by(src: &str) -> Vec<String> {
    let src = src.split("#[cfg(test)]").next().unwrap_or_default();
    let mut names = Vec::new();
    for call in [
        "var(\"",
        "required(\"",
        "positive(\"",
        "get(\"",
        "journal(\"",
    ] {
        for part in src.split(call).skip(1) {
            if let Some(name) = part.split('"').next()
                && !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

fn module(name: &str) -> hcl::Block {
    infra::blocks("module")
        .into_iter()
        .find(|b| b.labels().first().is_some_and(|l| l.as_str() == name))
        .unwrap_or_else(|| panic!("module {name}"))
}

fn raw(expr: &hcl::Expression) -> String {
    hcl::format::to_string(expr).unwrap_or_default()
}

#[test]
fn dynamics_sync_environment_covers_what_the_code_reads() {
    let mut read = variables_read_by(include_str!("../../shared/src/delivery/dynamics_config.rs"));
    read.extend(variables_read_by(include_str!(
        "../../shared/src/delivery/dynamics.rs"
    )));
    read.extend(variables_read_by(include_str!(
        "../../shared/src/delivery/aws_env.rs"
    )));
    // Only the embedded (local) backend reads these: on AWS the secret comes from
    // D365_CLIENT_SECRET_ARN, never from the environment.
    let local_only = ["POS_DATA_DIR", "D365_CLIENT_SECRET"];
    read.retain(|n| !local_only.contains(&n.as_str()));
    for name in [
        "DELIVERIES_TABLE",
        "TABLE_NAME",
        "QUEUE_URL",
        "DLQ_URL",
        "MAX_RECEIVES",
        "D365_TENANT_ID",
        "D365_CLIENT_SECRET_ARN",
        "D365_ENVIRONMENT_URL",
        "D365_RATE_LIMIT",
        "D365_MOVEMENT_JOURNAL",
        "POS_BACKEND",
    ] {
        assert!(
            read.iter().any(|r| r == name),
            "{name} not found in {read:?}"
        );
    }
    let set = infra::module_environment_keys("dynamics_sync");
    // D365_AUTH_URL is Entra ID's by default; only tests point it elsewhere.
    for name in read.iter().filter(|n| *n != "D365_AUTH_URL") {
        assert!(
            set.contains(name),
            "infra/ does not set {name} (sets {set:?})"
        );
    }
    for name in &set {
        assert!(
            read.contains(name) || name == "RUST_LOG",
            "infra/ sets {name}, which the code never reads"
        );
    }
}

#[test]
fn dynamics_sync_knows_its_queues_receive_limit_and_is_capped() {
    let queue = module("dynamics_sync_queue");
    let function = module("dynamics_sync");
    let limit = raw(infra::attr(&queue, "max_receive_count").expect("max_receive_count"));
    let env = raw(infra::attr(&function, "environment").expect("environment"));
    assert!(
        env.contains(&format!("tostring({limit})")),
        "MAX_RECEIVES must be the queue's max_receive_count ({limit}): {env}"
    );
    let mapping =
        infra::resource("aws_lambda_event_source_mapping", "dynamics_sync").expect("mapping");
    let scaling = mapping
        .body()
        .blocks()
        .find(|b| b.identifier() == "scaling_config")
        .expect("scaling_config: the cap across instances");
    assert_eq!(
        infra::attr(scaling, "maximum_concurrency")
            .map(raw)
            .as_deref(),
        Some("var.dynamics_max_concurrency")
    );
    assert!(infra::mapping_reports_batch_item_failures("dynamics_sync"));
}

#[test]
fn the_dynamics_breaker_alarm_watches_the_metric_the_engine_emits() {
    let alarm = infra::resource("aws_cloudwatch_metric_alarm", "dynamics_breaker_open")
        .expect("the breaker alarm in infra/dynamics.tf");
    assert_eq!(
        infra::string_attr(&alarm, "namespace").as_deref(),
        Some(NAMESPACE)
    );
    assert_eq!(
        infra::string_attr(&alarm, "metric_name").as_deref(),
        Some(pos_shared::delivery::engine::BREAKER_OPENED)
    );
    let dims = raw(infra::attr(&alarm, "dimensions").expect("dimensions"));
    let metrics = Metrics::new(FUNCTION, Sink::Memory(Default::default()));
    let doc = metrics.document_with(
        Some(("destination", "dynamics")),
        &[(
            pos_shared::delivery::engine::BREAKER_OPENED,
            Unit::Count,
            1.0,
        )],
        0,
    );
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["function", "destination"]])
    );
    assert!(dims.contains("\"dynamics-sync\""), "{dims}");
    assert!(dims.contains("\"dynamics\""), "{dims}");
    assert_eq!(doc["function"], "dynamics-sync");
}
