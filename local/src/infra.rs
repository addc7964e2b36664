//! `infra/` as data: tables, consumer queues and rules, Lambda environments as Terraform declares them.
//!
//! The local runner routes events with the rules of `infra/consumers.tf` (compiled in, see
//! [`embedded_consumer_queues`]); the tests read every file from disk ([`parsed`]).

use hcl::{Block, Body, Expression};
use std::path::{Path, PathBuf};

/// The repository's `infra/` directory.
pub fn infra_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra")
}

fn tf_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != ".terraform") {
                tf_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "tf") {
            out.push(path);
        }
    }
}

/// Every parsed `.tf` file under `infra/` (modules included), with its path.
pub fn parsed() -> Vec<(PathBuf, Body)> {
    let mut files = Vec::new();
    tf_files(&infra_dir(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let body = hcl::parse(&text)
                .unwrap_or_else(|e| panic!("{} is not valid HCL: {e}", p.display()));
            (p, body)
        })
        .collect()
}

/// All top-level blocks `kind "label0" "label1"` across `infra/`.
pub fn blocks(kind: &str) -> Vec<Block> {
    blocks_of(parsed().into_iter().map(|(_, body)| body), kind)
}

fn blocks_of(bodies: impl Iterator<Item = Body>, kind: &str) -> Vec<Block> {
    bodies
        .flat_map(|body| {
            body.into_blocks()
                .filter(|b| b.identifier() == kind)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The resource `type.name`, if declared.
pub fn resource(ty: &str, name: &str) -> Option<Block> {
    blocks("resource").into_iter().find(|b| {
        let l = b.labels();
        l.len() == 2 && l[0].as_str() == ty && l[1].as_str() == name
    })
}

/// A plain string attribute of a block.
pub fn string_attr(block: &Block, key: &str) -> Option<String> {
    block
        .body()
        .attributes()
        .find(|a| a.key() == key)
        .and_then(|a| match a.expr() {
            Expression::String(s) => Some(s.clone()),
            _ => None,
        })
}

/// An attribute's expression.
pub fn attr<'a>(block: &'a Block, key: &str) -> Option<&'a Expression> {
    block
        .body()
        .attributes()
        .find(|a| a.key() == key)
        .map(|a| a.expr())
}

/// A global secondary index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gsi {
    /// Index name.
    pub name: String,
    /// Partition key attribute.
    pub hash_key: String,
    /// Sort key attribute.
    pub range_key: Option<String>,
    /// Projection type.
    pub projection: String,
}

/// A DynamoDB table as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Partition key.
    pub hash_key: String,
    /// Sort key.
    pub range_key: Option<String>,
    /// Declared attributes (name, type).
    pub attributes: Vec<(String, String)>,
    /// GSIs.
    pub gsis: Vec<Gsi>,
    /// TTL attribute, when enabled.
    pub ttl_attribute: Option<String>,
    /// The stream's view type (`NEW_IMAGE`, ...), when the stream is enabled.
    pub stream_view: Option<String>,
}

/// The `aws_dynamodb_table` resource `name`.
pub fn table(name: &str) -> Table {
    let block = resource("aws_dynamodb_table", name)
        .unwrap_or_else(|| panic!("infra/ declares no aws_dynamodb_table.{name}"));
    let nested = |kind: &str| {
        block
            .body()
            .blocks()
            .filter(move |b| b.identifier() == kind)
            .cloned()
            .collect::<Vec<_>>()
    };
    let attributes = nested("attribute")
        .iter()
        .map(|a| {
            (
                string_attr(a, "name").unwrap_or_default(),
                string_attr(a, "type").unwrap_or_default(),
            )
        })
        .collect();
    let gsis = nested("global_secondary_index")
        .iter()
        .map(|g| Gsi {
            name: string_attr(g, "name").unwrap_or_default(),
            hash_key: string_attr(g, "hash_key").unwrap_or_default(),
            range_key: string_attr(g, "range_key"),
            projection: string_attr(g, "projection_type").unwrap_or_default(),
        })
        .collect();
    let ttl_attribute = nested("ttl")
        .first()
        .and_then(|t| string_attr(t, "attribute_name"));
    let stream_enabled = matches!(attr(&block, "stream_enabled"), Some(Expression::Bool(true)));
    Table {
        hash_key: string_attr(&block, "hash_key").unwrap_or_default(),
        range_key: string_attr(&block, "range_key"),
        attributes,
        gsis,
        ttl_attribute,
        stream_view: string_attr(&block, "stream_view_type").filter(|_| stream_enabled),
    }
}

