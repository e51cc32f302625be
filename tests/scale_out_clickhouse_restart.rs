//! A scale-out fault, against a real broker (a tansu of its own) and the ClickHouse of
//! `scripts/test`: ClickHouse stopped and started again makes the worker retry with back-off,
//! then catch up, while the collector keeps accepting and the API answers 503; the worker's
//! and the API's `/readyz` say `store_unavailable` meanwhile, and the worker counts its failed
//! inserts. (Its own test binary, because it stops the ClickHouse every scale-out test uses.)

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::scale_out::{required_env, Stack, JOIN_PATIENCE};
use common::{batch, Server};

#[test]
fn clickhouse_stopped_and_started_again_the_worker_catches_up() {
    let stack = Stack::new();
    let servers_dir = required_env("SCRIBBLE_TEST_SERVERS_DIR");
    let server = Server::start_scale_out(&stack);
    let (first_ids, first) = batch("before-outage", 50);
    assert_eq!(server.post_events(&first).0, 200);
    // A new worker takes a few seconds to join its consumer group.
    server.wait_up_to(JOIN_PATIENCE, "/v1/touchpoints", |body| {
        body["events"].as_u64() == Some(first_ids.len() as u64)
    });

    let pid_file = format!("{servers_dir}/clickhouse.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(Command::new("kill").arg(&pid).status().unwrap().success());
    // Wait until the old server is gone for good: a new one cannot start while it still holds
    // its ports and data directory.
    let deadline = Instant::now() + Duration::from_secs(30);
    while process_alive(&pid) {
        assert!(Instant::now() < deadline, "ClickHouse did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The collector does not need ClickHouse: it keeps accepting. The API says to retry.
    let (second_ids, second) = batch("during-outage", 50);
    assert_eq!(server.post_events(&second).0, 200);
    let (status, body) = server.get("/v1/touchpoints");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "store_unavailable");
    // The worker fails and backs off meanwhile, committing nothing: its lag grows.
    let worker = server.worker.clone().expect("a worker listener");
    let deadline = Instant::now() + Duration::from_secs(20);
    while server
        .scrape(&worker)
        .count("scribble_worker_consumer_lag_messages", &[])
        < 1.0
    {
        assert!(Instant::now() < deadline, "no lag while nothing is stored");
        std::thread::sleep(Duration::from_millis(200));
    }
    for base in [&worker, &server.api] {
        let (status, body) = server.get_text(base, "/readyz");
        assert_eq!(status, 503, "{base}: {body}");
        assert!(body.contains("store_unavailable"), "{base}: {body}");
    }
    assert_eq!(
        server.get_text(&worker, "/healthz").0,
        200,
        "alive, not ready"
    );

    let restarted = restart_clickhouse(&servers_dir);
    std::fs::write(&pid_file, restarted).unwrap();
    let total = (first_ids.len() + second_ids.len()) as u64;
    let answer = server.wait_up_to(JOIN_PATIENCE, "/v1/touchpoints", |body| {
        body["events"].as_u64() == Some(total)
    });
    assert_eq!(answer["customers"], 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.get_text(&worker, "/readyz").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the worker never became ready again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.get_text(&server.api, "/readyz").0, 200);
    let metrics = server.scrape(&worker);
    assert!(
        metrics.count("scribble_worker_failures_total", &[("step", "insert")]) >= 1.0,
        "{metrics:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while server
        .scrape(&worker)
        .count("scribble_worker_consumer_lag_messages", &[])
        > 0.0
    {
        assert!(Instant::now() < deadline, "the lag never went back to 0");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts ClickHouse again in the background with the configuration `scripts/test-servers`
/// wrote (it outlives this test; `scripts/test-servers stop` ends it), waits for it, and returns
/// its process id.
fn restart_clickhouse(servers_dir: &str) -> String {
    let started = Command::new("sh")
        .arg("-c")
        .arg(format!("clickhouse-server --config-file={servers_dir}/clickhouse/config.xml >/dev/null 2>&1 & echo $!"))
        .output()
        .expect("start clickhouse-server again");
    let pid = String::from_utf8(started.stdout)
        .expect("a process id")
        .trim()
        .to_owned();
    let url = required_env("SCRIBBLE_TEST_CLICKHOUSE_URL");
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::blocking::get(format!("{url}/?query=SELECT%201")).is_err() {
        assert!(Instant::now() < deadline, "ClickHouse did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
    pid
}

/// Whether process `pid` still runs (a zombie waiting to be reaped no longer holds anything).
fn process_alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}
