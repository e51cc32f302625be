//! The scale-out path gives the same answers as the embedded one: the same events (the
//! hand-built scenario with a late identify, a duplicate and a full replay, plus generated demo
//! journeys) go through `scribble serve` on the embedded stack and through the separate
//! `collector` -> Kafka -> `worker` -> ClickHouse -> `api` processes, and every report must be
//! identical. Needs the servers `scripts/test` starts; fails (does not skip) without them.

mod common;

use scribble_domain::demo::{generate, DemoOptions};
use scribble_domain::event::Body;
use serde_json::{json, Value};

use common::scale_out::{Stack, JOIN_PATIENCE};
use common::scenario::{late_identify, touchpoints};
use common::Server;

fn send_everything(server: &Server, demo: &[Value]) {
    let mut first: Vec<Value> = touchpoints()[..8].to_vec();
    first.insert(3, json!({"anonymous_id": "cookie-x", "channel": "web"}));
    let mut second: Vec<Value> = touchpoints()[8..].to_vec();
    second.push(touchpoints()[1].clone());
    for body in [
        json!({ "batch": first }),
        Value::Array(second),
        json!({ "batch": first }),
        late_identify(),
    ] {
        let (status, reply) = server.post_events(&body);
        assert_eq!(status, 200, "{reply}");
    }
    for chunk in demo.chunks(500) {
        let (status, reply) = server.post_events(&Value::Array(chunk.to_vec()));
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["rejected"], json!([]), "demo events are valid");
    }
}

#[test]
fn scale_out_answers_equal_the_embedded_answers() {
    let stack = Stack::new();

    let demo_events = generate(&DemoOptions {
        customers: 400,
        ..Default::default()
    });
    let demo_touchpoints = demo_events
        .iter()
        .filter(|event| matches!(event.body, Body::Touchpoint { .. }))
        .count();
    let demo: Vec<Value> = demo_events.iter().map(|event| event.to_wire()).collect();
    let expected_touchpoints = (12 + demo_touchpoints) as u64;

    let (_guard, data_dir) = common::data_dir();
    let embedded = Server::start(&data_dir);
    let scale_out = Server::start_scale_out(&stack);
    for server in [&embedded, &scale_out] {
        send_everything(server, &demo);
        // A new worker takes a few seconds to join its consumer group.
        server.wait_up_to(JOIN_PATIENCE, "/v1/touchpoints", |body| {
            body["events"] == expected_touchpoints
        });
        server.wait_up_to(JOIN_PATIENCE, "/v1/customers/a:cookie-a/journey", |body| {
            body["customer_id"] == "u:ann"
        });
    }

    let reports = [
        "/v1/touchpoints",
        "/v1/touchpoints?trait.persona=researcher",
        "/v1/paths?view=state",
        "/v1/paths?view=state&steps=12&top=0&collapse=true",
        "/v1/paths?view=positional&start=ad_click&steps=4",
        "/v1/paths?view=positional&end=purchase&steps=3&breakdown=channel",
        "/v1/paths?view=state&from=2026-01-10&to=2026-02-01&prop.utm_medium=email",
        "/v1/paths?view=state&trait.persona=researcher&drop_offs=false",
        "/v1/paths?view=positional&start=site_visit&end=purchase&steps=6&top=3",
        "/v1/paths?view=positional&end=purchase&steps=4&collapse=true&top=0",
        "/v1/paths?view=positional&trait.persona=researcher&prop.utm_medium=email",
        "/v1/metrics?goal=purchase",
        "/v1/metrics?goal=form_submit&trait.persona=researcher",
        "/v1/customers/a:cookie-a/journey",
        "/v1/customers/u:cara/journey",
        "/v1/customers/a:cookie-b/journey",
        "/v1/customers/cust-3/journey",
        "/v1/customers/crm-5/journey",
    ];
    // The analyst reports, each of which must answer (not just fail alike), with a breakdown and
    // two comparisons.
    let analyst_reports = [
        "/v1/funnel?steps=site_visit,form_submit,purchase&window=30d",
        "/v1/funnel?steps=ad_click,site_visit%5Butm_medium%3Demail%5D,purchase&order=any",
        "/v1/drop-off?steps=ad_click,site_visit,purchase&next_steps=2",
        "/v1/top-paths?goal=purchase&up_to_goal=true&collapse=true&limit=10",
        "/v1/influence?goal=purchase&trait.persona=researcher",
        "/v1/attribution?goal=purchase&value_property=value&by=channel",
        "/v1/sales-cycle?goal=purchase&from=2026-01-10",
        "/v1/leads?as_of=2026-02-15&within_days=14",
        "/v1/funnel?steps=site_visit,purchase&breakdown_by=trait.persona",
        "/v1/sales-cycle?breakdown_by=prop.utm_source",
        "/v1/top-paths?from=2026-01-20&to=2026-02-10&compare=previous_period&steps=4",
        "/v1/attribution?compare.trait.persona=researcher&compare.from=2026-01-15",
    ];
    for report in reports.iter().chain(&analyst_reports) {
        let (embedded_status, embedded_answer) = embedded.get(report);
        let (scale_out_status, scale_out_answer) = scale_out.get(report);
        if analyst_reports.contains(report) {
            assert_eq!(embedded_status, 200, "{report}: {embedded_answer}");
        }
        assert_eq!(
            embedded_status, scale_out_status,
            "{report}: {embedded_answer} vs {scale_out_answer}"
        );
        assert_eq!(
            embedded_answer, scale_out_answer,
            "{report} differs between the embedded and the scale-out stack"
        );
    }
    let (_, state) = scale_out.get("/v1/paths?view=state");
    assert!(
        state["customers"].as_u64().unwrap() > 400,
        "the comparison ran over real data: {state}"
    );
    let (_, by_persona) =
        scale_out.get("/v1/funnel?steps=site_visit,purchase&breakdown_by=trait.persona");
    assert!(
        by_persona["segments"].as_array().unwrap().len() > 3,
        "the breakdown found several personas: {by_persona}"
    );
    let (_, periods) = scale_out
        .get("/v1/top-paths?from=2026-01-20&to=2026-02-10&compare=previous_period&steps=4");
    for side in ["a", "b"] {
        assert!(
            periods[side]["report"]["customers"].as_u64().unwrap() > 50,
            "side {side} of the comparison has customers: {periods}"
        );
    }
}
