//! Privacy through the real binary on the embedded stack: the sender's address is stored
//! truncated, `scribble forget` erases a whole customer and keeps it erased (late events of its
//! identities are dropped, also after a restart), and a project's retention period removes
//! old events from reports at the next sweep while recent ones stay.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use common::{timeline, Server, READ_KEY, TEST_PROJECT_ARGS, WRITE_KEY};

/// Runs `scribble ARGS` to completion.
fn scribble(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scribble"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the scribble binary")
}

/// RFC 3339 time `days` ago, plus `minutes`.
fn days_ago(days: i64, minutes: i64) -> String {
    (Utc::now() - Duration::days(days) + Duration::minutes(minutes)).to_rfc3339()
}

/// Posts `events` with `X-Forwarded-For: forwarded_for`; the collector must accept them all.
fn post_from(server: &Server, forwarded_for: &str, events: Value) {
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/v1/events", server.collector))
        .bearer_auth(WRITE_KEY)
        .header("X-Forwarded-For", forwarded_for)
        .json(&events)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// The status of `path`'s answer (a journey: 200, or 404 once erased).
fn status_of(server: &Server, path: &str) -> u16 {
    server.get(path).0
}

#[test]
fn a_forgotten_customer_stays_forgotten_and_addresses_are_stored_truncated() {
    let (_guard, data_dir) = common::data_dir();
    let mut args = TEST_PROJECT_ARGS.to_vec();
    args.extend(["--trusted-proxy", "127.0.0.1"]);
    let server = Server::start_with(&data_dir, &args);
    // Ann: a cookie, then identified and aliased to her CRM id; Bob: someone else.
    post_from(
        &server,
        "203.0.113.77",
        json!([
            {"touchpoint": "site_visit", "anonymous_id": "cookie-a", "timestamp": days_ago(3, 0)},
            {"type": "identify", "user_id": "ann", "anonymous_id": "cookie-a", "traits": {"persona": "researcher"}, "timestamp": days_ago(3, 1)},
            {"type": "alias", "user_id": "ann", "previous_id": "crm-1", "timestamp": days_ago(3, 2)},
            {"touchpoint": "purchase", "user_id": "ann", "timestamp": days_ago(2, 0)},
        ]),
    );
    post_from(
        &server,
        "2001:db8:1234:5678::9",
        json!([
            {"touchpoint": "site_visit", "anonymous_id": "cookie-b", "timestamp": days_ago(3, 0)},
            {"touchpoint": "purchase", "anonymous_id": "cookie-b", "timestamp": days_ago(1, 0)},
        ]),
    );
    server.wait_until("/v1/touchpoints", |body| body["events"] == 4);
    let (_, ann) = server.get("/v1/customers/a:cookie-a/journey");
    assert_eq!(ann["customer_id"], "u:ann");
    assert_eq!(timeline(&ann, "ip"), ["203.0.113.0", "203.0.113.0"]);
    let (_, bob) = server.get("/v1/customers/a:cookie-b/journey");
    assert_eq!(timeline(&bob, "ip"), ["2001:db8:1234::", "2001:db8:1234::"]);

    let forgot = scribble(&["forget", "crm-1", "--api", &server.api, "--key", READ_KEY]);
    let printed = String::from_utf8_lossy(&forgot.stdout);
    assert!(
        forgot.status.success(),
        "{printed} {}",
        String::from_utf8_lossy(&forgot.stderr)
    );
    assert!(
        printed
            .starts_with("forgot customer u:ann: 4 events, identities u:ann, u:crm-1, a:cookie-a"),
        "{printed}"
    );

    // Late events naming any of her identities, alone or with new ones, then a marker: once
    // the marker shows, the worker has been past the late events.
    let (status, reply) = server.post_events(&json!([
        {"touchpoint": "site_visit", "anonymous_id": "cookie-a"},
        {"type": "identify", "user_id": "crm-1", "anonymous_id": "cookie-new"},
        {"type": "alias", "user_id": "ann-2", "previous_id": "ann"},
        {"touchpoint": "email_open", "user_id": "ann"},
    ]));
    assert_eq!((status, &reply["accepted"]), (200, &json!(4)), "{reply}");
    let (status, _) =
        server.post_events(&json!({"touchpoint": "site_visit", "anonymous_id": "marker"}));
    assert_eq!(status, 200);
    server.wait_until("/v1/customers/a:marker/journey", |body| {
        body["touchpoints"] == 1
    });
    let assert_ann_is_gone = |server: &Server| {
        for identity in ["u:ann", "a:cookie-a", "u:crm-1", "a:cookie-new", "u:ann-2"] {
            let path = format!("/v1/customers/{identity}/journey");
            assert_eq!(status_of(server, &path), 404, "{identity}");
        }
        let (_, touchpoints) = server.get("/v1/touchpoints");
        assert_eq!(
            (&touchpoints["customers"], &touchpoints["events"]),
            (&json!(2), &json!(3)),
            "bob and the marker: {touchpoints}"
        );
        let (_, metrics) = server.get("/v1/metrics?goal=purchase");
        assert_eq!(metrics["conversions"], 1, "only bob's purchase: {metrics}");
        assert_eq!(server.get("/v1/customers/a:cookie-b/journey").1, bob);
    };
    assert_ann_is_gone(&server);
    let again = scribble(&["forget", "u:ann", "--api", &server.api, "--key", READ_KEY]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The tombstones are on disk: after a restart the late events still stay out.
    assert!(server.terminate().success());
    let server = Server::start_with(&data_dir, &args);
    let (status, _) = server.post_events(&json!([
        {"touchpoint": "site_visit", "anonymous_id": "cookie-a"},
        {"touchpoint": "site_visit", "anonymous_id": "marker-2"},
    ]));
    assert_eq!(status, 200);
    server.wait_until("/v1/customers/a:marker-2/journey", |body| {
        body["touchpoints"] == 1
    });
    assert_eq!(status_of(&server, "/v1/customers/a:cookie-a/journey"), 404);
}

/// A projects file serving the test keys as project "default", keeping events `days` days.
fn projects_file(dir: &Path, days: u32) -> String {
    let path = dir.join("projects.json");
    let file = json!({"projects": [{
        "name": "default",
        "write_keys": [WRITE_KEY],
        "read_keys": [READ_KEY],
        "retention_days": days,
    }]});
    std::fs::write(&path, file.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn events_older_than_the_retention_period_leave_the_reports_at_the_next_sweep() {
    let (guard, data_dir) = common::data_dir();
    let projects = projects_file(guard.path(), 30);
    let server = Server::start_with(
        &data_dir,
        &[
            "--projects-file",
            &projects,
            "--retention-sweep-seconds",
            "1",
        ],
    );
    // Old: a visitor 40 days ago who bought then; Dora, identified 40 days ago on her first
    // visit, back 10 days ago. Recent: a visitor 10 days ago.
    let (status, reply) = server.post_events(&json!([
        {"touchpoint": "site_visit", "anonymous_id": "old", "timestamp": days_ago(40, 0)},
        {"touchpoint": "purchase", "anonymous_id": "old", "timestamp": days_ago(40, 5)},
        {"touchpoint": "site_visit", "anonymous_id": "cookie-d", "user_id": "dora", "timestamp": days_ago(40, 0)},
        {"type": "identify", "user_id": "dora", "traits": {"persona": "researcher"}, "timestamp": days_ago(40, 1)},
        {"touchpoint": "purchase", "user_id": "dora", "timestamp": days_ago(10, 0)},
        {"touchpoint": "site_visit", "anonymous_id": "recent", "timestamp": days_ago(10, 0)},
    ]));
    assert_eq!((status, &reply["accepted"]), (200, &json!(6)), "{reply}");
    let touchpoints = server.wait_until("/v1/touchpoints", |body| {
        body["events"] == 2 && body["customers"] == 2
    });
    assert_eq!(
        touchpoints["touchpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| (
                row["touchpoint"].as_str().unwrap(),
                row["events"].as_u64().unwrap()
            ))
            .collect::<Vec<_>>(),
        [("purchase", 1), ("site_visit", 1)]
    );
    assert_eq!(status_of(&server, "/v1/customers/a:old/journey"), 404);
    let (_, dora) = server.get("/v1/customers/a:cookie-d/journey");
    assert_eq!(dora["customer_id"], "u:dora", "the old link stays: {dora}");
    assert_eq!(timeline(&dora, "touchpoint"), ["purchase"]);
    assert_eq!(
        dora["traits"],
        json!({}),
        "traits recorded 40 days ago went"
    );
    let (_, metrics) = server.get("/v1/metrics?goal=purchase");
    assert_eq!(
        metrics["conversions"], 1,
        "the old purchase no longer counts"
    );
}
