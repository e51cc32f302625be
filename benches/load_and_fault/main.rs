//! Load and faults: drives the embedded and the scale-out stacks at a fixed rate (open loop) for a
//! bounded time while their processes are killed and their servers stopped, then proves from the
//! stores themselves that every event id the collector acknowledged with a 2xx is stored exactly
//! once. Run it with `scripts/load-and-fault`, which starts the servers of `scripts/test-servers`
//! (ClickHouse and tansu) and calls `cargo bench --bench load_and_fault -- ARGS`.
//!
//! Faults (`--faults`), during the load:
//! - embedded (`scribble serve`): `kill-serve`, SIGKILL at 40% of the run, started again over the
//!   same data directory at once;
//! - scale-out (`scribble collector`, `--workers` workers, `scribble api`): `kill-worker`, SIGKILL
//!   to worker 1 at 10%, started again 12 s later; `pause-broker`, tansu frozen (SIGSTOP) at 45%
//!   for `--outage-seconds`; `restart-click-house`, ClickHouse stopped (SIGTERM) at 70% and
//!   started again after `--outage-seconds`. Not in the default set: `restart-broker`, tansu
//!   stopped and started again, which tansu 0.6.0 does not survive under an idempotent producer
//!   (its storage task panics on the producer's next batch, "more or less than one row" in
//!   `idempotent_message_check`, and every request fails from then on).
//!
//! The sender retries refused batches (same ids and timestamps) after `Retry-After`, and counts
//! every refusal by reason. After the load it waits (at most `--drain-seconds`) until the store
//! holds every acknowledged id, then prints offered, accepted, refused, stored, duplicates, lost
//! and the peak memory (`VmHWM`) of every process, and exits 1 if an acknowledged event is lost or
//! stored twice, or the query API counts other than the distinct events stored. Each process's
//! log stays under `target/tmp/load-and-fault/`.
//!
//! `--backpressure` measures shedding instead. For each stack it drives a series of
//! `--step-seconds` steps without faults or retries: from `--start-rate` down (by 1.5x) until the
//! whole stack keeps up, then up by 25% until the collector no longer does (a refusal, over 1% of
//! sends late, or a p99 over a second). The highest rate at which the store also caught up within
//! 3 s of the step is the sustainable rate; the highest the collector kept up with is its
//! capacity (the rest waits in the bus). Then it drives twice each of them for `--duration` at a
//! fresh stack and prints the share of 503s, latency quantiles and the resident memory of the
//! process that answers (`serve` or `collector`) over time. The sender runs on the same machine,
//! so the rates are what this machine sustains with its own load generator on it.

mod load;
mod memory;
mod stacks;
mod stored;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use load::{quantile_ms, LoadPlan, Tally};
use memory::{MemoryWatch, Peak};
use stacks::{Embedded, ScaleOut, TestServer, TestServers, WRITE_KEY};
use stored::{events_in_reports, Store};

#[derive(Debug, Parser)]
#[command(
    about = "Drive Scribble at a fixed rate while faults happen; prove nothing acknowledged is lost or doubled"
)]
struct Options {
    /// Which stack to drive.
    #[arg(long, value_enum, default_value_t = StackChoice::Both)]
    stack: StackChoice,
    /// Events per second offered (the fault run's rate).
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// Seconds of load (the fault run, or the run at twice the sustainable rate).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Events per request.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Scale-out workers in the consumer group.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// How long the broker and ClickHouse stay stopped.
    #[arg(long, default_value_t = 5)]
    outage_seconds: u64,
    /// Longest wait after the load for the store to hold every acknowledged event.
    #[arg(long, default_value_t = 120)]
    drain_seconds: u64,
    /// The faults, in the order they happen; each applies to its stack only. None: a plain load.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kill-serve,kill-worker,pause-broker,restart-click-house"
    )]
    faults: Vec<Fault>,
    /// Find each stack's sustainable rate, then drive twice that (no faults, no retries).
    #[arg(long)]
    backpressure: bool,
    /// First rate of the sustainable-rate search, events per second.
    #[arg(long, default_value_t = 10_000.0)]
    start_rate: f64,
    /// Seconds of each step of the sustainable-rate search.
    #[arg(long, default_value_t = 15)]
    step_seconds: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StackChoice {
    Embedded,
    ScaleOut,
    Both,
}

