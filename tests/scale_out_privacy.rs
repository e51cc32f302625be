//! Privacy on the scale-out stack (collector -> Kafka -> worker -> ClickHouse -> api, separate
//! processes): `DELETE /v1/customers/{id}` erases a whole customer from ClickHouse and late
//! events of its identities never bring it back, while other customers stay; and the worker's
//! retention sweeps remove events older than the project's retention period from the reports.
//! Needs the servers `scripts/test` starts; fails (does not skip) without them.

mod common;

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use common::scale_out::{Stack, JOIN_PATIENCE};
use common::{spawn_scribble, timeline, Server, READ_KEY, WRITE_KEY};

/// RFC 3339 time `days` ago, plus `minutes`.
fn days_ago(days: i64, minutes: i64) -> String {
    (Utc::now() - Duration::days(days) + Duration::minutes(minutes)).to_rfc3339()
}

/// One visit of each of 24 fresh visitors named `prefix-N`: with the 3 partitions of the test
/// topic, some land on every partition, so once they all show, every event sent before them
/// has been through the worker.
fn markers(prefix: &str) -> Vec<Value> {
    (0..24)
        .map(|n| json!({"touchpoint": "site_visit", "anonymous_id": format!("{prefix}-{n}")}))
        .collect()
}

fn delete(server: &Server, identity: &str) -> (u16, Value) {
    let response = reqwest::blocking::Client::new()
        .delete(format!("{}/v1/customers/{identity}", server.api))
        .bearer_auth(READ_KEY)
        .send()
        .expect("DELETE /v1/customers/{id}");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn forgotten_customers_and_expired_events_leave_clickhouse_for_good() {
    let stack = Stack::new();
    let (guard, _) = common::data_dir();
    // The worker reads the project's retention period from the projects file.
    let projects = guard.path().join("projects.json");
    let file = json!({"projects": [{
        "name": "default",
        "write_keys": [WRITE_KEY],
        "read_keys": [READ_KEY],
        "retention_days": 30,
    }]});
    std::fs::write(&projects, file.to_string()).unwrap();
    let mut server = Server::start_scale_out_without_worker(&stack);
    let (worker, _) = spawn_scribble(
        &[
            "worker",
            "--bus",
            &stack.bus,
            "--store",
            &stack.store,
            "--group",
            &stack.group,
            "--worker-addr",
            "127.0.0.1:0",
            "--projects-file",
            projects.to_str().unwrap(),
            "--retention-sweep-seconds",
            "1",
        ],
        2,
    );
    server.adopt(worker);

    // Ann (a cookie, identified, aliased to a CRM id) and Bob, both recent.
    let (status, reply) = server.post_events(&json!([
        {"touchpoint": "site_visit", "anonymous_id": "cookie-a", "timestamp": days_ago(3, 0)},
        {"type": "identify", "user_id": "ann", "anonymous_id": "cookie-a", "traits": {"persona": "researcher"}, "timestamp": days_ago(3, 1)},
        {"type": "alias", "user_id": "ann", "previous_id": "crm-1", "timestamp": days_ago(3, 2)},
        {"touchpoint": "purchase", "user_id": "ann", "timestamp": days_ago(2, 0)},
        {"touchpoint": "site_visit", "anonymous_id": "cookie-b", "timestamp": days_ago(3, 0)},
        {"touchpoint": "purchase", "anonymous_id": "cookie-b", "timestamp": days_ago(1, 0)},
    ]));
    assert_eq!((status, &reply["accepted"]), (200, &json!(6)), "{reply}");
    server.wait_up_to(JOIN_PATIENCE, "/v1/customers/crm-1/journey", |body| {
        body["customer_id"] == "u:ann" && body["touchpoints"] == 2
    });
    let bob = server.wait_until("/v1/customers/a:cookie-b/journey", |body| {
        body["touchpoints"] == 2
    });

    let (status, forgotten) = delete(&server, "a:cookie-a");
    assert_eq!(
        status, 200,
        "the deletes finish within the wait: {forgotten}"
    );
    assert_eq!(
        forgotten,
        json!({"customer_id": "u:ann", "identities": ["u:ann", "u:crm-1", "a:cookie-a"], "events": 4, "complete": true})
    );
    assert_eq!(server.get("/v1/customers/u:ann/journey").0, 404);

    // Late events naming her identities, then markers on every partition.
    let (status, _) = server.post_events(&json!([
        {"touchpoint": "site_visit", "anonymous_id": "cookie-a"},
        {"type": "identify", "user_id": "crm-1", "anonymous_id": "cookie-new"},
        {"type": "alias", "user_id": "ann-2", "previous_id": "ann"},
        {"touchpoint": "email_open", "user_id": "ann"},
    ]));
    assert_eq!(status, 200);
    let (status, _) = server.post_events(&Value::Array(markers("marker")));
    assert_eq!(status, 200);
    server.wait_until("/v1/touchpoints", |body| body["customers"] == 25);
    for identity in ["u:ann", "a:cookie-a", "u:crm-1", "a:cookie-new", "u:ann-2"] {
        let path = format!("/v1/customers/{identity}/journey");
        assert_eq!(server.get(&path).0, 404, "{identity}");
    }
    let (_, touchpoints) = server.get("/v1/touchpoints");
    assert_eq!(
        touchpoints["events"], 26,
        "bob's two and the markers': {touchpoints}"
    );
    let (_, metrics) = server.get("/v1/metrics?goal=purchase");
    assert_eq!(metrics["conversions"], 1, "only bob's purchase: {metrics}");
    assert_eq!(server.get("/v1/customers/a:cookie-b/journey").1, bob);
    assert_eq!(
        server.get("/v1/paths?view=state").1["customers"],
        25,
        "path graphs (journey fragments) agree"
    );

    // Retention: events 40 days old go at the worker's next sweep, recent ones stay; Dora's
    // old first visit named her cookie and her user id, and that link stays.
    let (status, reply) = server.post_events(&json!([
        {"touchpoint": "site_visit", "anonymous_id": "old", "timestamp": days_ago(40, 0)},
        {"touchpoint": "purchase", "anonymous_id": "old", "timestamp": days_ago(40, 5)},
        {"touchpoint": "site_visit", "anonymous_id": "cookie-d", "user_id": "dora", "timestamp": days_ago(40, 0)},
        {"touchpoint": "purchase", "user_id": "dora", "timestamp": days_ago(10, 0)},
    ]));
    assert_eq!((status, &reply["accepted"]), (200, &json!(4)), "{reply}");
    let (status, _) = server.post_events(&Value::Array(markers("after")));
    assert_eq!(status, 200);
    server.wait_until("/v1/touchpoints", |body| {
        body["customers"] == 50 && body["events"] == 51
    });
    assert_eq!(server.get("/v1/customers/a:old/journey").0, 404);
    let (_, dora) = server.get("/v1/customers/a:cookie-d/journey");
    assert_eq!(dora["customer_id"], "u:dora", "{dora}");
    assert_eq!(timeline(&dora, "touchpoint"), ["purchase"]);
    let (_, metrics) = server.get("/v1/metrics?goal=purchase");
    assert_eq!(metrics["conversions"], 2, "bob's and dora's: {metrics}");
    let (_, graph) = server.get("/v1/paths?view=state");
    assert_eq!(
        graph["customers"], 50,
        "the old visitor left the path graph: {graph}"
    );
}
