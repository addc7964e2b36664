//! Clients of a running `pos-local`: `send` posts an `events/` file the way the vendor would, `load`
//! measures throughput with unique, freshly signed Standard Webhooks sales, `load_read` measures the
//! latency of `GET /v1/stores/{store_id}/stock/{sku}` on the query API.

use anyhow::{Context, bail};
use base64::Engine;
use pos_shared::model::Vendor;
use pos_shared::samples::{self, SignedDelivery};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
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
    // Signed up front so signing cost is not measured; the run must finish within the 5-minute tolerance.
    let deliveries = Arc::new(load_sales(
        &run.to_string(),
        requests,
        lines,
        chrono::Utc::now(),
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let started = Instant::now();
    let results = {
        let (client, base) = (client.clone(), base_url.to_owned());
        drive(requests, concurrency, move |i| {
            let (client, base, deliveries) = (client.clone(), base.clone(), deliveries.clone());
            async move {
                match deliveries.get(i) {
                    Some(d) => post(&client, &base, d).await.map(|(s, _)| s).unwrap_or(0),
                    None => 0,
                }
            }
        })
        .await?
    };
    let elapsed = started.elapsed().as_secs_f64();
    let latencies = sorted_latencies(&results);
    let pct = |p: f64| percentile_ms(&latencies, p);
    let statuses = status_counts(&results);
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

/// The sales `load` sends: `requests` unique Standard Webhooks sales of `lines` lines (`SKU-001`...),
/// over 20 stores and up to 500 members, signed at `now`; `run` makes ids unique across runs.
pub fn load_sales(
    run: &str,
    requests: usize,
    lines: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<SignedDelivery> {
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
        .collect()
}

/// Posts every delivery at `concurrency` and returns each one's status, in the order of `deliveries`
/// (0: no response, e.g. the server died). `answered` counts 2xx answers as they arrive, so a caller
/// can act mid-run (the kill test does).
pub async fn post_all(
    base_url: &str,
    deliveries: Arc<Vec<SignedDelivery>>,
    concurrency: usize,
    answered: Arc<AtomicUsize>,
) -> anyhow::Result<Vec<u16>> {
    if concurrency == 0 {
        bail!("concurrency must be positive");
    }
    let statuses: Arc<Vec<std::sync::atomic::AtomicU16>> = Arc::new(
        (0..deliveries.len())
            .map(|_| std::sync::atomic::AtomicU16::new(0))
            .collect(),
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    {
        let (base, statuses) = (base_url.to_owned(), statuses.clone());
        drive(deliveries.len(), concurrency, move |i| {
            let (client, base, deliveries) = (client.clone(), base.clone(), deliveries.clone());
            let (statuses, answered) = (statuses.clone(), answered.clone());
            async move {
                let status = match deliveries.get(i) {
                    Some(d) => post(&client, &base, d).await.map(|(s, _)| s).unwrap_or(0),
                    None => 0,
                };
                if (200..300).contains(&status) {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                if let Some(slot) = statuses.get(i) {
                    slot.store(status, Ordering::SeqCst);
                }
                status
            }
        })
        .await?;
    }
    Ok(statuses.iter().map(|s| s.load(Ordering::SeqCst)).collect())
}

/// Runs `requests` calls `call(0)`, `call(1)`, ... on `concurrency` workers, each taking the next index
/// as soon as its previous call is done; returns every call's status (0 when no response came) and
/// latency, in completion order per worker.
async fn drive<F, Fut>(
    requests: usize,
    concurrency: usize,
    call: F,
) -> anyhow::Result<Vec<(u16, Duration)>>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = u16> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (call, next) = (call.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<(u16, Duration)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let t = Instant::now();
                let status = call(i).await;
                out.push((status, t.elapsed()));
            }
            out
        }));
    }
    let mut results = Vec::with_capacity(requests);
    for t in tasks {
        results.extend(t.await?);
    }
    Ok(results)
}

/// The latencies of `results`, fastest first.
fn sorted_latencies(results: &[(u16, Duration)]) -> Vec<Duration> {
    let mut latencies: Vec<Duration> = results.iter().map(|(_, d)| *d).collect();
    latencies.sort();
    latencies
}

/// The `p` quantile (0.0 to 1.0) of `sorted` in ms: the nearest rank, `(n - 1) * p` rounded; 0 when empty.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p.clamp(0.0, 1.0)).round() as usize;
    sorted.get(idx).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// How many of `results` got each status.