impl StackChoice {
    fn name(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::ScaleOut => "scale-out",
            Self::Both => "both",
        }
    }

    fn includes(self, stack: StackChoice) -> bool {
        self == stack || self == StackChoice::Both
    }
}

/// A running stack of either kind, for what both runs need of it.
enum Stack {
    Embedded(Embedded),
    ScaleOut(Box<ScaleOut>),
}

impl Stack {
    fn start(choice: StackChoice, options: &Options, memory: &MemoryWatch) -> Self {
        match choice {
            StackChoice::Embedded => Self::Embedded(Embedded::start(memory)),
            _ => Self::ScaleOut(Box::new(ScaleOut::start(
                TestServers::from_env(),
                options.workers,
                memory,
            ))),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Embedded(_) => "embedded",
            Self::ScaleOut(_) => "scale-out",
        }
    }

    fn events_url(&self) -> String {
        match self {
            Self::Embedded(stack) => stack.events_url(),
            Self::ScaleOut(stack) => stack.events_url(),
        }
    }

    fn api_url(&self) -> String {
        match self {
            Self::Embedded(stack) => stack.api_url(),
            Self::ScaleOut(stack) => stack.api_url(),
        }
    }

    fn store(&self) -> Store {
        match self {
            Self::Embedded(stack) => Store::Embedded {
                file: stack.store_file(),
            },
            Self::ScaleOut(stack) => Store::ClickHouse {
                url: stack.servers.clickhouse_url.clone(),
                database: stack.database.clone(),
            },
        }
    }

    /// The process that answers the senders.
    fn edge_role(&self) -> &'static str {
        match self {
            Self::Embedded(_) => "serve",
            Self::ScaleOut(_) => "collector",
        }
    }

    fn logs(&self) -> String {
        match self {
            Self::Embedded(stack) => stack.logs().display().to_string(),
            Self::ScaleOut(stack) => stack.logs().display().to_string(),
        }
    }

    /// Stops the stack's processes and removes what it wrote to the shared servers.
    fn clean_up(self) {
        if let Self::ScaleOut(stack) = self {
            stack.clean_up();
        }
    }

    /// Does the `faults` of this stack during a load of `duration` that started at `started`, and
    /// returns what happened when (seconds into the load).
    fn inflict(
        &mut self,
        faults: &[Fault],
        started: Instant,
        duration: Duration,
        outage: Duration,
        memory: &MemoryWatch,
    ) -> Vec<String> {
        let mut faults = faults.to_vec();
        faults.sort_by(|a, b| a.share_of_run().total_cmp(&b.share_of_run()));
        let timeline = Mutex::new(Vec::new());
        let note = |what: String| {
            let line = format!("{:6.1} s  {what}", started.elapsed().as_secs_f64());
            eprintln!("  {line}");
            timeline.lock().unwrap().push(line);
        };
        for fault in &faults {
            let due = started + duration.mul_f64(fault.share_of_run());
            match (fault, &mut *self) {
                (Fault::KillServe, Self::Embedded(stack)) => {
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    stack.kill(memory);
                    note("SIGKILL serve".into());
                    stack.restart(memory);
                    note("serve started again over the same data directory".into());
                }
                (Fault::KillWorker, Self::ScaleOut(stack)) => {
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    let role = ScaleOut::worker_role(0);
                    stack.kill_worker(0, memory);
                    note(format!("SIGKILL {role}"));
                    std::thread::sleep(WORKER_RESTART_DELAY);
                    stack.restart_worker(0, memory);
                    note(format!("{role} started again"));
                }
                (Fault::PauseBroker, Self::ScaleOut(stack)) => {
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    stack.servers.pause(TestServer::Broker);
                    note("tansu paused (SIGSTOP)".into());
                    std::thread::sleep(outage);
                    stack.servers.resume(TestServer::Broker);
                    note("tansu resumed (SIGCONT)".into());
                }
                (Fault::RestartBroker | Fault::RestartClickHouse, Self::ScaleOut(stack)) => {
                    let server = match fault {
                        Fault::RestartBroker => TestServer::Broker,
                        _ => TestServer::ClickHouse,
                    };
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    note(format!("stopping {} (SIGTERM)", server.role()));
                    stack.servers.stop(server, memory);
                    note(format!("{} stopped", server.role()));
                    std::thread::sleep(outage);
                    stack.servers.start(server, memory);
                    note(format!("{} answers again", server.role()));
                }
                _ => {}
            }
        }
        timeline.into_inner().unwrap()
    }
}

