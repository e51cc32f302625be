//! Rate limits keep projects apart: a project sending twenty times its limit is refused with 429
//! while another project's key keeps its latency. Its own test binary, so that no other test's
//! servers share the two cores while it measures.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::Server;

/// POSTs a 10-event batch with `key` to the collector of `server`; returns the status.
fn send(http: &reqwest::blocking::Client, server: &Server, key: &str) -> u16 {
    let batch: Vec<Value> = (0..10)
        .map(|n| json!({"touchpoint": "site_visit", "anonymous_id": format!("visitor-{n}")}))
        .collect();
    http.post(format!("{}/v1/events", server.collector))
        .bearer_auth(key)
        .json(&batch)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// Median latency of `count` sequential POSTs of a 10-event batch with `key`, each answered 200.
fn median_latency(
    http: &reqwest::blocking::Client,
    server: &Server,
    key: &str,
    count: usize,
) -> Duration {
    let mut latencies: Vec<Duration> = (0..count)
        .map(|_| {
            let start = Instant::now();
            assert_eq!(send(http, server, key), 200);
            start.elapsed()
        })
        .collect();
    latencies.sort_unstable();
    latencies[count / 2]
}

#[test]
fn a_noisy_project_over_its_limit_does_not_slow_another() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("projects.json");
    std::fs::write(
        &file,
        json!({"projects": [
            {"name": "noisy", "write_keys": ["noisy-write-key"], "read_keys": ["noisy-read-key"],
             "rate_limit": {"events_per_second": 1000, "burst": 1000}},
            {"name": "quiet", "write_keys": ["quiet-write-key"], "read_keys": ["quiet-read-key"]}
        ]})
        .to_string(),
    )
    .unwrap();
    let (_guard, data_dir) = common::data_dir();
    let http = reqwest::blocking::Client::new();
    let server = Server::start_with(&data_dir, &["--projects-file", file.to_str().unwrap()]);
    median_latency(&http, &server, "quiet-write-key", 20); // warm up connections and the queue file
    let baseline = median_latency(&http, &server, "quiet-write-key", 100);

    // The noisy project offers 20 times its limit: 200 requests of 100 events a second, open loop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = server.collector.clone();
    let noise_started = Instant::now();
    let noise: Vec<_> = (0..2)
        .map(|_| {
            let (stop, collector) = (stop.clone(), collector.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                // Serialized once: the sender's own work should not be what slows the machine.
                let batch: Vec<Value> = (0..100)
                    .map(|n| json!({"touchpoint": "ad_impression", "anonymous_id": format!("n-{n}")}))
                    .collect();
                let body = serde_json::to_vec(&batch).unwrap();
                let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
                let mut next = Instant::now();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let status = http
                        .post(format!("{collector}/v1/events"))
                        .bearer_auth("noisy-write-key")
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .unwrap()
                        .status()
                        .as_u16();
                    *statuses.entry(status).or_default() += 1;
                    next += Duration::from_millis(10);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                statuses
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let under_noise = median_latency(&http, &server, "quiet-write-key", 100);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for thread in noise {
        for (status, count) in thread.join().unwrap() {
            *statuses.entry(status).or_default() += count;
        }
    }
    let noisy_seconds = noise_started.elapsed().as_secs_f64();
    println!("quiet key median latency: {baseline:?} alone, {under_noise:?} beside the noisy key; noisy statuses {statuses:?} in {noisy_seconds:.2} s");
    // Let in: the burst, the refill while it sent, and one batch in debt per sender.
    let allowed_batches = ((1000.0 + 1000.0 * noisy_seconds) / 100.0).ceil() as usize + 2;
    let let_in = statuses.get(&200).copied().unwrap_or(0);
    assert!(
        let_in <= allowed_batches && statuses.get(&429).copied().unwrap_or(0) > let_in,
        "the noisy key was not held to its limit ({allowed_batches} batches): {statuses:?}"
    );
    assert!(
        under_noise <= baseline * 2,
        "the quiet key slowed from {baseline:?} to {under_noise:?} beside the noisy one"
    );
}