fn status_counts(results: &[(u16, Duration)]) -> BTreeMap<u16, usize> {
    let mut statuses = BTreeMap::new();
    for (s, _) in results {
        *statuses.entry(*s).or_insert(0) += 1;
    }
    statuses
}

/// What a read-latency run measured (`pos-local load-read`).
#[derive(Debug, Serialize)]
pub struct ReadLoadReport {
    /// Requests sent.
    pub requests: usize,
    /// Concurrent connections.
    pub concurrency: usize,
    /// Distinct store + SKU pairs read, in turn.
    pub pairs: usize,
    /// Requests without a 2xx answer (other status, or no response at all).
    pub errors: usize,
    /// Wall time in seconds.
    pub elapsed_s: f64,
    /// Requests per second.
    pub requests_per_s: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 90th percentile latency, ms.
    pub p90_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Slowest request, ms.
    pub max_ms: f64,
    /// Count per HTTP status (0: no response).
    pub statuses: BTreeMap<u16, usize>,
}

/// The store + SKU pairs that have a stock row on a running `pos-local` (`GET /_local/stock`).
pub async fn stock_pairs(
    client: &reqwest::Client,
    base_url: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let resp = client
        .get(format!("{}/_local/stock", base_url.trim_end_matches('/')))
        .send()
        .await
        .context("request failed (is pos-local serve running?)")?;
    if !resp.status().is_success() {
        bail!("GET /_local/stock answered {}", resp.status());
    }
    let levels: Value = resp.json().await.context("GET /_local/stock is not JSON")?;
    Ok(levels
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| {
                    Some((
                        r["store_id"].as_str()?.to_owned(),
                        r["sku"].as_str()?.to_owned(),
                    ))
                })
                .filter(|(store, sku)| !store.is_empty() && !sku.is_empty())
                .collect()
        })
        .unwrap_or_default())
}

/// A bearer token of the development issuer with `stock:read`, valid for an hour (what `pos-local
/// serve` trusts unless started with `--jwks`).
pub fn dev_stock_token() -> anyhow::Result<String> {
    pos_shared::auth::dev_token(
        pos_shared::auth::DEV_ISSUER,
        pos_shared::auth::API_AUDIENCE,
        "pos-local-load-read",
        "stock:read",
        chrono::Utc::now(),
        chrono::Duration::hours(1),
    )
    .map_err(|e| anyhow::anyhow!("cannot sign the dev token: {e}"))
}

/// `pos-local load-read`: `requests` reads of `GET /v1/stores/{store_id}/stock/{sku}` at `concurrency`,
/// cycling through every store + SKU pair with a stock row (seed sales first), each response read to the
/// end. `token` defaults to [`dev_stock_token`]. Any answer but a 2xx counts as an error.
pub async fn load_read(
    base_url: &str,
    requests: usize,
    concurrency: usize,
    token: Option<String>,
) -> anyhow::Result<ReadLoadReport> {
    if requests == 0 || concurrency == 0 {
        bail!("requests and concurrency must be positive");
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let pairs = stock_pairs(&client, base_url).await?;
    if pairs.is_empty() {
        bail!("no stock rows to read: seed sales first (pos-local load --pipeline)");
    }
    let authorization = format!(
        "Bearer {}",
        match token {
            Some(t) => t,
            None => dev_stock_token()?,
        }
    );
    // URLs built up front; ids may contain `/`, which must stay inside its path segment.
    let base = base_url.trim_end_matches('/');
    let urls: Arc<Vec<String>> = Arc::new(
        pairs
            .iter()
            .map(|(store, sku)| {
                format!(
                    "{base}/v1/stores/{}/stock/{}",
                    store.replace('/', "%2F"),
                    sku.replace('/', "%2F")
                )
            })
            .collect(),
    );
    let started = Instant::now();
    let results = {
        let (client, urls, authorization) = (client.clone(), urls.clone(), authorization.clone());
        drive(requests, concurrency, move |i| {
            let (client, urls, authorization) =
                (client.clone(), urls.clone(), authorization.clone());
            async move {
                let url = &urls[i % urls.len()];
                match client
                    .get(url)
                    .header(reqwest::header::AUTHORIZATION, &authorization)
                    .send()
                    .await
                {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        // The body is part of the answer: a response cut short is no response.
                        match resp.bytes().await {
                            Ok(_) => status,
                            Err(_) => 0,
                        }
                    }
                    Err(_) => 0,
                }
            }
        })
        .await?
    };
    let elapsed = started.elapsed().as_secs_f64();
    let latencies = sorted_latencies(&results);
    let errors = results
        .iter()
        .filter(|(s, _)| !(200..300).contains(s))
        .count();
    Ok(ReadLoadReport {
        requests,
        concurrency,
        pairs: urls.len(),
        errors,
        elapsed_s: elapsed,
        requests_per_s: requests as f64 / elapsed,
        p50_ms: percentile_ms(&latencies, 0.50),
        p90_ms: percentile_ms(&latencies, 0.90),
        p99_ms: percentile_ms(&latencies, 0.99),
        max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        statuses: status_counts(&results),
    })
}