/// How long a killed worker stays down. Longer than the consumer session (10 s): tansu 0.6.0
/// drops a silent member only when the group next hears from someone, and never asks the members
/// left to rejoin, so a replacement that joins before the session ran out is given a share with
/// the dead member still in the group, whose partitions then stall. Kafka itself rebalances on its
/// own once the session runs out.
const WORKER_RESTART_DELAY: Duration = Duration::from_secs(12);

/// What can be done to a stack during the load, each at its own point of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Fault {
    /// Embedded: SIGKILL `scribble serve` and start it again over the same data directory.
    KillServe,
    /// Scale-out: SIGKILL worker 1 and start it again 12 s later.
    KillWorker,
    /// Scale-out: stop tansu (SIGTERM), start it again after the outage.
    RestartBroker,
    /// Scale-out: freeze tansu (SIGSTOP) for the outage, then let it run again (SIGCONT).
    PauseBroker,
    /// Scale-out: stop ClickHouse (SIGTERM), start it again after the outage.
    RestartClickHouse,
}

impl Fault {
    /// When in the run the fault starts.
    fn share_of_run(self) -> f64 {
        match self {
            Self::KillWorker => 0.1,
            Self::KillServe => 0.4,
            Self::RestartBroker | Self::PauseBroker => 0.45,
            Self::RestartClickHouse => 0.7,
        }
    }
}

/// The result of one fault run on one stack.
struct FaultRun {
    stack: &'static str,
    tally: Tally,
    drained_after: Option<Duration>,
    /// Acknowledged ids found in the store, ids stored more than once, acknowledged ids missing.
    stored: u64,
    duplicates: u64,
    lost: u64,
    /// Ids stored that no 2xx acknowledged (refused or cut off, yet written).
    unacknowledged_stored: u64,
    rows: u64,
    distinct: u64,
    in_reports: Option<u64>,
    faults: Vec<String>,
    peaks_mib: BTreeMap<String, f64>,
    logs: String,
}

