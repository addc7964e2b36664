//! Clients of a running `pos-local`: `send` posts an `events/` file the way the vendor would, `load`
//! measures throughput with unique, freshly signed Standard Webhooks sales.

use anyhow::{Context, bail};
use base64::Engine;
use pos_shared::model::Vendor;
use pos_shared::samples::{self, SignedDelivery};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A delivery read back from an API Gateway event file.
pub fn delivery_from_event(event: &Value) -> anyhow::Result<SignedDelivery> {
    let path = event["rawPath"].as_str().context("event has no rawPath")?;
    let vendor = path
        .strip_prefix("/webhooks/")
        .and_then(Vendor::from_path)
        .with_context(|| format!("{path} is not a webhook route"))?;
    let headers = event["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let text = event["body"].as_str().unwrap_or_default();
    let body = if event["isBase64Encoded"].as_bool().unwrap_or(false) {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .context("body is not valid base64")?
    } else {
        text.as_bytes().to_vec()
    };
    Ok(SignedDelivery {
        vendor,
        headers,
        body,
    })
}

/// Posts `d` to `base_url`; returns the status and the body.
pub async fn post(
    client: &reqwest::Client,
    base_url: &str,
    d: &SignedDelivery,
) -> anyhow::Result<(u16, String)> {
    let mut req = client.post(format!(
        "{}/webhooks/{}",
        base_url.trim_end_matches('/'),
        d.vendor.as_str()
    ));
    for (k, v) in &d.headers {
        req = req.header(k, v);
    }
    let resp = req
        .body(d.body.clone())
        .send()
        .await
        .context("request failed (is pos-local serve running?)")?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.unwrap_or_default()))
}

/// `pos-local send FILE`: Standard Webhooks samples are re-signed at the current time unless
/// `keep_timestamp` (their signed timestamp is older than the 5-minute tolerance).
pub async fn send(
    base_url: &str,
    file: &Path,
    keep_timestamp: bool,
) -> anyhow::Result<(u16, String)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let event: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let mut d = delivery_from_event(&event)?;
    if d.vendor == Vendor::Standard && !keep_timestamp && d.header("webhook-timestamp").is_some() {
        d = samples::resign_standard(&d, chrono::Utc::now());
    }
    post(&reqwest::Client::new(), base_url, &d).await
}

/// What a load run measured.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    /// Requests sent.
    pub requests: usize,
    /// Concurrent connections.
    pub concurrency: usize,
    /// Wall time in seconds.
    pub elapsed_s: f64,
    /// Requests per second.
    pub requests_per_s: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Count per HTTP status.
    pub statuses: BTreeMap<u16, usize>,
    /// Seconds from the first request until both consumers had processed every event (queues drained).
    pub pipeline_drained_s: Option<f64>,
    /// Sales per second through capture, bus and both consumers.
    pub end_to_end_sales_per_s: Option<f64>,
}

/// Waits until no consumer queue has a visible or in-flight message; false on timeout.
pub async fn wait_drained(
    client: &reqwest::Client,
    base_url: &str,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let queues: Value = client
            .get(format!("{}/_local/queues", base_url.trim_end_matches('/')))
            .send()
            .await?
            .json()
            .await?;
        let busy: u64 = queues
            .as_array()
            .map(|qs| {
                qs.iter()
                    .map(|q| {
                        q["visible"].as_u64().unwrap_or(0) + q["in_flight"].as_u64().unwrap_or(0)
                    })
                    .sum()
            })
            .unwrap_or(0);
        if busy == 0 {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `pos-local load`: `requests` unique signed sales (`lines` lines each) at `concurrency`; with
/// `wait_pipeline`, also until both consumers have processed them.
pub async fn load(
    base_url: &str,
    requests: usize,
    concurrency: usize,
    lines: usize,
    wait_pipeline: bool,
) -> anyhow::Result<LoadReport> {
    if requests == 0 || concurrency == 0 {
        bail!("requests and concurrency must be positive");
    }
    let run = chrono::Utc::now().timestamp_millis();
    let now = chrono::Utc::now();
    // Signed up front so signing cost is not measured; the run must finish within the 5-minute tolerance.
    let deliveries: Arc<Vec<SignedDelivery>> = Arc::new(
        (0..requests)
            .map(|i| {
                let body = samples::standard_sale(
                    &format!("load-{run}-{i}"),
                    &format!("store-{:03}", i % 20),
                    Some(&format!("member-{}", i % 500)),
                    lines,
                );
                samples::standard(&format!("msg_load_{run}_{i}"), &body, now, None)
            })
            .collect(),
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, deliveries, base) = (
            client.clone(),
            next.clone(),
            deliveries.clone(),
            base_url.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<(u16, Duration)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(d) = deliveries.get(i) else { break };
                let t = Instant::now();
                let status = post(&client, &base, d).await.map(|(s, _)| s).unwrap_or(0);
                out.push((status, t.elapsed()));
            }
            out
        }));
    }
    let mut results = Vec::with_capacity(requests);
    for t in tasks {
        results.extend(t.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies: Vec<Duration> = results.iter().map(|(_, d)| *d).collect();
    latencies.sort();
    let pct = |p: f64| {
        let idx = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(idx).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let mut statuses = BTreeMap::new();
    for (s, _) in &results {
        *statuses.entry(*s).or_insert(0) += 1;
    }
    let (pipeline_drained_s, end_to_end_sales_per_s) = if wait_pipeline {
        if !wait_drained(&client, base_url, Duration::from_secs(600)).await? {
            bail!("the pipeline did not drain within 10 minutes");
        }
        let drained = started.elapsed().as_secs_f64();
        (Some(drained), Some(requests as f64 / drained))
    } else {
        (None, None)
    };
    Ok(LoadReport {
        requests,
        concurrency,
        elapsed_s: elapsed,
        requests_per_s: requests as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        statuses,
        pipeline_drained_s,
        end_to_end_sales_per_s,
    })
}
