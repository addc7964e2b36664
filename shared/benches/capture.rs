//! Capture handler latency for a 10-line sale on in-memory adapters: the request path up to the stored
//! fact, which is all of it (publication is the stream publisher's job). Two stores: `memory` (the
//! in-memory adapter, `MemoryStore`: the handler's own cost) and `redb` (the embedded store on redb's
//! in-memory backend: encoding, a redb commit and the hop to its group-commit writer thread).
//!
//! `cargo bench -p pos-shared --bench capture` prints criterion's estimates, then a percentile run
//! (p50/p99 over individually timed requests). Every request is a new sale: duplicates would be cheaper.

use criterion::{Criterion, criterion_group};
use pos_shared::capture::{CaptureService, CaptureSettings, WebhookRequest};
use pos_shared::ports::CaptureStore;
use pos_shared::ports::ManualClock;
use pos_shared::samples;
use pos_shared::secrets::{StaticSecrets, dev_secrets};
use pos_shared::store::embedded::EmbeddedStore;
use pos_shared::store::memory::MemoryStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Builds a fresh store.
type MakeStore = fn() -> Arc<dyn CaptureStore>;

/// The stores measured, by name.
fn stores() -> [(&'static str, MakeStore); 2] {
    [
        ("memory", || Arc::new(MemoryStore::new())),
        ("redb", || {
            Arc::new(EmbeddedStore::in_memory().expect("store"))
        }),
    ]
}

fn service(store: Arc<dyn CaptureStore>) -> CaptureService {
    CaptureService::new(
        store,
        Arc::new(StaticSecrets(Arc::new(dev_secrets()))),
        Arc::new(ManualClock::new(samples::sample_time())),
        CaptureSettings::default(),
    )
}

fn standard_requests(n: usize) -> Vec<WebhookRequest> {
    (0..n)
        .map(|i| {
            let body =
                samples::standard_sale(&format!("bench-{i}"), "store-001", Some("member-1"), 10);
            samples::standard(
                &format!("msg_bench_{i}"),
                &body,
                samples::sample_time(),
                None,
            )
            .to_request("bench")
        })
        .collect()
}

fn shopify_requests(n: usize) -> Vec<WebhookRequest> {
    (0..n)
        .map(|i| {
            let order = samples::shopify_order(10_000_000 + i as u64, 10);
            samples::shopify("orders/create", &format!("bench-evt-{i}"), &order, None)
                .to_request("bench")
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for (store_name, store) in stores() {
        for (name, make) in [
            (
                "standard",
                standard_requests as fn(usize) -> Vec<WebhookRequest>,
            ),
            ("shopify", shopify_requests),
        ] {
            let svc = service(store());
            let reqs = make(200_000);
            let next = AtomicUsize::new(0);
            c.bench_function(&format!("capture_10_line_sale/{name}/{store_name}"), |b| {
                b.to_async(&rt).iter(|| async {
                    let i = next.fetch_add(1, Ordering::Relaxed) % reqs.len();
                    let out = svc.handle(&reqs[i]).await;
                    assert!(out.is_ok());
                });
            });
        }
    }
}

fn percentiles() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for (store_name, store) in stores() {
        for (name, reqs) in [
            ("standard", standard_requests(20_000)),
            ("shopify", shopify_requests(20_000)),
        ] {
            let svc = service(store());
            let mut times: Vec<Duration> = rt.block_on(async {
                let mut times = Vec::with_capacity(reqs.len());
                for r in &reqs {
                    let t = Instant::now();
                    let out = svc.handle(r).await;
                    times.push(t.elapsed());
                    assert!(matches!(
                        out,
                        Ok(pos_shared::capture::Captured::Accepted { .. })
                    ));
                }
                times
            });
            times.sort();
            let p = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
            println!(
                "capture_10_line_sale/{name}/{store_name}: n={} p50={:.1}us p90={:.1}us p99={:.1}us max={:.1}us",
                times.len(),
                p(0.50),
                p(0.90),
                p(0.99),
                p(1.0)
            );
        }
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    percentiles();
}
