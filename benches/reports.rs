//! Report latency over a large event set, ClickHouse next to the embedded store, a load script
//! run against the real ClickHouse `scripts/test-servers` starts:
//!
//! ```sh
//! eval "$(scripts/test-servers start /tmp/scribble-bench-servers)"
//! cargo bench --bench reports
//! scripts/test-servers stop /tmp/scribble-bench-servers
//! ```
//!
//! Generates `SCRIBBLE_BENCH_REPORT_EVENTS` touchpoints (default 10,000,000; ten per customer,
//! a third of the customers identified, some buying), writes them through the ClickHouse store
//! as a worker does (events, identities and journey fragments) and times, median of 3, each
//! report the query API serves: the state and positional path graphs, a 5-step funnel,
//! attribution (all six models, Markov included) and top paths. Then it generates the same
//! events again into an embedded journey book and times the same reports there: each store is
//! timed in a process holding only its own data, as a query API serving it would (with the
//! book resident, the ClickHouse side's reading and assembly of a million journeys ran about
//! a fifth slower). The embedded store's time is the baseline; every answer is checked to
//! be the same in both stores. With `SCRIBBLE_BENCH_KEEP_DATABASE` set, the ClickHouse database
//! is kept (and named) for a closer look at the queries; `SCRIBBLE_BENCH_DATABASE=NAME` reads a
//! kept one again instead of writing a new one (the events are generated the same way, so the
//! embedded side matches it). `RUST_LOG=scribble_store=debug` shows where a report's time goes.

// Each benchmark uses part of the shared support.
#[allow(dead_code)]
mod support;

use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use scribble_domain::attribution::{attribution, AttributionOptions};
use scribble_domain::event::{default_channel, default_direct, Body, Event, Who};
use scribble_domain::funnel::{funnel, FunnelOptions, FunnelStep};
use scribble_domain::journey::JourneySet;
use scribble_domain::paths::{positional_graph, state_graph, GraphView, PathOptions};
use scribble_domain::stitch::{JourneyBook, JourneyFilter};
use scribble_domain::top_paths::{top_paths, TopPathsOptions};
use scribble_store::{ClickHouseConfig, ClickHouseStore, JourneyStore};
use serde_json::Map;
use support::{env_number, median_seconds};
use uuid::Uuid;

/// The allocator the `scribble` binary runs with, so the figures are the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PROJECT: &str = "bench";
const TOUCHPOINTS: [&str; 11] = [
    "ad_click",
    "chat_started",
    "email_click",
    "email_open",
    "form_submit",
    "review_read",
    "site_visit",
    "store_visit",
    "support_ticket",
    "trial_start",
    "webinar",
];
const START_MS: i64 = 1_767_225_600_000;
const DAY_MS: i64 = 24 * 3600 * 1000;
/// Customers generated and written per round, to keep memory flat.
const CHUNK_CUSTOMERS: usize = 50_000;

