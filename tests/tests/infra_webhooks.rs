//! webhooks-sync and `infra/webhooks.tf` agree: the environment the code reads, the queue's receive
//! limit and the concurrency cap, the rule covering every event type a subscription may take, the
//! IAM grant covering the items the adapters touch, and the disabled-endpoint alarm watching the metric
//! as the fan-out emits it.

use pos_local::infra;
use pos_shared::delivery::webhooks::{ENDPOINT_DISABLED_METRIC, EVENT_TYPES};
use pos_shared::delivery::webhooks_config::FUNCTION;

/// The raw text of a string or template expression, else the expression as HCL.
fn raw(expr: &hcl::Expression) -> String {
    match expr {
        hcl::Expression::String(s) => s.clone(),
        hcl::Expression::TemplateExpr(t) => t.to_string(),
        other => other.to_string(),
    }
}

fn module(name: &str) -> hcl::Block {
    infra::blocks("module")
        .into_iter()
        .find(|b| b.labels().first().is_some_and(|l| l.as_str() == name))
        .unwrap_or_else(|| panic!("infra/ declares no module {name}"))
}

fn nested<'a>(block: &'a hcl::Block, kind: &'a str) -> impl Iterator<Item = &'a hcl::Block> + 'a {
    block
        .body()
        .blocks()
        .filter(move |b| b.identifier() == kind)
}

