//! The `scribble` command: runs the whole service in one process (`serve`, `demo`), or one
//! scale-out process over Kafka and ClickHouse (`collector`, `worker`, `api`, `migrate`); loads
//! exports (`import`), and prints reports from a running server (`paths`, `metrics`, `journey`,
//! and the analyst reports `funnel`, `drop-off`, `top-paths`, `influence`, `attribution`,
//! `sales-cycle`, `leads`); erases a customer through a running server (`forget`); manages
//! projects and API keys (`projects`, `keys`).

mod cli;
mod forget;
mod import;
mod processes;
mod projects;
mod report;
mod scale_out;
mod serve;
mod targets;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Reports build and drop millions of short-lived journeys; glibc's malloc and free took about a
/// quarter of a report over 10 million events.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logs(cli.log_format);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the chain of causes on one line, without a backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout carries the lines scripts wait for), filtered by `RUST_LOG`
/// (default `info`), as text or as one JSON object per line whose keys are the event's fields,
/// with its spans' fields under `spans`.
fn init_logs(format: cli::LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Text => logs.init(),
        cli::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

fn run(command: cli::Command) -> anyhow::Result<()> {
    match command {
        cli::Command::Serve(args) => serve::run(args),
        cli::Command::Demo(args) => serve::run(args.into_serve()),
        cli::Command::Import(args) => import::run(args),
        cli::Command::Paths(args) => report::paths(args),
        cli::Command::Metrics(args) => report::metrics(args),
        cli::Command::Journey(args) => report::journey(args),
        cli::Command::Funnel(args) => report::funnel(args),
        cli::Command::DropOff(args) => report::drop_off(args),
        cli::Command::TopPaths(args) => report::top_paths(args),
        cli::Command::Influence(args) => report::influence(args),
        cli::Command::Attribution(args) => report::attribution(args),
        cli::Command::SalesCycle(args) => report::sales_cycle(args),
        cli::Command::Leads(args) => report::leads(args),
        cli::Command::Forget(args) => forget::run(args),
        cli::Command::Collector(args) => scale_out::collector(args),
        cli::Command::Worker(args) => scale_out::worker(args),
        cli::Command::Api(args) => scale_out::api(args),
        cli::Command::Migrate(args) => scale_out::migrate(args),
        cli::Command::Projects(command) => projects::projects(command),
        cli::Command::Keys(command) => projects::keys(command),
    }
}
