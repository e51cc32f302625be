//! Building blocks shared by `serve` and the scale-out commands: project settings, the shutdown
//! signal, listeners, and connecting to Kafka and ClickHouse. Each error names the flag to fix.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use scribble_bus::{
    ensure_topic, DeadLetters, KafkaConfig, KafkaConsumerConfig, KafkaEventSource, KafkaSink,
};
use scribble_domain::project::{LiveProjects, Project, Projects};
use scribble_domain::stages::StageMap;
use scribble_query_api::ApiConfig;
use scribble_store::{ClickHouseConfig, ClickHouseStore};
use scribble_worker::{WorkerConfig, WorkerMetrics};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use crate::cli::{JourneyShapeArgs, ProjectArgs, DEV_READ_KEY, DEV_WRITE_KEY};

/// The projects served: from `--projects-file` when given, else the one project of the flags.
pub fn projects(args: &ProjectArgs) -> anyhow::Result<Projects> {
    let projects = match &args.projects_file {
        Some(path) => crate::projects::read(path)?,
        None => {
            if args.write_key == DEV_WRITE_KEY || args.read_key == DEV_READ_KEY {
                warn!("using the development keys; set --write-key and --read-key before exposing Scribble");
            }
            Projects {
                projects: vec![Project {
                    name: args.project.clone(),
                    write_keys: vec![args.write_key.clone()],
                    read_keys: vec![args.read_key.clone()],
                    redirect_hosts: args.redirect_hosts.clone(),
                    ..Project::default()
                }],
            }
        }
    };
    projects
        .check()
        .context("the project settings cannot be served")?;
    Ok(projects)
}

/// `projects` as a server holds them. With --projects-file, a task reads the file again every
/// --projects-reload-seconds and serves what it finds, so new keys, revocations and settings take
/// effect without a restart; a file that cannot be served is logged and the last good one kept.
/// Call it inside the runtime that serves.
pub fn live_projects(args: &ProjectArgs, projects: Projects) -> LiveProjects {
    let live = LiveProjects::new(projects);
    if let Some(path) = args.projects_file.clone() {
        reload_projects_file(
            path,
            Duration::from_secs(args.projects_reload_seconds),
            live.clone(),
        );
    }
    live
}

/// Reads the projects file at `path` again every `every` and serves what it finds in `live`
/// (see [`live_projects`]). Call it inside the runtime that serves.
pub fn reload_projects_file(path: PathBuf, every: Duration, live: LiveProjects) {
    tokio::spawn(async move {
        // The first tick reads the file again: a change made since `projects` read it counts.
        let mut last_text = None;
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            // A small file: reading it on the runtime thread costs less than a hop to a blocking one.
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) => {
                    warn!(path = %path.display(), %error, "projects file unreadable; serving the last one read");
                    continue;
                }
            };
            if last_text.as_deref() == Some(text.as_str()) {
                continue;
            }
            match crate::projects::parse(&text, &path) {
                Ok(projects) => {
                    info!(path = %path.display(), projects = projects.projects.len(), "projects file reloaded");
                    live.replace(projects);
                }
                Err(error) => {
                    warn!(path = %path.display(), error = format!("{error:#}"), "projects file not reloaded; serving the last good one");
                }
            }
            last_text = Some(text);
        }
    });
}

/// The query API's settings: `projects`, and the stages and session gap of `args`.
pub fn api_config(projects: LiveProjects, args: &JourneyShapeArgs) -> anyhow::Result<ApiConfig> {
    let mut config = ApiConfig::live(projects);
    config.session_gap_ms = i64::from(args.session_gap_minutes) * 60_000;
    if let Some(path) = &args.stages_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the stages file {}", path.display()))?;
        config.stages = serde_json::from_str::<StageMap>(&text).with_context(|| {
            format!(
                "{} is not a stages file: write a JSON list of {{\"name\", \"touchpoints\"}} in stage order",
                path.display()
            )
        })?;
    }
    Ok(config)
}

