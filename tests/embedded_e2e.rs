//! End to end over the real binary: a hand-built scenario posted to the collector (an identify
//! that arrives after the anonymous touchpoints it stitches, a duplicate event id, a rejected
//! event in a batch) comes out of the query API as exactly the journeys and path graph worked out
//! by hand below.

mod common;

use std::collections::BTreeMap;

use serde_json::{json, Value};

use common::scenario::{late_identify, touchpoints};
use common::{timeline, Server};

/// Edges of a graph answer as "from -> to" => distinct customers.
fn edges(graph: &Value) -> BTreeMap<String, u64> {
    let label = |id: &Value| -> String {
        let node = graph["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|node| &node["id"] == id)
            .unwrap();
        match node["step"].as_u64() {
            Some(step) => format!("{step}:{}", node["label"].as_str().unwrap()),
            None => node["label"].as_str().unwrap().to_owned(),
        }
    };
    graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| {
            (
                format!("{} -> {}", label(&edge["from"]), label(&edge["to"])),
                edge["customers"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn expected(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs
        .iter()
        .map(|(edge, customers)| (edge.to_string(), *customers))
        .collect()
}

#[test]
fn scenario_comes_out_as_the_hand_computed_journeys_and_graphs() {
    let (_guard, data_dir) = common::data_dir();
    let server = Server::start(&data_dir);

    // First batch: Ann's and Bob's touchpoints plus one event without a touchpoint name.
    let mut first: Vec<Value> = touchpoints()[..8].to_vec();
    first.insert(3, json!({"anonymous_id": "cookie-x", "channel": "web"}));
    let (status, reply) = server.post_events(&json!({ "batch": first }));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"], 8);
    assert_eq!(
        reply["rejected"],
        json!([{"index": 3, "field": "touchpoint", "reason": reply["rejected"][0]["reason"]}])
    );

    // Second request: Cara, plus Ann's site visit again (same event id: a sender's retry).
    let mut second: Vec<Value> = touchpoints()[8..].to_vec();
    second.push(touchpoints()[1].clone());
    let (status, reply) = server.post_events(&Value::Array(second));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["accepted"], 5,
        "the duplicate is accepted (idempotent) and stored once"
    );

    // Last: the identify that stitches cookie-a to ann, days after those touchpoints.
    let (status, reply) = server.post_events(&late_identify());
    assert_eq!(status, 200, "{reply}");
    server.wait_until("/v1/touchpoints", |body| body["events"] == 12);
    let journey = server.wait_until("/v1/customers/a:cookie-a/journey", |body| {
        body["customer_id"] == "u:ann"
    });
    assert_eq!(journey["customer_id"], "u:ann");
    assert_eq!(journey["identities"], json!(["u:ann", "a:cookie-a"]));
    assert_eq!(journey["traits"], json!({"persona": "researcher"}));
    assert_eq!(journey["touchpoints"], 5);
    assert_eq!(journey["sessions"], 3);
    assert_eq!(
        timeline(&journey, "touchpoint"),
        [
            "ad_click",
            "site_visit",
            "email_open",
            "site_visit",
            "purchase"
        ]
    );

    let (status, state) = server.get("/v1/paths?view=state");
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["customers"], 3);
    assert_eq!(
        edges(&state),
        expected(&[
            ("(start) -> ad_click", 2),
            ("(start) -> email_open", 1),
            ("ad_click -> site_visit", 2),
            ("site_visit -> email_open", 2),
            ("email_open -> site_visit", 2),
            ("site_visit -> site_visit", 1),
            ("site_visit -> purchase", 1),
            ("email_open -> purchase", 1),
            ("purchase -> (end)", 2),
            ("site_visit -> (end)", 1),
        ])
    );

    let (status, positional) = server.get("/v1/paths?view=positional&start=ad_click&steps=3");
    assert_eq!(status, 200, "{positional}");
    assert_eq!(positional["customers"], 2);
    assert_eq!(
        edges(&positional),
        expected(&[
            ("1:ad_click -> 2:site_visit", 2),
            ("2:site_visit -> 3:email_open", 1),
            ("2:site_visit -> 3:site_visit", 1)
        ])
    );

    let (status, metrics) = server.get("/v1/metrics?goal=purchase");
    assert_eq!(status, 200, "{metrics}");
    assert_eq!(metrics["customers"], 3);
    assert_eq!(metrics["conversions"], 2);

    let (status, error) = server.get("/v1/paths?view=pie");
    assert_eq!(status, 400);
    assert_eq!(error["error"], "invalid_parameter");
    assert_eq!(error["parameter"], "view");
}

#[test]
fn serve_shows_every_metric_of_the_process_on_both_listeners() {
    let (_guard, data_dir) = common::data_dir();
    let server = Server::start(&data_dir);
    let (ids, body) = common::batch("metered", 40);
    let mut events = body.as_array().unwrap().clone();
    events.push(json!({"anonymous_id": "metered"}));
    let (status, reply) = server.post_events(&Value::Array(events));
    assert_eq!(status, 200, "{reply}");
    server.wait_until("/v1/touchpoints", |body| body["events"] == ids.len());
    assert_eq!(
        server.get_text(&server.api, "/readyz"),
        (200, "ready".to_owned())
    );
    assert_eq!(
        server.get_text(&server.collector, "/readyz"),
        (200, "ready".to_owned())
    );

    for base in [&server.collector, &server.api] {
        // The worker counts a batch just after the store has it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let samples = loop {
            let samples = server.scrape(base);
            if samples.count("scribble_worker_events_stored_total", &[]) == ids.len() as f64 {
                break samples;
            }
            assert!(std::time::Instant::now() < deadline, "{base}: {samples:?}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let accepted = samples.sum(
            "scribble_collector_events_accepted_total",
            &[("project", "default")],
        );
        assert_eq!(accepted, Some(40.0), "{base}");
        let rejected = samples.sum(
            "scribble_collector_events_rejected_total",
            &[("reason", "invalid_event")],
        );
        assert_eq!(rejected, Some(1.0), "{base}");
        assert!(samples.count("scribble_worker_batch_events_count", &[]) >= 1.0);
        assert_eq!(
            samples.sum("scribble_worker_batch_events_sum", &[]),
            Some(40.0)
        );
        assert_eq!(
            samples.sum("scribble_worker_queue_backlog_events", &[]),
            Some(0.0),
            "{base}: the worker has everything the queue committed"
        );
        assert!(
            samples.count(
                "scribble_api_http_request_duration_seconds_count",
                &[("route", "/v1/touchpoints")]
            ) >= 1.0,
            "{base}"
        );
    }
}

#[test]
fn json_logs_are_one_object_per_line_with_fields_as_keys() {
    let (_guard, data_dir) = common::data_dir();
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_scribble"))
        .args([
            "serve",
            "--collector-addr",
            "127.0.0.1:0",
            "--api-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .env("SCRIBBLE_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start scribble serve");
    let mut stdout = std::io::BufRead::lines(std::io::BufReader::new(serve.stdout.take().unwrap()));
    let collector = stdout.next().expect("a listening line").unwrap();
    stdout.next().expect("a listening line").unwrap();
    // serve handles SIGTERM once it is up, just after its listeners: wait until it answers.
    let ready = format!("{}/readyz", collector.rsplit(' ').next().unwrap());
    let is_ready = || reqwest::blocking::get(&ready).is_ok_and(|reply| reply.status() == 200);
    while !is_ready() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let output = serve.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let logs: Vec<Value> = String::from_utf8(output.stderr)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let serving = logs
        .iter()
        .find(|log| log["message"] == "scribble serving")
        .unwrap_or_else(|| panic!("no serving line in {logs:?}"));
    assert_eq!(serving["level"], "INFO");
    assert_eq!(serving["bus"], "embedded", "fields are keys: {serving}");
    assert!(serving["collector_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(logs.iter().any(|log| log["message"] == "shutting down"));
}