fn object_keys(expr: &Expression, out: &mut Vec<String>) {
    match expr {
        Expression::Object(obj) => {
            for (k, v) in obj {
                out.push(k.to_string().trim_matches('"').to_owned());
                object_keys(v, out);
            }
        }
        Expression::FuncCall(call) => call.args.iter().for_each(|a| object_keys(a, out)),
        Expression::Conditional(c) => {
            object_keys(&c.true_expr, out);
            object_keys(&c.false_expr, out);
        }
        Expression::Parenthesis(e) => object_keys(e, out),
        _ => {}
    }
}

/// The environment variable names a `module "name"` passes to its function (the `environment` map),
/// including keys added conditionally.
pub fn module_environment_keys(module: &str) -> Vec<String> {
    let block = blocks("module")
        .into_iter()
        .find(|b| b.labels().first().is_some_and(|l| l.as_str() == module))
        .unwrap_or_else(|| panic!("infra/ declares no module {module}"));
    let mut keys = Vec::new();
    if let Some(env) = attr(&block, "environment") {
        object_keys(env, &mut keys);
    }
    keys.sort();
    keys.dedup();
    keys
}

/// A literal HCL expression as JSON (objects, arrays, strings, numbers, booleans; `jsonencode(x)` is x).
pub fn literal_json(expr: &Expression) -> Option<serde_json::Value> {
    use serde_json::Value;
    Some(match expr {
        Expression::Null => Value::Null,
        Expression::Bool(b) => Value::Bool(*b),
        Expression::Number(n) => serde_json::to_value(n).ok()?,
        Expression::String(s) => Value::String(s.clone()),
        Expression::Array(items) => {
            Value::Array(items.iter().map(literal_json).collect::<Option<Vec<_>>>()?)
        }
        Expression::Object(obj) => {
            let mut map = serde_json::Map::new();
            for (k, v) in obj {
                map.insert(k.to_string().trim_matches('"').to_owned(), literal_json(v)?);
            }
            Value::Object(map)
        }
        Expression::FuncCall(call) if call.name.to_string() == "jsonencode" => {
            literal_json(call.args.first()?)?
        }
        Expression::Parenthesis(e) => literal_json(e)?,
        _ => return None,
    })
}

