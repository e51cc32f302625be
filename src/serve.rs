//! `scribble serve`: collector, worker and query API in one process. On the embedded default
//! they share the queue and store files in `--data-dir`; with `--bus kafka://...` and
//! `--store clickhouse://...` the same three run over Kafka and ClickHouse. With `--demo`, the
//! generated data set is sent to the bus first. The three record into one metrics registry, so
//! `/metrics` on either listener shows every metric of the process. Like a worker, `serve`
//! applies the projects' retention periods to its store, at start and every
//! `--retention-sweep-seconds`.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use scribble_bus::{EmbeddedQueue, EventSink};
use scribble_collector::{CollectorConfig, TrustedProxies};
use scribble_domain::demo::{self, DemoOptions};
use scribble_domain::project::LiveProjects;
use scribble_query_api::ApiConfig;
use scribble_store::{EmbeddedStore, JourneyStore};
use scribble_telemetry::MetricsRegistry;
use scribble_worker::{WorkerConfig, WorkerMetrics};
use tokio::task::JoinHandle;
use tracing::info;

use crate::cli::{ServeArgs, TrustedProxyArgs};
use crate::processes::{self, listen, Service, Shutdown};
use crate::targets::{BusTarget, StoreTarget};

/// Events per bus append while loading the demo set.
const DEMO_CHUNK: usize = 5_000;
/// Partitions of the events topic when `serve` creates it.
const SERVE_PARTITIONS: i32 = 4;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    processes::runtime()?.block_on(serve(args))
}

/// What the collector writes to, what the query API reads from, and the worker between them.
type Pipeline = (Arc<dyn EventSink>, Arc<dyn JourneyStore>, JoinHandle<()>);

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let projects = processes::projects(&args.projects)?;
    let demo_project = projects.projects[0].name.clone();
    let demo_read_key = projects.projects[0].read_keys.first().cloned();
    let projects = processes::live_projects(&args.projects, projects);
    // Every setting is checked before anything opens, listens or starts.
    let api_config = processes::api_config(projects.clone(), &args.journeys)?;
    let shutdown = Shutdown::new();
    let registry = MetricsRegistry::new();
    let (sink, store, worker): Pipeline = match (&args.bus.bus, &args.store.store) {
        (BusTarget::Embedded, StoreTarget::Embedded) => {
            embedded(&args.data_dir, &registry, shutdown.signal()).await?
        }
        (BusTarget::Kafka { brokers, topic }, StoreTarget::ClickHouse { address, database }) => {
            let store = processes::clickhouse(address, database).await?;
            let sink = processes::kafka_sink(brokers, topic, SERVE_PARTITIONS).await?;
            let worker = processes::spawn_kafka_worker(
                brokers,
                topic,
                &args.group.group,
                store.clone(),
                WorkerConfig::default(),
                WorkerMetrics::register_kafka(&registry),
                shutdown.signal(),
            )
            .await?;
            (sink, store, worker)
        }
        (bus, store) => bail!(
            "--bus {bus} with --store {store} is not a supported pair: \
             use both embedded, or kafka:// with clickhouse://"
        ),
    };

    // The worker role sweeps: the embedded store here, ClickHouse like every scale-out worker.
    let sweeper = tokio::spawn(scribble_worker::retention::run(
        store.clone(),
        projects.clone(),
        Duration::from_secs(args.retention.retention_sweep_seconds),
        shutdown.signal(),
    ));
    let (collector_listener, collector_addr) =
        listen(Service::Collector, args.collector.collector_addr).await?;
    let (api_listener, api_addr) = listen(Service::QueryApi, args.api.api_addr).await?;
    let collector = spawn_collector(
        collector_listener,
        projects.clone(),
        &args.proxies,
        args.collector.max_requests_in_flight,
        sink.clone(),
        &registry,
        &shutdown,
    );
    let api = spawn_api(api_listener, api_config, store, &registry, &shutdown);
    info!(%collector_addr, %api_addr, bus = %args.bus.bus, store = %args.store.store, "scribble serving");

    if args.demo {
        load_demo(sink.as_ref(), &demo_project, &args).await?;
        let read_key = demo_read_key.unwrap_or_else(|| "<a read key of the project>".into());
        println!(
            "demo data sent; try: curl -H 'Authorization: Bearer {read_key}' 'http://{api_addr}/v1/paths?format=mermaid'"
        );
    }

    shutdown.on_signal().await?;
    collector.await??;
    api.await??;
    worker.await?;
    sweeper.await?;
    Ok(())
}