/// Every `"UPPER_CASE"` literal of the configuration code (its tests aside): the variables it reads.
fn variables_read_by(src: &str) -> Vec<String> {
    let code = src.split("#[cfg(test)]").next().unwrap_or_default();
    let mut names: Vec<String> = code
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.len() > 3
                && s.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn webhooks_sync_environment_covers_what_the_code_reads() {
    let mut read = variables_read_by(include_str!("../../shared/src/delivery/webhooks_config.rs"));
    // Only the embedded (`cargo lambda watch`) backend reads these: on AWS the subscriptions come from
    // the table and their keys from the secret, never from a file.
    let local_only = ["POS_DATA_DIR", "POS_CONNECTORS_FILE"];
    read.retain(|n| !local_only.contains(&n.as_str()));
    for name in [
        "POS_BACKEND",
        "DELIVERIES_TABLE",
        "TABLE_NAME",
        "QUEUE_URL",
        "DLQ_URL",
        "MAX_RECEIVES",
        "WEBHOOKS_SECRET_ID",
        "WEBHOOKS_DISABLE_AFTER_HOURS",
        "WEBHOOKS_RATE_LIMIT",
    ] {
        assert!(read.iter().any(|r| r == name), "the scan found {read:?}");
    }
    let set = infra::module_environment_keys("webhooks_sync");
    for name in &read {
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

/// The function gives a record up on the receive the redrive policy would move it, so both must be the
/// same number; the event source mapping caps concurrency and reports partial failures.
#[test]
fn webhooks_sync_knows_its_queues_receive_limit_and_is_capped() {
    let queue = module("webhooks_sync_queue");
    let function = module("webhooks_sync");
    let limit = raw(infra::attr(&queue, "max_receive_count").expect("max_receive_count"));
    let env = raw(infra::attr(&function, "environment").expect("environment"));
    assert!(
        env.contains(&format!("MAX_RECEIVES = tostring({limit})"))
            || env.contains(&format!("\"MAX_RECEIVES\" = tostring({limit})")),
        "MAX_RECEIVES must be the queue's max_receive_count ({limit}): {env}"
    );
    let mapping =
        infra::resource("aws_lambda_event_source_mapping", "webhooks_sync").expect("mapping");
    let scaling = nested(&mapping, "scaling_config")
        .next()
        .expect("scaling_config: the cap across instances");
    assert!(
        infra::attr(scaling, "maximum_concurrency")
            .map(raw)
            .is_some_and(|c| c.contains("var.webhooks_max_concurrency")),
    );
    assert!(infra::mapping_reports_batch_item_failures("webhooks_sync"));
}

#[test]
fn the_rule_takes_every_event_type_a_subscription_may_filter_on() {
    let queue = infra::consumer_queue("webhooks_sync_queue");
    for detail_type in EVENT_TYPES {
        let event = serde_json::json!({"source": pos_shared::bus::EVENT_SOURCE, "detail-type": detail_type});
        assert!(
            infra::pattern_matches(&queue.event_pattern, &event),
            "the rule misses {detail_type}: {}",
            queue.event_pattern
        );
    }
    let types = queue.event_pattern["detail-type"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(types.len(), EVENT_TYPES.len(), "no type we never publish");
}

#[test]
fn the_function_may_touch_exactly_the_items_its_adapters_use() {
    let function = module("webhooks_sync");
    let statements = raw(infra::attr(&function, "policy_statements").expect("statements"));
    for key in [
        "\"EVENT#*\"",
        "\"BREAKER#*\"",
        "\"ENDPOINT#*\"",
        &format!(
            "\"{}\"",
            pos_shared::delivery::subscriptions::SUBSCRIPTIONS_PK
        ),
        "\"LINES#*\"",
        "dynamodb:Query",
        "sqs:ChangeMessageVisibility",
        "aws_secretsmanager_secret.webhooks.arn",
        "module.webhooks_sync_queue.dlq_arn",
    ] {
        assert!(statements.contains(key), "{key} not granted: {statements}");
    }
    assert!(
        !statements.contains("dynamodb:Scan") && !statements.contains("\"*\""),
        "least privilege: {statements}"
    );
}

#[test]
fn the_disabled_alarm_watches_the_metric_as_the_fanout_emits_it() {
    use pos_shared::metrics::{Metrics, NAMESPACE, Sink, Unit};
    let alarm = infra::resource("aws_cloudwatch_metric_alarm", "webhook_endpoint_disabled")
        .expect("the disabled-endpoint alarm in infra/webhooks.tf");
    let query = nested(&alarm, "metric_query")
        .next()
        .expect("a Metrics Insights query (subscriptions are not known to Terraform)");
    let expression = raw(infra::attr(query, "expression").expect("expression"));
    let doc = Metrics::new(FUNCTION, Sink::Memory(Default::default())).document_with(
        Some(("subscription", "erp")),
        &[(ENDPOINT_DISABLED_METRIC, Unit::Count, 1.0)],
        0,
    );
    let directive = &doc["_aws"]["CloudWatchMetrics"][0];
    let dimensions: Vec<&str> = directive["Dimensions"][0]
        .as_array()
        .map(|d| d.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(dimensions, ["function", "subscription"]);
    let expected = format!(
        "SELECT SUM({ENDPOINT_DISABLED_METRIC}) FROM SCHEMA({NAMESPACE}, {}) WHERE function = '{}'",
        dimensions.join(", "),
        doc["function"].as_str().unwrap_or("?")
    );
    assert_eq!(expression, expected);
    assert_eq!(
        infra::attr(query, "return_data").map(raw).as_deref(),
        Some("true")
    );
    assert!(
        raw(infra::attr(&alarm, "alarm_actions").expect("actions"))
            .contains("aws_sns_topic.alarms"),
        "it notifies"
    );
    assert_eq!(
        infra::attr(&alarm, "threshold").map(raw).as_deref(),
        Some("0")
    );
}

#[test]
fn the_breaker_alarm_watches_every_subscriptions_breaker_as_the_engine_emits_it() {
    use pos_shared::delivery::engine::BREAKER_OPENED;
    use pos_shared::metrics::{Metrics, NAMESPACE, Sink, Unit};
    let alarm = infra::resource("aws_cloudwatch_metric_alarm", "webhooks_breaker_open")
        .expect("the webhooks breaker alarm in infra/webhooks.tf");
    let query = nested(&alarm, "metric_query")
        .next()
        .expect("a Metrics Insights query (one breaker per subscription, unknown to Terraform)");
    let expression = raw(infra::attr(query, "expression").expect("expression"));
    // As the engine emits it for a subscription's deliverer (`destination` = `webhooks:{id}`).
    let doc = Metrics::new(FUNCTION, Sink::Memory(Default::default())).document_with(
        Some(("destination", "webhooks:erp")),
        &[(BREAKER_OPENED, Unit::Count, 1.0)],
        0,
    );
    let dimensions: Vec<&str> = doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]
        .as_array()
        .map(|d| d.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert!(dimensions.contains(&"destination"), "{dimensions:?}");
    let expected = format!(
        "SELECT SUM({BREAKER_OPENED}) FROM SCHEMA({NAMESPACE}, {}) WHERE function = '{}'",
        dimensions.join(", "),
        doc["function"].as_str().unwrap_or("?")
    );
    assert_eq!(expression, expected);
    assert_eq!(
        infra::attr(query, "return_data").map(raw).as_deref(),
        Some("true")
    );
    assert!(
        raw(infra::attr(&alarm, "alarm_actions").expect("actions"))
            .contains("aws_sns_topic.alarms"),
        "it notifies"
    );
    assert_eq!(
        infra::attr(&alarm, "threshold").map(raw).as_deref(),
        Some("0")
    );
}

/// The `age_alarm_seconds` of a `locals.consumer_queues` entry, if it sets one.
fn age_alarm_seconds(consumer: &str) -> Option<u64> {
    infra::blocks("locals")
        .iter()
        .filter_map(|b| infra::attr(b, "consumer_queues").cloned())
        .find_map(|e| match e {
            hcl::Expression::Object(queues) => queues
                .iter()
                .find(|(k, _)| k.to_string().trim_matches('"') == consumer)
                .and_then(|(_, v)| match v {
                    hcl::Expression::Object(entry) => entry
                        .iter()
                        .find(|(k, _)| k.to_string().trim_matches('"') == "age_alarm_seconds")
                        .and_then(|(_, v)| match v {
                            hcl::Expression::Number(n) => n.as_u64(),
                            _ => None,
                        }),
                    _ => None,
                }),
            _ => None,
        })
}

#[test]
fn the_webhooks_queue_age_alarm_waits_out_the_specs_schedule() {
    use pos_shared::delivery::retry::STANDARD_WEBHOOKS;
    let alarm = infra::resource("aws_cloudwatch_metric_alarm", "queue_age")
        .expect("the queue age alarm in infra/monitoring.tf");
    let threshold = raw(infra::attr(&alarm, "threshold").expect("threshold"));
    assert!(
        threshold.contains("age_alarm_seconds") && threshold.contains("300"),
        "per queue, 5 minutes by default: {threshold}"
    );
    // A record of a failing subscription waits on the schedule by design: the oldest message may be as
    // old as every delay together before it is delivered or dead-lettered (the DLQ alarm's turn).
    let schedule: u64 = STANDARD_WEBHOOKS.0.iter().map(|d| d.as_secs()).sum();
    let webhooks =
        age_alarm_seconds("webhooks_sync").expect("webhooks_sync sets age_alarm_seconds");
    assert!(
        webhooks > schedule,
        "{webhooks} s <= the schedule's {schedule} s"
    );
    // Within the queue's retention (4 days), or the message would be dropped before the alarm.
    assert!(webhooks < 345_600, "{webhooks}");
    for other in [
        "stock_sync",
        "loyalty_accrual",
        "commercetools_sync",
        "dynamics_sync",
    ] {
        assert_eq!(age_alarm_seconds(other), None, "{other} keeps the default");
    }
}
