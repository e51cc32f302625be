//! What the benchmarks share: sizes from the environment, request bodies, a load driver that
//! posts from many concurrent clients, a shutdown signal, and timing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use scribble_bus::EventSink;
use scribble_collector::CollectorConfig;
use scribble_domain::project::{Project, Projects};
use scribble_telemetry::MetricsRegistry;
use serde_json::{json, Value};

pub const BATCH: usize = 100;
pub const CLIENTS: usize = 32;
pub const WRITE_KEY: &str = "bench-write-key";

pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// Wire-shape bodies of `batches` requests of 100 site visits each, ids set by the sender.
pub fn request_bodies(batches: usize) -> Vec<Vec<Value>> {
    (0..batches)
        .map(|batch| {
            (0..BATCH)
                .map(|i| {
                    json!({
                        "event_id": uuid::Uuid::new_v4(),
                        "timestamp": "2026-11-01T10:00:00Z",
                        "touchpoint": if i % 3 == 0 { "email_open" } else { "site_visit" },
                        "anonymous_id": format!("visitor-{}", (batch * 7 + i) % 5000),
                        "properties": {"url": "/pricing", "utm_source": "newsletter"}
                    })
                })
                .collect()
        })
        .collect()
}

/// A directory on the same disk as the build, so fsync costs what it costs for real users.
pub fn bench_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir")
}

pub type Shutdown =
    Box<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>;

pub fn shutdown_signal() -> (tokio::sync::watch::Sender<bool>, Shutdown) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown: Shutdown = Box::new(move || {
        let mut stopped = stopped.clone();
        Box::pin(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })
    });
    (stop, shutdown)
}

/// Posts every body from `CLIENTS` concurrent connections; returns acknowledged events/s.
pub async fn drive(url: &str, bodies: &[bytes::Bytes]) -> f64 {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(bodies.to_vec());
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, next, bodies, url) =
                (client.clone(), next.clone(), bodies.clone(), url.to_owned());
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(index) else {
                        return;
                    };
                    let response = client
                        .post(&url)
                        .bearer_auth(WRITE_KEY)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("POST");
                    assert!(
                        response.status().is_success(),
                        "ingestion failed: {}",
                        response.status()
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client");
    }
    (bodies.len() * BATCH) as f64 / started.elapsed().as_secs_f64()
}

pub fn median_seconds(runs: usize, mut run: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            run();
            started.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The one project the benchmarks ingest into.
pub fn bench_projects() -> Projects {
    Projects {
        projects: vec![Project {
            name: "bench".into(),
            write_keys: vec![WRITE_KEY.into()],
            read_keys: vec!["bench-read-key".into()],
            redirect_hosts: vec![],
            ..Project::default()
        }],
    }
}

/// Events/s acknowledged by a collector over `sink`, loaded with `bodies` from `CLIENTS`
/// concurrent clients.
pub async fn collector_rate(sink: Arc<dyn EventSink>, bodies: &[bytes::Bytes]) -> f64 {
    let config = Arc::new(CollectorConfig::new(bench_projects()));
    let router = scribble_collector::router(config, sink, &MetricsRegistry::new());
    events_per_second(router, bodies).await
}

/// Serves `router` on a free loopback port for as long as it takes to post `bodies` to its
/// `/v1/events`; returns the acknowledged events/s.
pub async fn events_per_second(router: axum::Router, bodies: &[bytes::Bytes]) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/v1/events",
        listener.local_addr().expect("address")
    );
    let (stop, shutdown) = shutdown_signal();
    let stopped = shutdown();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(stopped)
            .await
    });
    let rate = drive(&url, bodies).await;
    let _ = stop.send(true);
    rate
}