/// Opens the embedded queue and store in `data_dir` (created if missing) and starts the worker
/// between them, its metrics in `registry`.
async fn embedded(
    data_dir: &Path,
    registry: &MetricsRegistry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Pipeline> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let queue = Arc::new(
        EmbeddedQueue::open(&data_dir.join("queue.db"))
            .context("cannot open the embedded queue")?,
    );
    let store_path = data_dir.join("store.db");
    let store = Arc::new(
        tokio::task::spawn_blocking(move || EmbeddedStore::open(&store_path))
            .await?
            .context("cannot open the embedded store")?,
    );
    let metrics = WorkerMetrics::register_embedded(registry, queue.clone(), store.clone());
    let worker = tokio::spawn(scribble_worker::run(
        queue.clone(),
        store.clone(),
        WorkerConfig::default(),
        metrics,
        shutdown,
    ));
    // `JourneyStore` is implemented for `Arc<EmbeddedStore>`, hence the Arc around it.
    Ok((queue, Arc::new(store), worker))
}

/// Serves the collector on `listener` until shutdown, its metrics in `registry`, believing
/// `X-Forwarded-For` from `proxies` only, handling at most `max_requests_in_flight` event requests
/// at once.
pub fn spawn_collector(
    listener: tokio::net::TcpListener,
    projects: LiveProjects,
    proxies: &TrustedProxyArgs,
    max_requests_in_flight: u32,
    sink: Arc<dyn EventSink>,
    registry: &MetricsRegistry,
    shutdown: &Shutdown,
) -> JoinHandle<std::io::Result<()>> {
    let mut config = CollectorConfig::live(projects);
    config.trusted_proxies = TrustedProxies(proxies.trusted_proxies.clone());
    config.max_requests_in_flight = max_requests_in_flight as usize;
    let config = Arc::new(config);
    let router = scribble_collector::router(config, sink, registry);
    tokio::spawn(scribble_collector::serve(
        listener,
        router,
        shutdown.signal(),
    ))
}

/// Serves the query API on `listener` until shutdown, its metrics in `registry`.
pub fn spawn_api(
    listener: tokio::net::TcpListener,
    config: ApiConfig,
    store: Arc<dyn JourneyStore>,
    registry: &MetricsRegistry,
    shutdown: &Shutdown,
) -> JoinHandle<std::io::Result<()>> {
    let router = scribble_query_api::router(Arc::new(config), store, registry);
    tokio::spawn(scribble_query_api::serve(
        listener,
        router,
        shutdown.signal(),
    ))
}

/// Sends the demo data set to `project`. Ids are derived from the seed, so loading twice stores
/// it once.
async fn load_demo(sink: &dyn EventSink, project: &str, args: &ServeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let today_ms = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp_millis();
    let defaults = DemoOptions::default();
    let window_ms = i64::from(defaults.days) * 24 * 3600 * 1000;
    // The window ends today, so the demo always looks recent.
    let options = DemoOptions {
        customers: args.demo_customers,
        seed: args.demo_seed,
        start_ms: today_ms - window_ms,
        ..defaults
    };
    let events = demo::generate(&options);
    let progress = indicatif::ProgressBar::new(events.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("demo data {bar:40} {pos}/{len} events")
            .expect("template"),
    );
    for chunk in events.chunks(DEMO_CHUNK) {
        sink.append(project, chunk).await?;
        progress.inc(chunk.len() as u64);
    }
    progress.finish();
    info!(
        events = events.len(),
        customers = args.demo_customers,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "demo data sent"
    );
    Ok(())
}
