//! Metrics in CloudWatch Embedded Metric Format (EMF): one JSON document per invocation written to
//! stdout, which CloudWatch Logs turns into metrics with no API call (no latency, no extra permission).
//!
//! Namespace `PosPlatform`, dimension `function`. Names in use:
//! - sale-capture: `Captured`, `Duplicates`, `Ignored`, `SignatureFailures`, `Quarantined`, `Rejected`,
//!   `Failures`, `HandlerLatency` (ms);
//! - consumers, per batch: `BatchRecords`, `RecordFailures`, `PoisonRecords`, `HandlerLatency`; per record:
//!   stock-sync `StockUpdates`, `StockNegative`, `Duplicates`, `Failures`, `NotificationFailures`;
//!   loyalty-accrual `PointsAccrued`, `PointsReversed`, `NoMember`, `NotEarning`, `NothingToReverse`,
//!   `Duplicates`.
//! - delivery functions, with a second dimension `destination`: `Delivered`, `Retried`, `Failed`,
//!   `BreakerOpened`, `DeliveryLatency` (ms).
//! - webhooks out: `WebhookEndpointDisabled`, with the extra dimension `subscription`
//!   ([`Metrics::emit_with`]).

use serde_json::{Map, Value, json};
use std::sync::Mutex;

/// CloudWatch namespace of every platform metric.
pub const NAMESPACE: &str = "PosPlatform";

/// Metric units used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count.
    Count,
    /// Milliseconds.
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// Where EMF documents go.
#[derive(Debug)]
pub enum Sink {
    /// stdout (Lambda: CloudWatch Logs).
    Stdout,
    /// Kept in memory (tests).
    Memory(Mutex<Vec<Value>>),
    /// Dropped (local runs where nobody collects them).
    Off,
}

/// Emits EMF documents for one function.
#[derive(Debug)]
pub struct Metrics {
    function: String,
    sink: Sink,
}

impl Metrics {
    /// Metrics of `function` written to `sink`.
    pub fn new(function: impl Into<String>, sink: Sink) -> Self {
        Self {
            function: function.into(),
            sink,
        }
    }

    /// The EMF document for `values` at `timestamp_ms`.
    pub fn document(&self, values: &[(&str, Unit, f64)], timestamp_ms: i64) -> Value {
        self.document_with(None, values, timestamp_ms)
    }

    /// The EMF document for `values` at `timestamp_ms`, with one more dimension beside `function`
    /// (`("destination", "commercetools")`).
    pub fn document_with(
        &self,
        extra: Option<(&str, &str)>,
        values: &[(&str, Unit, f64)],
        timestamp_ms: i64,
    ) -> Value {
        let definitions: Vec<Value> = values
            .iter()
            .map(|(n, u, _)| json!({"Name": n, "Unit": u.as_str()}))
            .collect();
        let dimensions: Vec<&str> = std::iter::once("function")
            .chain(extra.map(|(name, _)| name))
            .collect();
        let mut doc = Map::new();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [dimensions], "Metrics": definitions}]
            }),
        );
        doc.insert("function".into(), Value::String(self.function.clone()));
        if let Some((name, value)) = extra {
            doc.insert(name.to_owned(), Value::String(value.to_owned()));
        }
        for (name, _, value) in values {
            doc.insert((*name).to_owned(), json!(value));
        }
        Value::Object(doc)
    }

    /// Emits one document with `values`.
    pub fn emit(&self, values: &[(&str, Unit, f64)]) {
        self.emit_with(None, values);
    }

    /// Emits one document with `values` and one more dimension (per destination, per subscription).
    pub fn emit_with(&self, extra: Option<(&str, &str)>, values: &[(&str, Unit, f64)]) {
        if values.is_empty() || matches!(self.sink, Sink::Off) {
            return;
        }
        let doc = self.document_with(extra, values, chrono::Utc::now().timestamp_millis());
        match &self.sink {
            Sink::Stdout => println!("{doc}"),
            Sink::Memory(m) => m
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(doc),
            Sink::Off => {}
        }
    }

    /// Documents kept by a [`Sink::Memory`].
    pub fn recorded(&self) -> Vec<Value> {
        match &self.sink {
            Sink::Memory(m) => m
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_follow_the_embedded_metric_format() {
        let m = Metrics::new("sale-capture", Sink::Memory(Mutex::new(Vec::new())));
        m.emit(&[
            ("Captured", Unit::Count, 1.0),
            ("HandlerLatency", Unit::Milliseconds, 2.5),
        ]);
        let doc = &m.recorded()[0];
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["function"]]));
        assert_eq!(
            directive["Metrics"][1],
            json!({"Name": "HandlerLatency", "Unit": "Milliseconds"})
        );
        assert_eq!(doc["function"], "sale-capture");
        assert_eq!(doc["Captured"], 1.0);
        assert!(doc["_aws"]["Timestamp"].as_i64().is_some_and(|t| t > 0));
    }

    #[test]
    fn a_second_dimension_is_declared_and_valued() {
        let m = Metrics::new("commercetools-sync", Sink::Memory(Mutex::new(Vec::new())));
        m.emit_with(
            Some(("destination", "commercetools")),
            &[("Delivered", Unit::Count, 1.0)],
        );
        let doc = &m.recorded()[0];
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["function", "destination"]])
        );
        assert_eq!(doc["destination"], "commercetools");
        assert_eq!(doc["function"], "commercetools-sync");
    }
}
