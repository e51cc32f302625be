//! Observability of the scale-out processes, against a real broker (a tansu of its own) and
//! the ClickHouse of `scripts/test`: the `scribble worker` process serves `/metrics`,
//! `/healthz` and `/readyz` on its own listener; once it has stored what the collector
//! accepted, its consumer lag is back at 0 and its batches and inserts are counted; the
//! collector's and the query API's `/metrics` show what they did. Fails (does not skip) without the servers.

mod common;

use std::time::{Duration, Instant};

use common::scale_out::{Stack, JOIN_PATIENCE};
use common::{batch, Server};

#[test]
fn the_worker_process_reports_its_batches_and_its_lag_back_at_zero() {
    let stack = Stack::new();
    let server = Server::start_scale_out(&stack);
    let worker = server.worker.clone().expect("a worker listener");
    assert_eq!(server.get_text(&worker, "/healthz"), (200, "ok".to_owned()));
    assert_eq!(
        server.get_text(&worker, "/readyz"),
        (200, "ready".to_owned()),
        "nothing has failed yet"
    );

    let mut sent = 0;
    for customer in ["watched-a", "watched-b", "watched-c"] {
        let (ids, body) = batch(customer, 200);
        let (status, reply) = server.post_events(&body);
        assert_eq!(status, 200, "{reply}");
        sent += ids.len();
    }
    let (status, reply) = server.post_events(&serde_json::json!([{"touchpoint": "site_visit"}]));
    assert_eq!(status, 400, "{reply}");
    server.wait_up_to(JOIN_PATIENCE, "/v1/touchpoints", |body| {
        body["events"].as_u64() == Some(sent as u64)
    });

    // Everything is stored; the lag, sampled every 5 s, is 0 in the first sample after that
    // (with the partitions counted, it is known to be taken after the group assigned them).
    let deadline = Instant::now() + Duration::from_secs(30);
    while server
        .scrape(&worker)
        .count("scribble_worker_events_stored_total", &[])
        < sent as f64
    {
        assert!(Instant::now() < deadline, "the worker never stored it all");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(5500));
    let caught_up = server.scrape(&worker);
    assert_eq!(
        caught_up.sum("scribble_worker_assigned_partitions", &[]),
        Some(3.0),
        "the only worker has every partition: {caught_up:?}"
    );
    assert_eq!(
        caught_up.sum("scribble_worker_consumer_lag_messages", &[]),
        Some(0.0),
        "{caught_up:?}"
    );
    let batches = caught_up.count("scribble_worker_batch_events_count", &[]);
    assert!(batches >= 1.0, "{batches} batches");
    assert_eq!(
        caught_up.count("scribble_worker_batch_events_sum", &[]),
        caught_up.count("scribble_worker_events_stored_total", &[])
    );
    assert_eq!(
        caught_up.count("scribble_worker_insert_duration_seconds_count", &[]),
        batches,
        "one timed insert per batch"
    );
    assert_eq!(
        caught_up.count("scribble_worker_dead_letters_total", &[]),
        0.0
    );
    assert_eq!(
        server.get_text(&worker, "/readyz"),
        (200, "ready".to_owned())
    );

    let collector = server.scrape(&server.collector);
    assert_eq!(
        collector.sum(
            "scribble_collector_events_accepted_total",
            &[("project", "default")]
        ),
        Some(sent as f64)
    );
    assert_eq!(
        collector.sum(
            "scribble_collector_events_rejected_total",
            &[("reason", "invalid_event")]
        ),
        Some(1.0)
    );
    assert_eq!(
        collector.sum("scribble_collector_kafka_in_flight_bytes", &[]),
        Some(0.0),
        "every accepted event was acknowledged"
    );
    assert!(collector
        .sum("scribble_collector_kafka_in_flight_messages", &[])
        .is_some());

    assert_eq!(server.get_text(&server.api, "/readyz").0, 200);
    let api = server.scrape(&server.api);
    assert!(
        api.count(
            "scribble_api_http_request_duration_seconds_count",
            &[("route", "/v1/touchpoints")]
        ) >= 1.0
    );
}