/// Asks a running `pos-local` to reprocess quarantined deliveries (every open one, or `one`).
pub async fn reprocess_local(
    url: &str,
    one: Option<(String, String)>,
) -> anyhow::Result<Vec<Value>> {
    let req = reqwest::Client::new().post(format!(
        "{}/_local/quarantine/reprocess",
        url.trim_end_matches('/')
    ));
    let req = match one {
        Some((vendor, delivery_key)) => {
            req.json(&serde_json::json!({"vendor": vendor, "delivery_key": delivery_key}))
        }
        None => req,
    };
    let resp = req.send().await.context("is pos-local running?")?;
    let status = resp.status();
    let body: Value = resp.json().await.context("reprocess answer")?;
    if !status.is_success() {
        bail!("reprocess failed ({status}): {body}");
    }
    Ok(body.as_array().cloned().unwrap_or_default())
}

/// Re-enables webhook subscription `id` on a running server and replays its disabled records.
pub async fn webhooks_enable_local(url: &str, id: &str) -> anyhow::Result<Value> {
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/_local/webhooks/{id}/enable",
            url.trim_end_matches('/')
        ))
        .send()
        .await
        .context("is pos-local running?")?;
    let status = resp.status();
    let body: Value = resp.json().await.context("enable answer")?;
    if !status.is_success() {
        bail!("webhooks enable failed ({status}): {body}");
    }
    Ok(body)
}

/// Re-enables webhook subscription `id` on AWS, here, with webhooks-sync's environment
/// (`DELIVERIES_TABLE`, `TABLE_NAME`, `QUEUE_URL`) and AWS credentials, then replays its disabled records
/// onto its queue.
pub async fn webhooks_enable_on_aws(id: &str) -> anyhow::Result<Value> {
    let report = pos_shared::delivery::webhooks_enable::enable_on_aws_from_env(id).await?;
    Ok(serde_json::to_value(report)?)
}

/// Reprocesses quarantined deliveries on AWS, here, with the sale-capture function's environment
/// (`POS_BACKEND` defaults to `aws`: `TABLE_NAME`, `EVENT_BUS_NAME`, `SECRET_ID`, mapping settings).
pub async fn reprocess_on_aws(one: Option<(String, String)>) -> anyhow::Result<Vec<Value>> {
    let config = pos_shared::config::CaptureConfig::from_env()?;
    let one = match one {
        Some((vendor, key)) => Some((
            Vendor::from_path(&vendor).with_context(|| format!("unknown vendor {vendor:?}"))?,
            key,
        )),
        None => None,
    };
    let reports = pos_shared::runtime::reprocess_quarantine(&config, one).await?;
    Ok(reports
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_ranks_in_ms() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&sorted, 0.0), 1.0);
        assert_eq!(percentile_ms(&sorted, 0.50), 51.0); // rank round(99 * 0.5) = 50 (0-based)
        assert_eq!(percentile_ms(&sorted, 0.90), 90.0);
        assert_eq!(percentile_ms(&sorted, 0.99), 99.0);
        assert_eq!(percentile_ms(&sorted, 1.0), 100.0);
        assert_eq!(percentile_ms(&[Duration::from_micros(1500)], 0.99), 1.5);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }

    #[tokio::test]
    async fn drive_makes_every_call_once_and_times_it() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let results = drive(25, 4, move |i| {
            let log = log.clone();
            async move {
                if let Ok(mut l) = log.lock() {
                    l.push(i);
                }
                if i % 5 == 0 { 503 } else { 200 }
            }
        })
        .await
        .expect("workers finish");
        let mut seen = seen.lock().expect("lock").clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..25).collect::<Vec<_>>());
        assert_eq!(
            status_counts(&results),
            BTreeMap::from([(200, 20), (503, 5)])
        );
        assert_eq!(sorted_latencies(&results).len(), 25);
    }
}
