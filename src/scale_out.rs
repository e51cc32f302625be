//! The scale-out commands: `collector`, `worker`, `api` and `migrate`, each one process over Kafka
//! and ClickHouse (see deploy/README.md). They reuse the building blocks of `serve`.

use anyhow::bail;
use scribble_worker::WorkerConfig;
use tracing::info;

use crate::cli::{ApiArgs, CollectorArgs, MigrateArgs, WorkerArgs};
use crate::processes::{self, bind, Shutdown};
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
        StoreTarget::ClickHouse { url, database } => Ok((url, database)),
        StoreTarget::Embedded => {
            bail!("this command runs over ClickHouse: pass --store clickhouse://HOST:PORT/DATABASE")
        }
    }
}

pub fn collector(args: CollectorArgs) -> anyhow::Result<()> {
    let (brokers, topic) = kafka(&args.bus.bus)?;
    let projects = processes::projects(&args.projects)?;
    processes::runtime()?.block_on(async {
        let sink = processes::kafka_sink(brokers, topic, args.partitions).await?;
        let listener = bind(args.collector_addr, "collector", "--collector-addr").await?;
        let address = listener.local_addr()?;
        let shutdown = Shutdown::new();
        let collector = spawn_collector(listener, projects, sink, &shutdown);
        println!("scribble collector listening on http://{address}");
        shutdown.on_signal().await?;
        collector.await??;
        Ok(())
    })
}

pub fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let (brokers, topic) = kafka(&args.bus.bus)?;
    let (url, database) = clickhouse(&args.store.store)?;
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    processes::runtime()?.block_on(async {
        let store = processes::clickhouse(url, database).await?;
        let shutdown = Shutdown::new();
        let config = WorkerConfig {
            batch_size: args.batch_size,
            ..WorkerConfig::default()
        };
        let worker = processes::spawn_kafka_worker(
            brokers,
            topic,
            &args.group.group,
            store,
            config,
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
        Ok(())
    })
}

pub fn api(args: ApiArgs) -> anyhow::Result<()> {
    let (url, database) = clickhouse(&args.store.store)?;
    let projects = processes::projects(&args.projects)?;
    processes::runtime()?.block_on(async {
        let store = processes::clickhouse(url, database).await?;
        let listener = bind(args.api_addr, "query API", "--api-addr").await?;
        let address = listener.local_addr()?;
        let shutdown = Shutdown::new();
        let api = spawn_api(listener, projects, store, &shutdown);
        println!("scribble query API listening on http://{address}");
        shutdown.on_signal().await?;
        api.await??;
        Ok(())
    })
}

pub fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let (url, database) = clickhouse(&args.store.store)?;
    processes::runtime()?.block_on(async {
        let config = scribble_store::ClickHouseConfig {
            url: url.to_owned(),
            database: database.to_owned(),
        };
        let store = scribble_store::ClickHouseStore::connect(&config).await?;
        let applied = store.migrate().await?;
        match applied.as_slice() {
            [] => println!("{database} is up to date"),
            versions => println!("{database}: applied migrations {versions:?}"),
        }
        Ok(())
    })
}