fn number_attr(block: &Block, key: &str) -> Option<i64> {
    match attr(block, key)? {
        Expression::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// A consumer queue (`modules/consumer_queue` instance): the rule's pattern and the redrive settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerQueue {
    /// Module name, e.g. `stock_sync_queue`.
    pub module: String,
    /// The EventBridge event pattern.
    pub event_pattern: serde_json::Value,
    /// Receives before the DLQ (module default 5).
    pub max_receive_count: i64,
    /// Visibility timeout in seconds (module default 60).
    pub visibility_timeout_seconds: i64,
}

/// Every consumer queue declared in the root module.
pub fn consumer_queues() -> Vec<ConsumerQueue> {
    consumer_queues_in(&blocks("module"))
}

/// The consumer queues of `infra/consumers.tf` as compiled into this binary.
pub fn embedded_consumer_queues() -> Vec<ConsumerQueue> {
    let body = hcl::parse(include_str!("../../infra/consumers.tf"))
        .unwrap_or_else(|e| panic!("infra/consumers.tf: {e}"));
    consumer_queues_in(&blocks_of(std::iter::once(body), "module"))
}

/// The delivery functions' queues (`infra/deliveries.tf`, `dynamics.tf`, `webhooks.tf`) as compiled into this
/// binary (pos-local runs one only when the connectors file configures its destination).
pub fn embedded_delivery_queues() -> Vec<ConsumerQueue> {
    let bodies = [
        (
            "infra/deliveries.tf",
            include_str!("../../infra/deliveries.tf"),
        ),
        ("infra/dynamics.tf", include_str!("../../infra/dynamics.tf")),
        ("infra/webhooks.tf", include_str!("../../infra/webhooks.tf")),
    ]
    .into_iter()
    .map(|(name, text)| hcl::parse(text).unwrap_or_else(|e| panic!("{name}: {e}")));
    consumer_queues_in(&blocks_of(bodies, "module"))
}

fn consumer_queues_in(modules: &[Block]) -> Vec<ConsumerQueue> {
    modules
        .iter()
        .filter(|b| string_attr(b, "source").is_some_and(|s| s.ends_with("modules/consumer_queue")))
        .map(|b| ConsumerQueue {
            module: b
                .labels()
                .first()
                .map(|l| l.as_str().to_owned())
                .unwrap_or_default(),
            event_pattern: attr(b, "event_pattern")
                .and_then(literal_json)
                .unwrap_or_else(|| {
                    panic!("event_pattern of a consumer queue must be a literal jsonencode(...)")
                }),
            max_receive_count: number_attr(b, "max_receive_count").unwrap_or(5),
            visibility_timeout_seconds: number_attr(b, "visibility_timeout_seconds").unwrap_or(60),
        })
        .collect()
}

/// The consumer queue `module`.
pub fn consumer_queue(module: &str) -> ConsumerQueue {
    consumer_queues()
        .into_iter()
        .find(|q| q.module == module)
        .unwrap_or_else(|| panic!("infra/ declares no consumer queue module {module}"))
}

/// Whether a `aws_lambda_event_source_mapping` for `function_module` reports batch item failures.
pub fn mapping_reports_batch_item_failures(function_module: &str) -> bool {
    blocks("resource")
        .iter()
        .filter(|b| {
            b.labels()
                .first()
                .is_some_and(|l| l.as_str() == "aws_lambda_event_source_mapping")
        })
        .filter(|b| {
            attr(b, "function_name").is_some_and(|e| {
                e.to_string()
                    .contains(&format!("module.{function_module}."))
            })
        })
        .any(|b| {
            attr(b, "function_response_types")
                .and_then(literal_json)
                .is_some_and(|v| v == serde_json::json!(["ReportBatchItemFailures"]))
        })
}

impl ConsumerQueue {
    /// The consumer (function crate) name: `stock_sync_queue` -> `stock-sync`.
    pub fn consumer(&self) -> String {
        self.module.trim_end_matches("_queue").replace('_', "-")
    }
}

/// Whether `event` (an EventBridge event as JSON) matches `pattern`: every pattern field must match; a
/// list matches when the event's value (or any of its values, for a list) equals one of its entries;
/// an object matches the nested fields. (The subset of EventBridge patterns our rules use.)
pub fn pattern_matches(pattern: &serde_json::Value, event: &serde_json::Value) -> bool {
    use serde_json::Value;
    let Some(fields) = pattern.as_object() else {
        return false;
    };
    fields.iter().all(|(key, expected)| {
        let actual = event.get(key).unwrap_or(&Value::Null);
        match expected {
            Value::Array(allowed) => match actual {
                Value::Array(values) => values.iter().any(|v| allowed.contains(v)),
                v => allowed.contains(v),
            },
            Value::Object(_) => pattern_matches(expected, actual),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_match_like_eventbridge() {
        let p =
            json!({"source": ["pos.capture"], "detail-type": ["SaleCompleted", "ReturnCompleted"]});
        assert!(pattern_matches(
            &p,
            &json!({"source": "pos.capture", "detail-type": "ReturnCompleted", "detail": {}})
        ));
        assert!(!pattern_matches(
            &p,
            &json!({"source": "pos.capture", "detail-type": "StockLow"})
        ));
        assert!(!pattern_matches(
            &p,
            &json!({"source": "other", "detail-type": "SaleCompleted"})
        ));
        let nested = json!({"detail": {"type": ["SaleCompleted"]}});
        assert!(pattern_matches(
            &nested,
            &json!({"detail": {"type": "SaleCompleted"}})
        ));
        assert!(!pattern_matches(&nested, &json!({"detail": {}})));
    }

    #[test]
    fn the_compiled_in_rules_are_the_ones_on_disk() {
        let compiled: Vec<ConsumerQueue> = embedded_consumer_queues()
            .into_iter()
            .chain(embedded_delivery_queues())
            .collect();
        assert_eq!(compiled, consumer_queues());
        let names: Vec<String> = embedded_consumer_queues()
            .iter()
            .map(ConsumerQueue::consumer)
            .collect();
        assert_eq!(
            names,
            vec!["stock-sync".to_owned(), "loyalty-accrual".to_owned()]
        );
    }
}
