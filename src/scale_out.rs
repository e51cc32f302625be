//! The scale-out commands: `collector`, `worker`, `api` and `migrate`, each one process over Kafka
//! and ClickHouse (see deploy/README.md). They reuse the building blocks of `serve`. Workers
//! given the projects file also apply the projects' retention periods to ClickHouse.

use std::time::Duration;

use anyhow::bail;
use scribble_domain::project::LiveProjects;
use scribble_telemetry::MetricsRegistry;
use scribble_worker::{WorkerConfig, WorkerMetrics};
use tracing::info;

use crate::cli::{ApiArgs, CollectorArgs, MigrateArgs, WorkerArgs};
use crate::processes::{self, listen, Service, Shutdown};
use crate::serve::{spawn_api, spawn_collector};
use crate::targets::{BusTarget, StoreTarget};

fn kafka(bus: &BusTarget) -> anyhow::Result<(&str, &str)> {
    match bus {
        BusTarget::Kafka { brokers, topic } => Ok((brokers, topic)),
        BusTarget::Embedded => {
            bail!("this command runs over Kafka: pass --bus kafka://HOST:PORT/TOPIC")
        }
    }
}

fn clickhouse(store: &StoreTarget) -> anyhow::Result<(&str, &str)> {
    match store {
        StoreTarget::ClickHouse { address, database } => Ok((address, database)),
        StoreTarget::Embedded => {
            bail!("this command runs over ClickHouse: pass --store clickhouse://HOST:PORT/DATABASE")
        }
    }
}

pub fn collector(args: CollectorArgs) -> anyhow::Result<()> {
    let (brokers, topic) = kafka(&args.bus.bus)?;
    if args.partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    let projects = processes::projects(&args.projects)?;
    processes::runtime()?.block_on(async {
        let projects = processes::live_projects(&args.projects, projects);
        let sink = processes::kafka_sink(brokers, topic, args.partitions).await?;
        let (listener, _) = listen(Service::Collector, args.collector.collector_addr).await?;
        let shutdown = Shutdown::new();
        let registry = MetricsRegistry::new();
        let collector = spawn_collector(
            listener,
            projects,
            &args.proxies,
            args.collector.max_requests_in_flight,
            sink,
            &registry,
            &shutdown,
        );
        shutdown.on_signal().await?;
        collector.await??;
        Ok(())
    })
}

pub fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let (brokers, topic) = kafka(&args.bus.bus)?;
    let (address, database) = clickhouse(&args.store.store)?;
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let projects = args
        .projects_file
        .as_deref()
        .map(crate::projects::read)
        .transpose()?;
    processes::runtime()?.block_on(async {
        let store = processes::clickhouse(address, database).await?;
        let (listener, _) = listen(Service::Worker, args.worker_addr).await?;
        let shutdown = Shutdown::new();
        let config = WorkerConfig {
            batch_size: args.batch_size,
            ..WorkerConfig::default()
        };
        let registry = MetricsRegistry::new();
        let metrics = WorkerMetrics::register_kafka(&registry);
        let http = tokio::spawn(scribble_worker::http::serve(
            listener,
            scribble_worker::http::router(registry, metrics.clone()),
            shutdown.signal(),
        ));
        let sweeper = match (&args.projects_file, projects) {
            (Some(path), Some(projects)) => {
                let projects = LiveProjects::new(projects);
                let every = Duration::from_secs(args.projects_reload_seconds);
                processes::reload_projects_file(path.clone(), every, projects.clone());
                Some(tokio::spawn(scribble_worker::retention::run(
                    store.clone(),
                    projects,
                    Duration::from_secs(args.retention.retention_sweep_seconds),
                    shutdown.signal(),
                )))
            }
            _ => {
                info!("no --projects-file: no retention periods to apply");
                None
            }
        };
        let worker = processes::spawn_kafka_worker(
            brokers,
            topic,
            &args.group.group,
            store,
            config,
            metrics,
            shutdown.signal(),
        )
        .await?;
        info!(
            group = args.group.group,
            topic, database, "scribble worker consuming"
        );
        println!(
            "scribble worker consuming {topic} as {} into {database}",
            args.group.group
        );
        shutdown.on_signal().await?;
        worker.await?;
        http.await??;
        if let Some(sweeper) = sweeper {
            sweeper.await?;
        }
        Ok(())
    })
}

pub fn api(args: ApiArgs) -> anyhow::Result<()> {
    let (address, database) = clickhouse(&args.store.store)?;
    let projects = processes::projects(&args.projects)?;
    processes::runtime()?.block_on(async {
        let projects = processes::live_projects(&args.projects, projects);
        let config = processes::api_config(projects, &args.journeys)?;
        let store = processes::clickhouse(address, database).await?;
        let (listener, _) = listen(Service::QueryApi, args.api.api_addr).await?;
        let shutdown = Shutdown::new();
        let api = spawn_api(listener, config, store, &MetricsRegistry::new(), &shutdown);
        shutdown.on_signal().await?;
        api.await??;
        Ok(())
    })
}

pub fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let (address, database) = clickhouse(&args.store.store)?;
    processes::runtime()?.block_on(async {
        let (_, applied) = processes::migrated_clickhouse(address, database).await?;
        match applied.as_slice() {
            [] => println!("{database} is up to date"),
            versions => println!("{database}: applied migrations {versions:?}"),
        }
        Ok(())
    })
}
