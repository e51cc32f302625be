//! Scale-out benchmark, a load script run against the real servers `scripts/test-servers` starts:
//!
//! ```sh
//! eval "$(scripts/test-servers start /tmp/scribble-bench-servers)"
//! cargo bench --bench scale_out
//! scripts/test-servers stop /tmp/scribble-bench-servers
//! ```
//!
//! Prints, each next to a baseline measured in the same run:
//! - collector events/s into Kafka (batches of 100, acknowledged by the broker) against the same
//!   collector over the embedded queue, and against the producer's ceiling: the same sink fed
//!   the same, already validated events by as many tasks, without HTTP;
//! - worker events/s from Kafka into ClickHouse against the ceiling of plain RowBinary inserts of
//!   the same events;
//! - state-graph latency over ClickHouse (counted in SQL, as the query API does) against the
//!   embedded store, on the same demo events.
//!
//! Sizes: `SCRIBBLE_BENCH_INGEST_BATCHES` (default 2000), `SCRIBBLE_BENCH_PATH_CUSTOMERS` (20000).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scribble_bus::{
    ensure_topic, DeadLetters, EmbeddedQueue, EventSink, KafkaConfig, KafkaConsumerConfig,
    KafkaEventSource, KafkaSink,
};
use scribble_domain::demo::{generate, DemoOptions};
use scribble_domain::event::{validate, Event, EventLimits};
use scribble_domain::paths::{GraphView, PathOptions};
use scribble_domain::stitch::JourneyFilter;
use scribble_store::{ClickHouseConfig, ClickHouseStore, EmbeddedStore, JourneyStore};
use scribble_telemetry::MetricsRegistry;
use scribble_worker::{WorkerConfig, WorkerMetrics};
use support::{
    bench_dir, collector_rate, env_number, median_seconds, request_bodies, shutdown_signal, BATCH,
    CLIENTS,
};

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the servers with `eval \"$(scripts/test-servers start DIR)\"` first")
    })
}

fn main() {
    let brokers = required_env("SCRIBBLE_TEST_KAFKA_BROKERS");
    let clickhouse = required_env("SCRIBBLE_TEST_CLICKHOUSE_URL");
    let batches = env_number("SCRIBBLE_BENCH_INGEST_BATCHES", 2000);
    let path_customers = env_number("SCRIBBLE_BENCH_PATH_CUSTOMERS", 20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let topic = format!("scribble-bench-{suffix}");
        let database = format!("scribble_bench_{suffix}");
        let bodies: Vec<Vec<serde_json::Value>> = request_bodies(batches);
        let encoded: Vec<bytes::Bytes> = bodies
            .iter()
            .map(|events| serde_json::to_vec(events).expect("encode").into())
            .collect();

        let sink = ready_sink(&brokers, &topic).await;
        let kafka_rate = collector_rate(sink, &encoded).await;
        let dir = bench_dir();
        let queue: Arc<dyn EventSink> =
            Arc::new(EmbeddedQueue::open(&dir.path().join("queue.db")).expect("queue"));
        let embedded_rate = collector_rate(queue, &encoded).await;
        // Its own topic, so the worker below finds exactly the collector's events.
        let ceiling_sink = ready_sink(&brokers, &format!("{topic}-ceiling")).await;
        let sink_rate = sink_rate(ceiling_sink, &bodies).await;
        println!(
            "collector, {} requests of {BATCH} events, {CLIENTS} concurrent clients:",
            encoded.len()
        );
        println!("  into Kafka (acks=all, idempotent):           {kafka_rate:>10.0} events/s");
        println!("  baseline: into the embedded queue:           {embedded_rate:>10.0} events/s");
        println!(
            "  ratio Kafka / embedded:                      {:>10.2}x",
            kafka_rate / embedded_rate
        );
        println!("  ceiling: the Kafka sink alone, no HTTP:      {sink_rate:>10.0} events/s");
        println!(
            "  ratio Kafka / ceiling:                       {:>10.2}x",
            kafka_rate / sink_rate
        );

        let store = migrated_store(&clickhouse, &database).await;
        let events = encoded.len() * BATCH;
        let worker_rate = worker_rate(
            &brokers,
            &topic,
            Arc::new(store),
            &clickhouse,
            &database,
            events,
        )
        .await;
        let ceiling_database = format!("{database}_ceiling");
        let ceiling = migrated_store(&clickhouse, &ceiling_database).await;
        let decoded: Vec<Event> = bodies
            .iter()
            .flatten()
            .map(|raw| {
                validate(
                    raw,
                    0,
                    1_800_000_000_000,
                    uuid::Uuid::new_v4,
                    &EventLimits::default(),
                )
                .expect("valid")
            })
            .collect();
        let started = Instant::now();
        for chunk in decoded.chunks(WorkerConfig::default().batch_size) {
            let pairs: Vec<(&str, &Event)> = chunk.iter().map(|event| ("bench", event)).collect();
            ceiling.insert(&pairs).await.expect("insert");
        }
        let ceiling_rate = decoded.len() as f64 / started.elapsed().as_secs_f64();
        println!("worker, {events} events from Kafka into ClickHouse:");
        println!("  worker (consume, decode, insert, commit):    {worker_rate:>10.0} events/s");
        println!("  ceiling: plain RowBinary inserts:            {ceiling_rate:>10.0} events/s");
        println!(
            "  ratio worker / ceiling:                      {:>10.2}x",
            worker_rate / ceiling_rate
        );

        path_graph(&clickhouse, &ceiling_database, &ceiling, path_customers).await;
        for name in [&database, &ceiling_database] {
            query(&clickhouse, &format!("DROP DATABASE IF EXISTS {name}")).await;
        }
    });
}

