//! Embedded-mode benchmark (a load script, run with `cargo bench --bench embedded`). Prints
//! figures next to baselines measured in the same run, as ratios:
//! - ingestion: events/s accepted durably over HTTP in batches of 100 (worker running) versus the
//!   same requests to a naive durable collector in the same process: axum, the same JSON parsing,
//!   and one SQLite commit per request instead of group commit;
//! - path graph: state and positional views over ~1,000,000 events of 100,000 customers versus a
//!   straightforward implementation (group raw events per customer in hash maps of strings, sort,
//!   count edges).
//!
//! Sizes: `SCRIBBLE_BENCH_INGEST_BATCHES` (default 3000), `SCRIBBLE_BENCH_CUSTOMERS` (100000).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use scribble_bus::EmbeddedQueue;
use scribble_domain::demo::{generate, DemoOptions};
use scribble_domain::event::{Body, Event};
use scribble_domain::paths::{positional_graph, state_graph, PathOptions};
use scribble_domain::stitch::{JourneyBook, JourneyFilter};
use scribble_store::EmbeddedStore;
use scribble_telemetry::MetricsRegistry;
use scribble_worker::WorkerMetrics;
use serde_json::Value;

mod support;

use support::{
    bench_dir, collector_rate, env_number, events_per_second, median_seconds, request_bodies,
    shutdown_signal, BATCH, CLIENTS,
};

fn main() {
    let batches = env_number("SCRIBBLE_BENCH_INGEST_BATCHES", 3000);
    let customers = env_number("SCRIBBLE_BENCH_CUSTOMERS", 100_000);
    ingestion(batches);
    worker_drain(batches * BATCH);
    path_graph(customers);
}

fn ingestion(batches: usize) {
    let bodies: Vec<bytes::Bytes> = request_bodies(batches)
        .iter()
        .map(|events| serde_json::to_vec(events).expect("encode").into())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (scribble_rate, visible_after) = runtime.block_on(scribble_ingestion(&bodies));
    let naive_rate = runtime.block_on(naive_ingestion(&bodies));
    println!(
        "ingestion, {} requests of {BATCH} events, {CLIENTS} concurrent clients on loopback:",
        bodies.len()
    );
    println!(
        "  scribble (group commit, worker running):     {:>10.0} events/s",
        scribble_rate
    );
    println!(
        "  baseline (one SQLite commit per request):    {:>10.0} events/s",
        naive_rate
    );
    println!(
        "  ratio scribble / baseline:                   {:>10.2}x",
        scribble_rate / naive_rate
    );
    println!(
        "  reports saw every acknowledged event {} ms after the last reply",
        visible_after.as_millis()
    );
}

/// Events/s acknowledged, and how long after the last reply the reports saw every event.
async fn scribble_ingestion(bodies: &[bytes::Bytes]) -> (f64, Duration) {
    let dir = bench_dir();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("queue.db")).expect("queue"));
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.db")).expect("store"));
    let (stop, shutdown) = shutdown_signal();
    let metrics =
        WorkerMetrics::register_embedded(&MetricsRegistry::new(), queue.clone(), store.clone());
    let worker = tokio::spawn(scribble_worker::run(
        queue.clone(),
        store.clone(),
        Default::default(),
        metrics,
        shutdown(),
    ));
    let rate = collector_rate(queue, bodies).await;
    // The reports must see everything that was acknowledged; how long after the last reply?
    let events = bodies.len() * BATCH;
    let last_reply = Instant::now();
    while store.read("bench", |book| book.touch_count()) < events {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let visible_after = last_reply.elapsed();
    let _ = stop.send(true);
    let _ = worker.await;
    (rate, visible_after)
}

