//! `scribble serve`: collector, worker and query API in one process over the embedded queue and
//! store in `--data-dir`. With `--demo`, the generated data set is queued first.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use scribble_bus::EmbeddedQueue;
use scribble_collector::CollectorConfig;
use scribble_domain::demo::{self, DemoOptions};
use scribble_domain::project::{Project, Projects};
use scribble_query_api::ApiConfig;
use scribble_store::EmbeddedStore;
use scribble_worker::WorkerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cli::ServeArgs;

/// Events per queue append while loading the demo set.
const DEMO_CHUNK: usize = 5_000;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

/// The projects served: from `--projects-file` when given, else the one project of the flags.
fn projects(args: &ServeArgs) -> anyhow::Result<Projects> {
    let projects = match &args.projects_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the projects file {}", path.display()))?;
            serde_json::from_str::<Projects>(&text).with_context(|| {
                format!(
                    "{} is not a projects file (see README, Projects)",
                    path.display()
                )
            })?
        }
        None => {
            if args.write_key == "dev-write-key" || args.read_key == "dev-read-key" {
                warn!("using the development keys; set --write-key and --read-key before exposing Scribble");
            }
            Projects {
                projects: vec![Project {
                    name: args.project.clone(),
                    write_keys: vec![args.write_key.clone()],
                    read_keys: vec![args.read_key.clone()],
                    redirect_hosts: args.redirect_hosts.clone(),
                }],
            }
        }
    };
    projects
        .check()
        .context("the project settings cannot be served")?;
    Ok(projects)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let queue = Arc::new(
        EmbeddedQueue::open(&args.data_dir.join("queue.db"))
            .context("cannot open the embedded queue")?,
    );
    let store_path = args.data_dir.join("store.db");
    let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&store_path))
        .await?
        .context("cannot open the embedded store")?;
    let store = Arc::new(store);
    let projects = projects(&args)?;
    // The demo data set goes to the first project.
    let demo_project = projects.projects[0].name.clone();

    let (stop, stopped) = watch::channel(false);
    let shutdown = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };

    let collector_listener = TcpListener::bind(args.collector_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the collector; pick another with --collector-addr",
                args.collector_addr
            )
        })?;
    let api_listener = TcpListener::bind(args.api_addr).await.with_context(|| {
        format!(
            "cannot listen on {} for the query API; pick another with --api-addr",
            args.api_addr
        )
    })?;
    let collector_addr = collector_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;

    let worker = tokio::spawn(scribble_worker::run(
        queue.clone(),
        store.clone(),
        WorkerConfig::default(),
        shutdown(),
    ));
    let collector_router = scribble_collector::router(
        Arc::new(CollectorConfig::new(projects.clone())),
        queue.clone(),
    );
    let collector = tokio::spawn(scribble_collector::serve(
        collector_listener,
        collector_router,
        shutdown(),
    ));
    let api_router =
        scribble_query_api::router(Arc::new(ApiConfig::new(projects)), Arc::new(store.clone()));
    let api = tokio::spawn(scribble_query_api::serve(
        api_listener,
        api_router,
        shutdown(),
    ));

    // Printed on stdout (logs go to stderr) so scripts and tests can wait for it.
    println!("scribble collector listening on http://{collector_addr}");
    println!("scribble query API listening on http://{api_addr}");
    info!(%collector_addr, %api_addr, data_dir = %args.data_dir.display(), "scribble serving");

    if args.demo {
        load_demo(&queue, &demo_project, &args).await?;
        println!("demo data queued; try: curl -H 'Authorization: Bearer {}' 'http://{api_addr}/v1/paths?format=mermaid'", args.read_key);
    }

    stop_requested().await?;
    info!("shutting down");
    stop.send_replace(true);
    collector.await??;
    api.await??;
    worker.await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` and systemd send).
async fn stop_requested() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted.context("cannot listen for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// Queues the demo data set into `project`. Ids are derived from the seed, so loading twice stores it once.
async fn load_demo(queue: &EmbeddedQueue, project: &str, args: &ServeArgs) -> anyhow::Result<()> {
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
        queue.append(project, chunk).await?;
        progress.inc(chunk.len() as u64);
    }
    progress.finish();
    info!(
        events = events.len(),
        customers = args.demo_customers,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "demo data queued"
    );
    Ok(())
}