/// A Kafka sink on a new 4-partition `topic`, once its first probe has answered: the
/// measurement should not include connecting, nor the first appends made before the sink knows
/// the partition count.
async fn ready_sink(brokers: &str, topic: &str) -> Arc<KafkaSink> {
    ensure_topic(brokers, topic, 4).await.expect("topic");
    let sink = Arc::new(KafkaSink::new(&KafkaConfig::new(brokers, topic)).expect("producer"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sink.is_ready() {
        assert!(Instant::now() < deadline, "the broker did not answer");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sink
}

/// Events/s `sink` acknowledges when `CLIENTS` tasks append the requests of `bodies`, validated
/// beforehand: what the collector could reach if HTTP, decoding and validation cost nothing.
async fn sink_rate(sink: Arc<KafkaSink>, bodies: &[Vec<serde_json::Value>]) -> f64 {
    let requests: Arc<Vec<Vec<Event>>> = Arc::new(
        bodies
            .iter()
            .map(|events| {
                events
                    .iter()
                    .map(|raw| {
                        let limits = EventLimits::default();
                        validate(raw, 0, 1_800_000_000_000, uuid::Uuid::new_v4, &limits)
                            .expect("valid")
                    })
                    .collect()
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (sink, requests, next) = (sink.clone(), requests.clone(), next.clone());
            tokio::spawn(async move {
                while let Some(events) = requests.get(next.fetch_add(1, Ordering::Relaxed)) {
                    sink.append("bench", events).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    (requests.len() * BATCH) as f64 / started.elapsed().as_secs_f64()
}

/// A store on a fresh `database` of the ClickHouse at `clickhouse`, schema applied.
async fn migrated_store(clickhouse: &str, database: &str) -> ClickHouseStore {
    let store = ClickHouseStore::connect(&ClickHouseConfig {
        url: clickhouse.to_owned(),
        database: database.to_owned(),
    })
    .await
    .expect("ClickHouse");
    store.migrate().await.expect("migrate");
    store
}

async fn query(clickhouse: &str, sql: &str) -> String {
    reqwest::Client::new()
        .post(clickhouse)
        .body(sql.to_owned())
        .send()
        .await
        .expect("ClickHouse")
        .text()
        .await
        .expect("text")
}

/// Runs one worker over the filled topic until ClickHouse holds every event; events/s.
async fn worker_rate(
    brokers: &str,
    topic: &str,
    store: Arc<ClickHouseStore>,
    clickhouse: &str,
    database: &str,
    events: usize,
) -> f64 {
    let consumer = KafkaConsumerConfig {
        brokers: brokers.to_owned(),
        topic: topic.to_owned(),
        group: format!("{topic}-bench"),
    };
    let source = Arc::new(KafkaEventSource::subscribe(&consumer).expect("consumer"));
    let dead_letters = Arc::new(
        DeadLetters::connect(&KafkaConfig::new(brokers, topic))
            .await
            .expect("dead letters"),
    );
    let (stop, shutdown) = shutdown_signal();
    let worker = tokio::spawn(scribble_worker::kafka::run(
        source,
        dead_letters,
        store,
        WorkerConfig::default(),
        WorkerMetrics::register_kafka(&MetricsRegistry::new()),
        shutdown(),
    ));
    // The clock starts at the first stored batch: joining the consumer group takes a few seconds
    // that say nothing about throughput.
    let mut first: Option<(Instant, usize)> = None;
    let (started, counted_from) = loop {
        let count: usize = query(
            clickhouse,
            &format!("SELECT count() FROM {database}.events"),
        )
        .await
        .trim()
        .parse()
        .unwrap_or(0);
        if count > 0 && first.is_none() {
            first = Some((Instant::now(), count));
        }
        if count >= events {
            break first.expect("rows arrived");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let rate = (events - counted_from) as f64 / started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = worker.await;
    rate
}

/// The state graph over the same demo events from ClickHouse (counted in SQL, as the query API
/// does) and from the embedded store.
async fn path_graph(clickhouse: &str, database: &str, store: &ClickHouseStore, customers: usize) {
    let events = generate(&DemoOptions {
        customers,
        ..Default::default()
    });
    for chunk in events.chunks(50_000) {
        let pairs: Vec<(&str, &Event)> = chunk.iter().map(|event| ("paths", event)).collect();
        store.insert(&pairs).await.expect("insert");
    }
    query(
        clickhouse,
        &format!("OPTIMIZE TABLE {database}.events FINAL"),
    )
    .await;
    let dir = bench_dir();
    let embedded = Arc::new(EmbeddedStore::open(&dir.path().join("store.db")).expect("store"));
    let pairs: Vec<(&str, &Event)> = events.iter().map(|event| ("paths", event)).collect();
    embedded.apply(&pairs, 1).expect("apply");
    let options = PathOptions::default();
    let filter = JourneyFilter::default();
    let handle = tokio::runtime::Handle::current();
    let graph = |source: &dyn JourneyStore| {
        tokio::task::block_in_place(|| {
            handle.block_on(source.path_graph("paths", &filter, GraphView::State, &options))
        })
        .expect("path graph")
    };
    assert_eq!(
        graph(store),
        graph(&embedded),
        "both stores draw the same graph, or the timing compares nothing"
    );
    let from_clickhouse = median_seconds(3, || {
        std::hint::black_box(graph(store));
    });
    let from_embedded = median_seconds(3, || {
        std::hint::black_box(graph(&embedded));
    });
    println!(
        "state graph over {} events of {customers} customers (median of 3):",
        events.len()
    );
    println!("  ClickHouse store (counted in SQL):           {from_clickhouse:>8.3} s");
    println!("  baseline: embedded store:                    {from_embedded:>8.3} s");
    println!(
        "  ratio ClickHouse / embedded:                 {:>8.1}x",
        from_clickhouse / from_embedded
    );
}