/// The collector without group commit: parse, then one durable transaction per request.
async fn naive_ingestion(bodies: &[bytes::Bytes]) -> f64 {
    let dir = bench_dir();
    let connection = Connection::open(dir.path().join("naive.db")).expect("open");
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    connection
        .pragma_update(None, "synchronous", "FULL")
        .expect("full");
    connection
        .execute_batch("CREATE TABLE entries (seq INTEGER PRIMARY KEY, project TEXT, event TEXT)")
        .expect("table");
    let connection = Arc::new(std::sync::Mutex::new(connection));
    let router = axum::Router::new().route(
        "/v1/events",
        axum::routing::post(move |body: bytes::Bytes| {
            let connection = connection.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    let events: Vec<Value> = serde_json::from_slice(&body).expect("JSON");
                    let mut connection = connection.lock().expect("lock");
                    let transaction = connection.transaction().expect("begin");
                    for event in &events {
                        transaction
                            .execute(
                                "INSERT INTO entries (project, event) VALUES (?1, ?2)",
                                params!["bench", event.to_string()],
                            )
                            .expect("insert");
                    }
                    transaction.commit().expect("commit");
                })
                .await
                .expect("write");
                "{}"
            }
        }),
    );
    events_per_second(router, bodies).await
}

/// The worker alone: events/s moved from a filled queue into the store (and the journey books).
fn worker_drain(events: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = bench_dir();
        let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("queue.db")).expect("queue"));
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.db")).expect("store"));
        let demo = generate(&DemoOptions {
            customers: events / 9,
            ..Default::default()
        });
        for chunk in demo.chunks(10_000) {
            queue.append("bench", chunk).await.expect("append");
        }
        let metrics =
            WorkerMetrics::register_embedded(&MetricsRegistry::new(), queue.clone(), store.clone());
        let started = Instant::now();
        while scribble_worker::move_batch(
            &queue,
            &store,
            scribble_worker::WorkerConfig::default().batch_size,
            &metrics,
        )
        .await
        .expect("batch")
            > 0
        {}
        let rate = demo.len() as f64 / started.elapsed().as_secs_f64();
        println!(
            "worker, {} queued events into the store and journey books: {:>10.0} events/s",
            demo.len(),
            rate
        );
    });
}

fn path_graph(customers: usize) {
    let events = generate(&DemoOptions {
        customers,
        ..Default::default()
    });
    let mut book = JourneyBook::new();
    for event in &events {
        book.add(event);
    }
    let touches = book.touch_count();
    let options = PathOptions::default();
    let stitch = median_seconds(5, || {
        std::hint::black_box(book.journeys(&JourneyFilter::default()));
    });
    let state = median_seconds(5, || {
        std::hint::black_box(state_graph(
            &book.journeys(&JourneyFilter::default()),
            &options,
        ));
    });
    let positional = median_seconds(5, || {
        std::hint::black_box(positional_graph(
            &book.journeys(&JourneyFilter::default()),
            &options,
        ));
    });
    let baseline = median_seconds(3, || {
        std::hint::black_box(straightforward_state_edges(&events));
    });
    println!(
        "path graph over {} events ({touches} touchpoints) of {customers} customers (median of 5, stitching included):",
        events.len()
    );
    println!(
        "  stitch and group journeys only:              {:>8.3} s",
        stitch
    );
    println!(
        "  state graph (the scribble):                  {:>8.3} s",
        state
    );
    println!(
        "  positional graph (Sankey):                   {:>8.3} s",
        positional
    );
    println!(
        "  baseline (string hash maps, no stitching):   {:>8.3} s",
        baseline
    );
    println!(
        "  ratio baseline / state graph:                {:>8.1}x",
        baseline / state
    );
}

/// The straightforward state graph: raw events grouped per identity in string-keyed maps,
/// sorted, and distinct customers counted per consecutive pair.
fn straightforward_state_edges(events: &[Event]) -> usize {
    let mut by_customer: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for event in events {
        if let Body::Touchpoint { touchpoint, .. } = &event.body {
            let customer = event
                .who
                .user_id
                .clone()
                .or_else(|| event.who.anonymous_id.clone())
                .unwrap_or_default();
            by_customer
                .entry(customer)
                .or_default()
                .push((event.at_ms, touchpoint.clone()));
        }
    }
    let mut edges: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for (customer, mut steps) in by_customer {
        steps.sort();
        for pair in steps.windows(2) {
            edges
                .entry((pair[0].1.clone(), pair[1].1.clone()))
                .or_default()
                .insert(customer.clone());
        }
    }
    edges.len()
}