fn main() {
    let clickhouse = std::env::var("SCRIBBLE_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| {
        panic!("SCRIBBLE_TEST_CLICKHOUSE_URL is not set: start the servers with `eval \"$(scripts/test-servers start DIR)\"` first")
    });
    let events = env_number("SCRIBBLE_BENCH_REPORT_EVENTS", 10_000_000);
    let customers = events / 10;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let kept = std::env::var("SCRIBBLE_BENCH_DATABASE").ok();
    runtime.block_on(async {
        let database = kept
            .clone()
            .unwrap_or_else(|| format!("scribble_bench_{}", Uuid::new_v4().simple()));
        let store = ClickHouseStore::connect(&ClickHouseConfig {
            url: clickhouse.clone(),
            database: database.clone(),
        })
        .await
        .expect("ClickHouse");
        store.migrate().await.expect("migrate");

        let started = Instant::now();
        let mut written = 0;
        if kept.is_none() {
            for chunk in customer_chunks(customers) {
                let chunk = generate(chunk);
                let pairs: Vec<(&str, &Event)> =
                    chunk.iter().map(|event| (PROJECT, event)).collect();
                store.insert(&pairs).await.expect("insert");
                written += chunk.len();
                eprint!("\r  written {written} events of about {}", customers * 11);
            }
            eprintln!();
        }
        let written_s = started.elapsed().as_secs_f64();

        // Each store is timed in a process holding only its own data, as a query API serving
        // it would: the ClickHouse reports first, then the embedded journey book is built.
        let filter = JourneyFilter::default();
        let options = PathOptions::default();
        let views = [GraphView::State, GraphView::Positional];
        let graphs: Vec<_> = views
            .iter()
            .map(|&view| {
                timed(|| {
                    runtime_block(&store, |store| {
                        store.path_graph(PROJECT, &filter, view, &options)
                    })
                })
            })
            .collect();
        let reports = reports();
        let answers: Vec<(f64, serde_json::Value)> = reports
            .iter()
            .map(|(_, report)| {
                timed(|| {
                    let set = runtime_block(&store, |store| {
                        store.journeys_without_properties(PROJECT, &filter)
                    });
                    report(&set)
                })
            })
            .collect();

        let mut book = JourneyBook::new();
        for chunk in customer_chunks(customers) {
            for event in &generate(chunk) {
                book.add(event);
            }
        }
        println!(
            "reports over {} events ({} touchpoints) of {customers} customers{}; median of 3:",
            book.event_count(),
            book.touch_count(),
            if kept.is_none() {
                format!(", written in {written_s:.0} s")
            } else {
                String::new()
            },
        );
        println!("  {:<34} {:>10} {:>10} {:>8}", "report", "ClickHouse", "embedded", "ratio");
        for (view, (clickhouse_s, from_clickhouse)) in views.iter().zip(graphs) {
            let (embedded_s, from_embedded) = timed(|| {
                let set = book.journeys(&filter);
                match view {
                    GraphView::State => state_graph(&set, &options),
                    GraphView::Positional => positional_graph(&set, &options),
                }
            });
            assert_eq!(from_clickhouse, from_embedded, "{view:?} graph");
            row(&format!("{view:?} path graph").to_lowercase(), clickhouse_s, embedded_s);
        }
        for ((name, report), (clickhouse_s, from_clickhouse)) in reports.iter().zip(answers) {
            let (embedded_s, from_embedded) = timed(|| report(&book.journeys(&filter)));
            assert_eq!(from_clickhouse, from_embedded, "{name}");
            row(name, clickhouse_s, embedded_s);
        }
        println!("  (ClickHouse: path graphs counted in SQL; other reports on journeys read from the journey fragments, one packed row per fragment. Embedded: the journey book in memory. Each store timed in a process holding only its own data.)");

        if kept.is_some() || std::env::var_os("SCRIBBLE_BENCH_KEEP_DATABASE").is_some() {
            println!("  kept the database {database} for a closer look (SCRIBBLE_BENCH_KEEP_DATABASE)");
            return;
        }
        reqwest::Client::new()
            .post(&clickhouse)
            .body(format!("DROP DATABASE {database}"))
            .send()
            .await
            .and_then(|response| response.error_for_status())
            .expect("drop the bench database");
    });
}

/// The customer numbers `0..customers` in rounds of [`CHUNK_CUSTOMERS`], generated and
/// written one round at a time.
fn customer_chunks(customers: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..customers)
        .step_by(CHUNK_CUSTOMERS)
        .map(move |first| first..(first + CHUNK_CUSTOMERS).min(customers))
}

/// Runs the store call on the current runtime from synchronous timing code.
fn runtime_block<'a, T, F>(
    store: &'a ClickHouseStore,
    call: impl FnOnce(&'a ClickHouseStore) -> F,
) -> T
where
    F: std::future::Future<Output = Result<T, scribble_store::StoreError>>,
{
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current()
            .block_on(call(store))
            .expect("ClickHouse report")
    })
}

/// Median seconds of 3 runs of `report`, and its answer.
fn timed<T>(mut report: impl FnMut() -> T) -> (f64, T) {
    let mut answer = None;
    let seconds = median_seconds(3, || answer = Some(report()));
    (seconds, answer.expect("ran at least once"))
}