/// A multi-threaded runtime for a command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Tells every task of a process to stop, once.
pub struct Shutdown {
    stop: watch::Sender<bool>,
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            stop: watch::channel(false).0,
        }
    }

    /// A future that resolves when the process stops; hand one to each task.
    pub fn signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopped = self.stop.subscribe();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    }

    /// Waits for Ctrl-C or SIGTERM (what `docker stop` and systemd send), then tells every task.
    pub async fn on_signal(&self) -> anyhow::Result<()> {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot listen for SIGTERM")?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted.context("cannot listen for Ctrl-C")?,
            _ = terminate.recv() => {}
        }
        info!("shutting down");
        self.stop.send_replace(true);
        Ok(())
    }
}

/// The HTTP services a process can run.
#[derive(Debug, Clone, Copy)]
pub enum Service {
    Collector,
    QueryApi,
    /// The worker's listener for metrics and health.
    Worker,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Self::Collector => "collector",
            Self::QueryApi => "query API",
            Self::Worker => "worker",
        }
    }

    /// The flag that sets the service's address.
    fn flag(self) -> &'static str {
        match self {
            Self::Collector => "--collector-addr",
            Self::QueryApi => "--api-addr",
            Self::Worker => "--worker-addr",
        }
    }
}

/// Binds `addr` for `service` (with an error that names the flag to change), then prints
/// `scribble <service> listening on http://ADDR` on stdout (logs go to stderr), the line scripts
/// and tests wait for. Returns the listener and the address it got (port 0 picks a free one).
pub async fn listen(
    service: Service,
    addr: SocketAddr,
) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} for the {}; pick another with {}",
            service.name(),
            service.flag()
        )
    })?;
    let bound = listener.local_addr()?;
    println!("scribble {} listening on http://{bound}", service.name());
    Ok((listener, bound))
}

/// Connects to ClickHouse at `address` (its HTTP interface) and applies pending migrations;
/// returns the store and the versions this call applied (empty when the schema was current).
pub async fn migrated_clickhouse(
    address: &str,
    database: &str,
) -> anyhow::Result<(ClickHouseStore, Vec<u32>)> {
    let config = ClickHouseConfig {
        url: format!("http://{address}"),
        database: database.to_owned(),
    };
    let store = ClickHouseStore::connect(&config)
        .await
        .with_context(|| format!("cannot reach ClickHouse at {}; check --store", config.url))?;
    let applied = store
        .migrate()
        .await
        .context("cannot apply the ClickHouse migrations")?;
    Ok((store, applied))
}

/// [`migrated_clickhouse`] for a process that serves or writes: the store logs each migration it
/// applies.
pub async fn clickhouse(address: &str, database: &str) -> anyhow::Result<Arc<ClickHouseStore>> {
    let (store, _applied) = migrated_clickhouse(address, database).await?;
    Ok(Arc::new(store))
}

/// A producer to `topic`, creating the topic with `partitions` if it does not exist.
pub async fn kafka_sink(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<Arc<KafkaSink>> {
    ensure_topic(brokers, topic, partitions)
        .await
        .with_context(|| {
            format!("cannot create or find the topic {topic} on {brokers}; check --bus")
        })?;
    let sink = KafkaSink::new(&KafkaConfig::new(brokers, topic))
        .context("cannot start the Kafka producer")?;
    Ok(Arc::new(sink))
}

/// Starts one stream worker of `group`: Kafka `topic` into `store`, recording into `metrics`.
pub async fn spawn_kafka_worker(
    brokers: &str,
    topic: &str,
    group: &str,
    store: Arc<ClickHouseStore>,
    config: WorkerConfig,
    metrics: Arc<WorkerMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<JoinHandle<()>> {
    let consumer = KafkaConsumerConfig {
        brokers: brokers.to_owned(),
        topic: topic.to_owned(),
        group: group.to_owned(),
    };
    let source =
        KafkaEventSource::subscribe(&consumer).context("cannot join the consumer group")?;
    let dead_letters = DeadLetters::connect(&KafkaConfig::new(brokers, topic))
        .await
        .context("cannot start the dead-letter producer")?;
    Ok(tokio::spawn(scribble_worker::kafka::run(
        Arc::new(source),
        Arc::new(dead_letters),
        store,
        config,
        metrics,
        shutdown,
    )))
}