fn main() -> ExitCode {
    let options = Options::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stacks: Vec<StackChoice> = [StackChoice::Embedded, StackChoice::ScaleOut]
        .into_iter()
        .filter(|stack| options.stack.includes(*stack))
        .collect();
    if options.backpressure {
        for stack in stacks {
            backpressure(&runtime, stack, &options);
        }
        return ExitCode::SUCCESS;
    }
    let runs: Vec<FaultRun> = stacks
        .into_iter()
        .map(|stack| fault_run(&runtime, stack, &options))
        .collect();
    print_fault_runs(&runs, &options);
    let broken = runs.iter().any(|run| {
        run.lost > 0
            || run.duplicates > 0
            || run.in_reports.is_some_and(|events| events != run.distinct)
    });
    if broken {
        eprintln!("FAILED: acknowledged events were lost or stored twice, or reports count them otherwise");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// One stack under load and faults, then read back.
fn fault_run(
    runtime: &tokio::runtime::Runtime,
    choice: StackChoice,
    options: &Options,
) -> FaultRun {
    let memory = MemoryWatch::start();
    memory.watch("load client", std::process::id(), Peak::Sampled);
    let mut stack = Stack::start(choice, options, &memory);
    eprintln!(
        "== {}: {} events/s in batches of {} for {} s",
        stack.name(),
        options.rate,
        options.batch,
        options.duration
    );
    let duration = Duration::from_secs(options.duration);
    let plan = LoadPlan {
        url: stack.events_url(),
        write_key: WRITE_KEY.into(),
        events_per_second: options.rate,
        batch: options.batch,
        duration,
        retry: true,
        retry_window: Duration::from_secs(15),
    };
    let started = Instant::now();
    let (tally, faults) = std::thread::scope(|scope| {
        let stack = &mut stack;
        let memory = &memory;
        let outage = Duration::from_secs(options.outage_seconds);
        let faults =
            scope.spawn(move || stack.inflict(&options.faults, started, duration, outage, memory));
        let tally = runtime.block_on(load::run(plan));
        let faults = faults.join().expect("fault script");
        (tally, faults)
    });
    let store = stack.store();
    let drained_after = drain(&store, &tally, Duration::from_secs(options.drain_seconds));
    memory.sample_now();
    let stored = store.read();
    let in_reports = events_in_reports(&stack.api_url());
    let acknowledged: std::collections::HashSet<uuid::Uuid> =
        tally.acknowledged.iter().copied().collect();
    assert_eq!(
        acknowledged.len(),
        tally.acknowledged.len(),
        "every batch has ids of its own"
    );
    let copies = |id: &uuid::Uuid| stored.copies.get(id).copied().unwrap_or(0);
    let run = FaultRun {
        stack: stack.name(),
        stored: acknowledged.iter().filter(|id| copies(id) > 0).count() as u64,
        duplicates: stored.copies.values().filter(|count| **count > 1).count() as u64,
        lost: acknowledged.iter().filter(|id| copies(id) == 0).count() as u64,
        unacknowledged_stored: stored
            .copies
            .keys()
            .filter(|id| !acknowledged.contains(id))
            .count() as u64,
        rows: stored.rows,
        distinct: stored.copies.len() as u64,
        in_reports,
        drained_after,
        tally,
        faults,
        peaks_mib: memory.peaks_mib(),
        logs: stack.logs(),
    };
    stack.clean_up();
    run
}

/// Waits until the store holds every acknowledged id (or `patience` ran out); how long it took.
fn drain(store: &Store, tally: &Tally, patience: Duration) -> Option<Duration> {
    let started = Instant::now();
    let wanted = tally.acknowledged.len() as u64;
    loop {
        let distinct = store.stored_events().unwrap_or(0);
        if distinct >= wanted {
            let stored = store.read();
            if tally
                .acknowledged
                .iter()
                .all(|id| stored.copies.contains_key(id))
            {
                return Some(started.elapsed());
            }
        }
        if started.elapsed() > patience {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn print_fault_runs(runs: &[FaultRun], options: &Options) {
    println!();
    println!(
        "load and faults: {} events/s offered in batches of {} for {} s",
        options.rate, options.batch, options.duration,
    );
    println!(
        "{:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>6} {:>6}",
        "stack", "offered", "accepted", "refused", "given up", "stored", "dupes", "lost", "late"
    );
    for run in runs {
        println!(
            "{:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>6} {:>6}",
            run.stack,
            run.tally.offered,
            run.tally.acknowledged.len(),
            run.tally.refused_requests(),
            run.tally.given_up,
            run.stored,
            run.duplicates,
            run.lost,
            run.tally.late_sends,
        );
    }
    println!("(accepted, stored, given up, dupes and lost count events; refused counts requests; late: sends started over 10 ms after their slot)");
    for run in runs {
        println!();
        println!("{}:", run.stack);
        println!("  requests sent: {} (retries included)", run.tally.attempts);
        for (reason, refusals) in &run.tally.refused {
            println!(
                "  refused {reason}: {} requests ({} events)",
                refusals.requests, refusals.events
            );
        }
        match run.drained_after {
            Some(after) => println!(
                "  store held every acknowledged event {:.1} s after the load",
                after.as_secs_f64()
            ),
            None => println!(
                "  store did NOT hold every acknowledged event {} s after the load",
                options.drain_seconds
            ),
        }
        println!(
            "  store: {} distinct ids in {} rows ({} never acknowledged: refused or cut off, yet written); reports count {}",
            run.distinct,
            run.rows,
            run.unacknowledged_stored,
            run.in_reports.map_or("(no answer)".into(), |events| events.to_string()),
        );
        let mut accepted = run.tally.accepted_latency_us.clone();
        println!(
            "  latency of 2xx: p50 {} ms, p99 {} ms",
            format_ms(quantile_ms(&mut accepted, 0.5)),
            format_ms(quantile_ms(&mut accepted, 0.99))
        );
        for line in &run.faults {
            println!("  {line}");
        }
        let peaks: Vec<String> = run
            .peaks_mib
            .iter()
            .map(|(role, mib)| format!("{role} {mib:.0}"))
            .collect();
        println!("  peak memory (VmHWM, MiB): {}", peaks.join(", "));
        println!("  logs: {}", run.logs);
    }
}

fn format_ms(value: Option<f64>) -> String {
    value.map_or("-".into(), |ms| format!("{ms:.1}"))
}

/// One load without faults or retries on a running stack, and how the stack coped.
struct Step {
    rate: f64,
    tally: Tally,
    /// How long after the load the store held every acknowledged event (`None`: not within the
    /// drain patience).
    caught_up_after: Option<Duration>,
}

/// How long after a step the store may take to hold the step's events for the stack to count as
/// keeping up: a backlog that grew during the step takes longer to drain.
const CAUGHT_UP_WITHIN: Duration = Duration::from_secs(3);

impl Step {
    /// The collector answered every request with a 2xx, in time (p99 under a second), and the
    /// sender kept its schedule (at most 1% of sends late, so the rate was really offered).
    fn collector_keeps_up(&self) -> bool {
        let mut accepted = self.tally.accepted_latency_us.clone();
        let sends = self.tally.attempts.max(1);
        self.tally.refused_requests() == 0
            && self.tally.late_sends * 100 <= sends
            && quantile_ms(&mut accepted, 0.99).is_some_and(|p99| p99 < 1000.0)
    }

    /// The collector keeps up, and so does the worker: the store held the events within
    /// [`CAUGHT_UP_WITHIN`] of the end of the load.
    fn stack_keeps_up(&self) -> bool {
        self.collector_keeps_up()
            && self
                .caught_up_after
                .is_some_and(|after| after <= CAUGHT_UP_WITHIN)
    }

    fn accepted_share(&self) -> f64 {
        self.tally.acknowledged.len() as f64 / self.tally.offered.max(1) as f64
    }
}

/// Drives `rate` at `stack` for `duration` (no faults, no retries), then waits (at most
/// `patience`) for the store to hold `stored_before` plus what was acknowledged.
fn step(
    runtime: &tokio::runtime::Runtime,
    stack: &Stack,
    rate: f64,
    duration: Duration,
    batch: usize,
    stored_before: u64,
    patience: Duration,
) -> Step {
    let plan = LoadPlan {
        url: stack.events_url(),
        write_key: WRITE_KEY.into(),
        events_per_second: rate,
        batch,
        duration,
        retry: false,
        retry_window: Duration::ZERO,
    };
    let tally = runtime.block_on(load::run(plan));
    let store = stack.store();
    let wanted = stored_before + tally.acknowledged.len() as u64;
    let started = Instant::now();
    let caught_up_after = loop {
        if store.stored_events().unwrap_or(0) >= wanted {
            break Some(started.elapsed());
        }
        if started.elapsed() > patience {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Step {
        rate,
        tally,
        caught_up_after,
    }
}

fn print_step(step: &Step) {
    let mut accepted = step.tally.accepted_latency_us.clone();
    let verdict = match (step.collector_keeps_up(), step.stack_keeps_up()) {
        (true, true) => "both keep up",
        (true, false) => "collector keeps up, store falls behind",
        _ => "collector does not keep up",
    };
    println!(
        "  {:>8.0} events/s: accepted {:>5.1}%, refused {:>5} requests, late sends {:>4}, p50 {:>6} ms, p99 {:>7} ms, store caught up {:>6}: {verdict}",
        step.rate,
        100.0 * step.accepted_share(),
        step.tally.refused_requests(),
        step.tally.late_sends,
        format_ms(quantile_ms(&mut accepted, 0.5)),
        format_ms(quantile_ms(&mut accepted, 0.99)),
        step.caught_up_after
            .map_or("never".into(), |after| format!("{:.1} s", after.as_secs_f64())),
    );
}

/// Finds the rates one stack sustains (end to end, and at the collector alone), then drives
/// twice each on a fresh stack and reports how it sheds.
fn backpressure(runtime: &tokio::runtime::Runtime, choice: StackChoice, options: &Options) {
    let step_duration = Duration::from_secs(options.step_seconds);
    let patience = Duration::from_secs(options.drain_seconds);
    let (sustainable, collector_capacity) = {
        let memory = MemoryWatch::start();
        let stack = Stack::start(choice, options, &memory);
        println!(
            "{}: rates it keeps up with, steps of {} s in batches of {}:",
            stack.name(),
            options.step_seconds,
            options.batch
        );
        let mut stored = 0;
        let mut run_step = |rate: f64| {
            let result = step(
                runtime,
                &stack,
                rate,
                step_duration,
                options.batch,
                stored,
                patience,
            );
            print_step(&result);
            stored = stack.store().stored_events().unwrap_or(stored);
            result
        };
        // Down from the first rate until the whole stack keeps up, then up until the collector
        // no longer does.
        let mut rate = options.start_rate;
        while !run_step(rate).stack_keeps_up() {
            rate /= 1.5;
            if rate < options.batch as f64 {
                println!("  {} keeps up with no rate at all", choice.name());
                stack.clean_up();
                return;
            }
        }
        let (mut sustainable, mut collector_capacity) = (rate, rate);
        loop {
            rate *= 1.25;
            let result = run_step(rate);
            if result.stack_keeps_up() {
                sustainable = rate;
            }
            if !result.collector_keeps_up() {
                break;
            }
            collector_capacity = rate;
        }
        stack.clean_up();
        (sustainable, collector_capacity)
    };
    println!(
        "  sustainable: {sustainable:.0} events/s end to end; the collector alone {collector_capacity:.0} events/s"
    );
    for (what, rate) in [
        ("the sustainable rate", sustainable),
        ("the collector's rate", collector_capacity),
    ] {
        overload(runtime, choice, options, what, 2.0 * rate);
    }
}

/// Drives `rate` (twice `what`) at a fresh stack for `--duration` without retries, and prints
/// the share of refusals, latency and the edge process's memory over time.
fn overload(
    runtime: &tokio::runtime::Runtime,
    choice: StackChoice,
    options: &Options,
    what: &str,
    rate: f64,
) {
    let memory = MemoryWatch::start();
    memory.watch("load client", std::process::id(), Peak::Sampled);
    let stack = Stack::start(choice, options, &memory);
    let from_seconds = memory.now_seconds();
    let result = step(
        runtime,
        &stack,
        rate,
        Duration::from_secs(options.duration),
        options.batch,
        0,
        Duration::from_secs(options.drain_seconds),
    );
    memory.sample_now();
    let tally = &result.tally;
    let mut accepted = tally.accepted_latency_us.clone();
    let mut refused = tally.refused_latency_us.clone();
    println!(
        "  {}, twice {what}: {rate:.0} events/s for {} s, no retries",
        stack.name(),
        options.duration
    );
    println!(
        "    offered {} events in {} requests; accepted {:.1}%; 503 for {:.1}% of requests",
        tally.offered,
        tally.attempts,
        100.0 * result.accepted_share(),
        100.0 * tally.refused_requests_starting("503") as f64 / tally.attempts.max(1) as f64,
    );
    for (reason, refusals) in &tally.refused {
        println!("    refused {reason}: {} requests", refusals.requests);
    }
    println!(
        "    latency of 2xx: p50 {} ms, p99 {} ms; of refusals: p50 {} ms, p99 {} ms; late sends {} (worst {:.0} ms)",
        format_ms(quantile_ms(&mut accepted, 0.5)),
        format_ms(quantile_ms(&mut accepted, 0.99)),
        format_ms(quantile_ms(&mut refused, 0.5)),
        format_ms(quantile_ms(&mut refused, 0.99)),
        tally.late_sends,
        tally.worst_lateness.as_secs_f64() * 1000.0,
    );
    println!(
        "    store caught up {}, holding {} events",
        result.caught_up_after.map_or(
            format!("not within {} s", options.drain_seconds),
            |after| format!("{:.1} s after the load", after.as_secs_f64())
        ),
        stack.store().stored_events().unwrap_or(0),
    );
    let series: Vec<String> = memory
        .resident_mib_series(stack.edge_role(), from_seconds, 5.0)
        .iter()
        .map(|mib| mib.map_or("-".into(), |mib| format!("{mib:.0}")))
        .collect();
    println!(
        "    {} resident MiB, highest of every 5 s (the load, then the drain): {}",
        stack.edge_role(),
        series.join(" ")
    );
    let peaks: Vec<String> = memory
        .peaks_mib()
        .iter()
        .map(|(role, mib)| format!("{role} {mib:.0}"))
        .collect();
    println!("    peak memory (VmHWM, MiB): {}", peaks.join(", "));
    stack.clean_up();
}