/// An answer as JSON, to compare the stores' answers.
fn json(answer: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(answer).expect("json")
}

/// A report over a journey set, as JSON to compare the stores' answers.
type Report = Box<dyn Fn(&JourneySet) -> serde_json::Value>;

/// The reports timed on journeys, each with its name: a 5-step funnel, attribution (all six
/// models, Markov included) and top paths.
fn reports() -> Vec<(&'static str, Report)> {
    let steps = [
        "site_visit",
        "email_open",
        "form_submit",
        "trial_start",
        "purchase",
    ];
    let funnel_options = FunnelOptions {
        window_ms: Some(30 * DAY_MS),
        ..FunnelOptions::new(steps.iter().map(|step| FunnelStep::new(*step)).collect())
    };
    let attribution_options = AttributionOptions::new("purchase");
    let top_options = TopPathsOptions {
        goal: Some("purchase".to_owned()),
        ..TopPathsOptions::default()
    };
    vec![
        (
            "funnel, 5 steps, 30-day window",
            Box::new(move |set| json(funnel(set, &funnel_options).expect("funnel"))),
        ),
        (
            "attribution, six models incl. Markov",
            Box::new(move |set| json(attribution(set, &attribution_options).expect("attribution"))),
        ),
        (
            "top paths, 20 of up to 10 steps",
            Box::new(move |set| json(top_paths(set, &top_options))),
        ),
    ]
}

fn row(name: &str, clickhouse_s: f64, embedded_s: f64) {
    println!(
        "  {name:<34} {clickhouse_s:>9.2}s {embedded_s:>9.2}s {:>7.1}x",
        clickhouse_s / embedded_s
    );
}

/// The events of `customers`: each sees about ten touchpoints over up to 60 days; a third
/// identify themselves (so their anonymous touches are stitched to a user id) and some of those
/// buy. Deterministic per customer number.
fn generate(customers: std::ops::Range<usize>) -> Vec<Event> {
    let mut events = Vec::with_capacity(customers.len() * 11);
    for customer in customers {
        let mut rng = SmallRng::seed_from_u64(customer as u64);
        let anonymous = Who {
            anonymous_id: Some(format!("v{customer}")),
            user_id: None,
        };
        let first_ms = START_MS + rng.gen_range(0..60 * DAY_MS);
        let mut at_ms = first_ms;
        let identified = customer % 3 == 0;
        let touches = rng.gen_range(8..=12);
        for n in 0..touches {
            at_ms += rng.gen_range(0..2 * DAY_MS);
            let touchpoint = if identified && n + 1 == touches && rng.gen_bool(0.6) {
                "purchase"
            } else {
                TOUCHPOINTS[rng.gen_range(0..TOUCHPOINTS.len())]
            };
            let who = if identified && n > touches / 2 {
                Who {
                    anonymous_id: None,
                    user_id: Some(format!("u{customer}")),
                }
            } else {
                anonymous.clone()
            };
            events.push(touch(&mut rng, at_ms, who, touchpoint));
        }
        if identified {
            events.push(Event {
                event_id: Uuid::from_u128(rng.gen()),
                at_ms: first_ms + DAY_MS,
                received_ms: first_ms + DAY_MS,
                who: Who {
                    anonymous_id: Some(format!("v{customer}")),
                    user_id: Some(format!("u{customer}")),
                },
                body: Body::Identify { traits: Map::new() },
                ip: None,
            });
        }
    }
    events
}

fn touch(rng: &mut SmallRng, at_ms: i64, who: Who, touchpoint: &str) -> Event {
    let channel = default_channel(touchpoint);
    Event {
        event_id: Uuid::from_u128(rng.gen()),
        at_ms,
        received_ms: at_ms,
        who,
        body: Body::Touchpoint {
            touchpoint: touchpoint.to_owned(),
            channel: channel.to_owned(),
            direct: default_direct(channel),
            properties: Map::new(),
        },
        ip: None,
    }
}
