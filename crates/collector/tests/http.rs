//! The collector over real HTTP: a server on a loopback port, a real embedded queue (or a bus that
//! is away), reqwest.

mod common;

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestServer, READ_KEY, WRITE_KEY};
use flate2::write::GzEncoder;
use flate2::Compression;
use reqwest::{Method, StatusCode};
use scribble_bus::{BusError, EmbeddedQueue, EventSink, QueuedEvent};
use scribble_collector::{router, serve, CollectorConfig, TrustedProxies};
use scribble_domain::event::{Body, Event};
use scribble_domain::project::{Project, Projects};
use scribble_telemetry::MetricsRegistry;
use serde_json::{json, Map, Value};

fn visit(anonymous_id: &str) -> Value {
    json!({"touchpoint": "site_visit", "anonymous_id": anonymous_id})
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

#[tokio::test]
async fn healthz_says_ok() {
    let server = TestServer::start().await;
    let response = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn metrics_count_accepted_and_rejected_events_and_errors_by_code() {
    let server = TestServer::start().await;
    let accepted = "scribble_collector_events_accepted_total";
    let rejected = "scribble_collector_events_rejected_total";
    let errors = "scribble_collector_http_errors_total";
    let before = server.metrics().await;
    assert_eq!(before.count(accepted, &[]), 0.0);
    assert_eq!(before.count(errors, &[]), 0.0);
    assert_eq!(
        before.sum("scribble_collector_kafka_in_flight_bytes", &[]),
        None,
        "no Kafka gauges over the embedded queue"
    );

    let mixed = json!([visit("c1"), {"touchpoint": "x"}, visit("c2")]);
    assert_eq!(server.post_json("/v1/events", &mixed).await.status(), 200);
    let none_valid = json!([{"touchpoint": "x"}, {"anonymous_id": "c3"}]);
    assert_eq!(
        server.post_json("/v1/events", &none_valid).await.status(),
        400
    );
    let unknown_key = server
        .client
        .post(server.url("/v1/events"))
        .bearer_auth("nope")
        .json(&visit("c4"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_key.status(), 401);
    let too_large = server
        .post("/v1/events")
        .body(vec![b' '; 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    let bad_json = server.post("/v1/identify").body("{").send().await.unwrap();
    assert_eq!(bad_json.status(), 400);
    // A pixel naming nobody is still served, and counted as an event not recorded.
    let url = server.url(&format!("/v1/pixel.gif?key={WRITE_KEY}"));
    assert_is_pixel(server.client.get(url).send().await.unwrap()).await;

    let after = server.metrics().await;
    assert_eq!(after.sum(accepted, &[("project", "shop")]), Some(2.0));
    assert_eq!(
        after.sum(
            rejected,
            &[("project", "shop"), ("reason", "invalid_event")]
        ),
        Some(1.0 + 2.0 + 1.0),
        "one of the mixed batch, both of the invalid one, the pixel's"
    );
    let events = [("route", "/v1/events")];
    for (labels, expected) in [
        (&[events[0], ("code", "all_events_rejected")][..], 1.0),
        (&[events[0], ("code", "unauthorized")], 1.0),
        (&[events[0], ("code", "payload_too_large")], 1.0),
        (&[("route", "/v1/identify"), ("code", "invalid_json")], 1.0),
        (
            &[("route", "/v1/pixel.gif"), ("code", "invalid_event")],
            1.0,
        ),
        (&[], 5.0),
    ] {
        assert_eq!(after.count(errors, labels), expected, "{labels:?}");
    }
    let requests = "scribble_collector_http_requests_total";
    assert_eq!(after.count(requests, &[events[0], ("status", "200")]), 1.0);
    assert_eq!(after.count(requests, &[events[0], ("status", "413")]), 1.0);
    assert_eq!(
        after.count(
            "scribble_collector_http_request_duration_seconds_count",
            &events
        ),
        4.0
    );
}

#[tokio::test]
async fn single_event_is_queued() {
    let server = TestServer::start().await;
    let response = server.post_json("/v1/events", &visit("c1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        json_of(response).await,
        json!({"accepted": 1, "rejected": []})
    );
    let queued = server.queued();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].project, "shop");
    assert_eq!(queued[0].event.who.anonymous_id.as_deref(), Some("c1"));
}

#[tokio::test]
async fn array_and_batch_wrapper_are_queued_in_order() {
    let server = TestServer::start().await;
    let array = server
        .post_json("/v1/events", &json!([visit("c1"), visit("c2")]))
        .await;
    assert_eq!(json_of(array).await["accepted"], 2);
    let batch = server
        .post_json("/v1/events", &json!({"batch": [visit("c3")]}))
        .await;
    assert_eq!(json_of(batch).await["accepted"], 1);
    let order: Vec<_> = server
        .queued()
        .into_iter()
        .map(|queued| queued.event.who.anonymous_id.unwrap())
        .collect();
    assert_eq!(order, ["c1", "c2", "c3"]);
}

#[tokio::test]
async fn mixed_batch_keeps_valid_events_and_names_rejected_ones() {
    let server = TestServer::start().await;
    let batch = json!({"batch": [
        visit("c1"),
        {"touchpoint": "site_visit"},
        {"touchpoint": "purchase", "user_id": "u1", "timestamp": "yesterday"},
        visit("c2"),
    ]});
    let response = server.post_json("/v1/events", &batch).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_of(response).await;
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"][0]["index"], 1);
    assert_eq!(body["rejected"][0]["field"], "anonymous_id");
    assert_eq!(body["rejected"][1]["index"], 2);
    assert_eq!(body["rejected"][1]["field"], "timestamp");
    let kept: Vec<_> = server
        .queued()
        .into_iter()
        .map(|queued| queued.event.who.anonymous_id.unwrap())
        .collect();
    assert_eq!(kept, ["c1", "c2"]);
}

#[tokio::test]
async fn all_rejected_is_400_and_queues_nothing() {
    let server = TestServer::start().await;
    let response = server
        .post_json("/v1/events", &json!([{"touchpoint": "x"}]))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json_of(response).await;
    assert_eq!(body["error"], "all_events_rejected");
    assert_eq!(body["rejected"][0]["field"], "anonymous_id");
    assert!(server.queued().is_empty());
}

#[tokio::test]
async fn empty_batch_is_400() {
    let server = TestServer::start().await;
    let response = server.post_json("/v1/events", &json!([])).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(response).await["error"], "empty_batch");
}

#[tokio::test]
async fn ten_thousand_events_fit_in_one_request_and_one_more_is_413() {
    let server = TestServer::start().await;
    let mut events: Vec<Value> = (0..10_000).map(|n| visit(&format!("c{n}"))).collect();
    let full = server
        .post_json("/v1/events", &Value::from(events.clone()))
        .await;
    assert_eq!(full.status(), StatusCode::OK);
    assert_eq!(json_of(full).await["accepted"], 10_000);
    events.push(visit("one-too-many"));
    let over = server.post_json("/v1/events", &Value::from(events)).await;
    assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = json_of(over).await;
    assert_eq!(body["error"], "too_many_events");
    assert_eq!(
        (&body["count"], &body["limit"]),
        (&json!(10_001), &json!(10_000))
    );
    assert_eq!(
        server.queue.depth().unwrap(),
        10_000,
        "the refused request queued nothing"
    );
}

#[tokio::test]
async fn broken_gzip_and_a_batch_that_is_not_an_array_are_400() {
    let server = TestServer::start().await;
    let broken = server
        .post("/v1/events")
        .header("content-encoding", "gzip")
        .body(json!([visit("c1")]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(broken).await["error"], "invalid_gzip");
    let not_array = server
        .post_json("/v1/events", &json!({"batch": visit("c1")}))
        .await;
    assert_eq!(not_array.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(not_array).await["error"], "invalid_batch");
    assert!(server.queued().is_empty());
}

#[tokio::test]
async fn gzip_body_is_inflated() {
    let server = TestServer::start().await;
    let body = gzip(json!([visit("c1"), visit("c2")]).to_string().as_bytes());
    let response = server
        .post("/v1/events")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["accepted"], 2);
    assert_eq!(server.queued().len(), 2);
}

#[tokio::test]
async fn gzip_bomb_is_cut_off_quickly() {
    let server = TestServer::start().await;
    let bomb = gzip(&vec![0; 20 * 1024 * 1024]);
    assert!(bomb.len() < 1024 * 1024);
    let started = Instant::now();
    let response = server
        .post("/v1/events")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let body = json_of(response).await;
    assert_eq!(body["error"], "payload_too_large");
    assert_eq!(body["limit_bytes"], 5 * 1024 * 1024);
}

#[tokio::test]
async fn other_encodings_are_415() {
    let server = TestServer::start().await;
    let response = server
        .post("/v1/events")
        .header("content-encoding", "br")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(json_of(response).await["error"], "unsupported_encoding");
}

#[tokio::test]
async fn raw_body_over_one_mib_is_413() {
    let server = TestServer::start().await;
    let padding = "x".repeat(1024 * 1024);
    let body = json!([{"touchpoint": "x", "anonymous_id": "c", "properties": {"pad": padding}}]);
    let response = server.post_json("/v1/events", &body).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = json_of(response).await;
    assert_eq!(body["error"], "payload_too_large");
    assert_eq!(body["limit_bytes"], 1024 * 1024);
}

#[tokio::test]
async fn event_over_32_kib_is_rejected_by_index() {
    let server = TestServer::start().await;
    let big = json!({"touchpoint": "x", "anonymous_id": "c", "properties": {"blob": "x".repeat(33 * 1024)}});
    let response = server
        .post_json("/v1/events", &json!([visit("c1"), big]))
        .await;
    let body = json_of(response).await;
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"][0]["index"], 1);
    assert_eq!(body["rejected"][0]["field"], "event");
}

#[tokio::test]
async fn depth_40_is_rejected_by_index() {
    let server = TestServer::start().await;
    let deep = (0..40).fold(json!(1), |inner, _| json!({ "d": inner }));
    let event = json!({"touchpoint": "x", "anonymous_id": "c", "properties": deep});
    let response = server
        .post_json("/v1/events", &json!([event, visit("c1")]))
        .await;
    let body = json_of(response).await;
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"][0]["index"], 0);
    assert!(body["rejected"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("nested"));
}

#[tokio::test]
async fn bad_json_is_400_with_line_and_column() {
    let server = TestServer::start().await;
    let response = server
        .post("/v1/events")
        .body("[{\"touchpoint\": \"x\",\n  \"anonymous_id\": }]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json_of(response).await;
    assert_eq!(body["error"], "invalid_json");
    assert_eq!(body["line"], 2);
    assert_eq!(body["column"], 19);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("line 2 column 19"));
}

#[tokio::test]
async fn missing_or_unknown_key_is_401_and_read_key_403() {
    let server = TestServer::start().await;
    let url = server.url("/v1/events");
    let missing = server
        .client
        .post(&url)
        .json(&visit("c1"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(missing).await["error"], "unauthorized");
    let unknown = server
        .client
        .post(&url)
        .bearer_auth("nope")
        .json(&visit("c1"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let read = server
        .client
        .post(&url)
        .bearer_auth(READ_KEY)
        .json(&visit("c1"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_of(read).await["error"], "wrong_key_kind");
    assert!(server.queued().is_empty());
}

#[tokio::test]
async fn bearer_and_x_write_key_both_work() {
    let server = TestServer::start().await;
    let url = server.url("/v1/events");
    let bearer = server
        .client
        .post(&url)
        .bearer_auth(WRITE_KEY)
        .json(&visit("c1"))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);
    let header = server
        .client
        .post(&url)
        .header("x-write-key", WRITE_KEY)
        .json(&visit("c2"))
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), StatusCode::OK);
    assert_eq!(server.queued().len(), 2);
}

#[tokio::test]
async fn identify_and_alias_endpoints_force_their_type() {
    let server = TestServer::start().await;
    let identify = server
        .post_json(
            "/v1/identify",
            &json!([
                {"user_id": "u1", "anonymous_id": "c1", "traits": {"persona": "buyer"}},
                {"type": "touchpoint", "user_id": "u2", "touchpoint": "x"},
            ]),
        )
        .await;
    let body = json_of(identify).await;
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"][0]["index"], 1);
    assert_eq!(body["rejected"][0]["field"], "type");
    let alias = server
        .post_json("/v1/alias", &json!({"user_id": "u1", "previous_id": "u0"}))
        .await;
    assert_eq!(json_of(alias).await["accepted"], 1);
    let queued = server.queued();
    assert!(matches!(queued[0].event.body, Body::Identify { .. }));
    assert_eq!(
        queued[1].event.body,
        Body::Alias {
            previous_id: "u0".into()
        }
    );
}

/// The touchpoint, channel and properties of a queued touchpoint event.
fn touchpoint_of(queued: &QueuedEvent) -> (&str, &str, &Map<String, Value>) {
    let Body::Touchpoint {
        touchpoint,
        channel,
        properties,
        ..
    } = &queued.event.body
    else {
        panic!("not a touchpoint: {:?}", queued.event.body);
    };
    (touchpoint, channel, properties)
}

async fn assert_is_pixel(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/gif");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len(), 43);
    assert!(bytes.starts_with(b"GIF89a"));
}

#[tokio::test]
async fn pixel_records_an_email_open() {
    let server = TestServer::start().await;
    let url = server.url(&format!(
        "/v1/pixel.gif?key={WRITE_KEY}&user_id=u1&campaign=spring&variant=b"
    ));
    assert_is_pixel(server.client.get(url).send().await.unwrap()).await;
    let queued = server.queued();
    assert_eq!(queued.len(), 1);
    let (touchpoint, channel, properties) = touchpoint_of(&queued[0]);
    assert_eq!((touchpoint, channel), ("email_open", "email"));
    assert_eq!(properties["campaign"], "spring");
    assert_eq!(properties["variant"], "b");
    assert_eq!(queued[0].event.who.user_id.as_deref(), Some("u1"));
}

#[tokio::test]
async fn pixel_is_served_even_when_nothing_can_be_recorded() {
    let server = TestServer::start().await;
    for query in [
        "key=nope&user_id=u1",
        "",
        &format!("key={WRITE_KEY}"),
        "key=%ZZ&&=",
    ] {
        let url = server.url(&format!("/v1/pixel.gif?{query}"));
        assert_is_pixel(server.client.get(url).send().await.unwrap()).await;
    }
    assert!(server.queued().is_empty());
}

#[tokio::test]
async fn click_to_allowed_host_redirects_and_records() {
    let server = TestServer::start().await;
    let target = "https://mail.news.example/offer?id=7";
    let url = reqwest::Url::parse_with_params(
        &server.url("/v1/click"),
        [
            ("key", WRITE_KEY),
            ("url", target),
            ("anonymous_id", "c1"),
            ("campaign", "spring"),
        ],
    )
    .unwrap();
    let response = server.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], target);
    let queued = server.queued();
    assert_eq!(queued.len(), 1);
    let (touchpoint, channel, properties) = touchpoint_of(&queued[0]);
    assert_eq!((touchpoint, channel), ("email_click", "email"));
    assert_eq!(properties["url"], target);
    assert_eq!(properties["campaign"], "spring");
}

#[tokio::test]
async fn click_to_other_host_is_400_and_records_nothing() {
    let server = TestServer::start().await;
    for target in [
        "https://evil.example/",
        "javascript:alert(1)",
        "//evil.example/",
    ] {
        let url = reqwest::Url::parse_with_params(
            &server.url("/v1/click"),
            [("key", WRITE_KEY), ("url", target), ("anonymous_id", "c1")],
        )
        .unwrap();
        let response = server.client.get(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{target}");
        assert!(response.headers().get("location").is_none());
        assert_eq!(json_of(response).await["error"], "redirect_not_allowed");
    }
    assert!(server.queued().is_empty());
}

#[tokio::test]
async fn click_with_unknown_key_is_401() {
    let server = TestServer::start().await;
    let url = server.url("/v1/click?key=nope&url=https://shop.example/&anonymous_id=c1");
    let response = server.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(server.queued().is_empty());
}

#[tokio::test]
async fn click_with_a_read_key_is_403_and_records_nothing() {
    let server = TestServer::start().await;
    let url = server.url(&format!(
        "/v1/click?key={READ_KEY}&url=https://shop.example/&anonymous_id=c1"
    ));
    let response = server.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("location").is_none());
    assert_eq!(json_of(response).await["error"], "wrong_key_kind");
    assert!(server.queued().is_empty());
}

#[tokio::test]
async fn click_that_cannot_be_recorded_still_redirects() {
    let server = TestServer::start().await;
    // Neither user_id nor anonymous_id: no valid event, but the recipient still gets to the page.
    let url = server.url(&format!(
        "/v1/click?key={WRITE_KEY}&url=https://shop.example/sale"
    ));
    let response = server.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], "https://shop.example/sale");
    assert!(server.queued().is_empty());
}

#[tokio::test]
async fn readyz_is_ready_over_the_embedded_queue() {
    let server = TestServer::start().await;
    let response = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "ready");
}

/// A bus whose broker is away: every append fails as Kafka's does when nothing acknowledges, and
/// it is never ready.
struct UnreachableBus;

impl EventSink for UnreachableBus {
    // What `#[async_trait]` makes of `async fn append`, written out so the tests need no macro.
    fn append<'sink, 'project, 'events, 'future>(
        &'sink self,
        _project: &'project str,
        _events: &'events [Event],
    ) -> Pin<Box<dyn Future<Output = Result<(), BusError>> + Send + 'future>>
    where
        'sink: 'future,
        'project: 'future,
        'events: 'future,
    {
        Box::pin(async { Err(BusError::Unavailable("no broker answers".into())) })
    }

    fn is_ready(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn an_unreachable_bus_gives_a_retryable_503_while_email_links_keep_working() {
    let (base, client) = common::start_over(Arc::new(UnreachableBus)).await;
    let events = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(WRITE_KEY)
        .json(&visit("c1"))
        .send()
        .await
        .unwrap();
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    for response in [events, ready] {
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "5");
        assert_eq!(json_of(response).await["error"], "bus_unavailable");
    }
    // Email recipients are not the sender: they get the pixel and the page regardless.
    let pixel = client
        .get(format!("{base}/v1/pixel.gif?key={WRITE_KEY}&user_id=u1"))
        .send()
        .await
        .unwrap();
    assert_is_pixel(pixel).await;
    let click = client
        .get(format!(
            "{base}/v1/click?key={WRITE_KEY}&user_id=u1&url=https://shop.example/sale"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(click.status(), StatusCode::FOUND);
    assert_eq!(click.headers()["location"], "https://shop.example/sale");

    let metrics = common::scrape(&client, &base).await;
    assert_eq!(
        metrics.sum(
            "scribble_collector_events_rejected_total",
            &[("reason", "bus_unavailable")]
        ),
        Some(3.0),
        "the event, the open and the click"
    );
    assert_eq!(
        metrics.count("scribble_collector_events_accepted_total", &[]),
        0.0
    );
    for route in ["/v1/events", "/readyz", "/v1/pixel.gif", "/v1/click"] {
        assert_eq!(
            metrics.count(
                "scribble_collector_http_errors_total",
                &[("route", route), ("code", "bus_unavailable")]
            ),
            1.0,
            "{route}"
        );
    }
}

#[tokio::test]
async fn cors_preflight_allows_any_origin() {
    let server = TestServer::start().await;
    let response = server
        .client
        .request(Method::OPTIONS, server.url("/v1/events"))
        .header("origin", "https://www.shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, x-write-key, content-encoding",
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("x-write-key"), "{allowed}");
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
}

#[tokio::test]
async fn serve_returns_after_shutdown() {
    let server = TestServer::start().await;
    let stopped = tokio::time::timeout(Duration::from_secs(5), server.shut_down()).await;
    stopped.expect("serve did not return").unwrap();
}

/// A POST the way the browser tracker sends: the key in the query string and a `text/plain` JSON
/// body, as `navigator.sendBeacon` and a preflight-free `fetch` do.
async fn beacon(server: &TestServer, path_and_query: &str, body: &Value) -> reqwest::Response {
    server
        .client
        .post(server.url(path_and_query))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", "https://shop.example")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn text_plain_body_with_the_key_in_the_query_is_queued() {
    let server = TestServer::start().await;
    let batch = json!({"batch": [visit("c1"), {"type": "identify", "anonymous_id": "c1", "user_id": "ann"}]});
    let response = beacon(&server, &format!("/v1/events?key={WRITE_KEY}"), &batch).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        json_of(response).await,
        json!({"accepted": 2, "rejected": []})
    );
    let identify = json!({"anonymous_id": "c2", "user_id": "bob"});
    let response = beacon(&server, &format!("/v1/identify?key={WRITE_KEY}"), &identify).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.queued().len(), 3);
}

#[tokio::test]
async fn query_keys_are_refused_like_header_keys() {
    let server = TestServer::start().await;
    let cases = [
        (
            "/v1/events?key=nope",
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        ("/v1/events?key=", StatusCode::UNAUTHORIZED, "unauthorized"),
        (
            "/v1/events?kee=w-shop",
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "/v1/events?key=r-shop",
            StatusCode::FORBIDDEN,
            "wrong_key_kind",
        ),
        (
            "/v1/alias?key=r-shop",
            StatusCode::FORBIDDEN,
            "wrong_key_kind",
        ),
    ];
    for (path, status, code) in cases {
        let response = beacon(&server, path, &visit("c1")).await;
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(json_of(response).await["error"], code, "{path}");
    }
    assert!(server.queued().is_empty());
}

#[tokio::test]
async fn a_key_header_wins_over_the_query_key() {
    let server = TestServer::start().await;
    let with_good_header = server
        .client
        .post(server.url("/v1/events?key=nope"))
        .header("x-write-key", WRITE_KEY)
        .json(&visit("c1"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_good_header.status(), StatusCode::OK);
    let with_bad_header = server
        .client
        .post(server.url(&format!("/v1/events?key={WRITE_KEY}")))
        .bearer_auth("nope")
        .json(&visit("c2"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_bad_header.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.queued().len(), 1);
}

#[tokio::test]
async fn the_browser_tracker_is_served_as_javascript() {
    let server = TestServer::start().await;
    let response = server
        .client
        .get(server.url("/scribble.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let script = response.text().await.unwrap();
    assert!(script.contains("sendBeacon") && script.contains("data-write-key"));
}

/// A collector trusting the proxy at 127.0.0.1 (where the test's requests come from), for
/// project "shop" (addresses truncated, the default) and "full" (addresses kept whole), over
/// a real embedded queue: its base URL and the queue.
async fn collector_behind_a_proxy() -> (String, Arc<EmbeddedQueue>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("queue.db")).unwrap());
    let project = |name: &str, key: &str, keep_full_ip: bool| Project {
        name: name.into(),
        write_keys: vec![key.into()],
        keep_full_ip,
        redirect_hosts: vec!["shop.example".into()],
        ..Project::default()
    };
    let mut config = CollectorConfig::new(Projects {
        projects: vec![
            project("shop", "w-shop-key", false),
            project("full", "w-full-key", true),
        ],
    });
    config.trusted_proxies = TrustedProxies(vec!["127.0.0.1".parse().unwrap()]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(Arc::new(config), queue.clone(), &MetricsRegistry::new());
    tokio::spawn(serve(listener, app, std::future::pending()));
    (base, queue, dir)
}

#[tokio::test]
async fn a_full_ip_address_reaches_the_queue_only_for_a_project_that_keeps_it() {
    let (base, queue, _dir) = collector_behind_a_proxy().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let senders = [
        (Some("203.0.113.77"), "203.0.113.0", "203.0.113.77"),
        (
            Some("2001:db8:1234:5678::9"),
            "2001:db8:1234::",
            "2001:db8:1234:5678::9",
        ),
        // Without the header, the proxy itself (the TCP peer) is the sender.
        (None, "127.0.0.0", "127.0.0.1"),
    ];
    for (forwarded_for, truncated, full) in senders {
        for (key, expected) in [("w-shop-key", truncated), ("w-full-key", full)] {
            let mut request = client
                .post(format!("{base}/v1/events"))
                .bearer_auth(key)
                .json(&visit("cookie-1"));
            let mut pixel = client.get(format!("{base}/v1/pixel.gif?key={key}&user_id=ann"));
            if let Some(address) = forwarded_for {
                request = request.header("X-Forwarded-For", address);
                pixel = pixel.header("X-Forwarded-For", address);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(pixel.send().await.unwrap().status(), StatusCode::OK);
            let queued = queue.read_after(0, 1000).unwrap();
            let last_two = &queued[queued.len() - 2..];
            for entry in last_two {
                assert_eq!(
                    entry.event.ip.map(|ip| ip.to_string()).as_deref(),
                    Some(expected),
                    "{key} {forwarded_for:?}: {:?}",
                    entry.event
                );
            }
        }
    }
    // Nothing but the truncated forms of the shop's senders was ever queued for it.
    let queued = queue.read_after(0, 1000).unwrap();
    let shop: Vec<String> = queued
        .iter()
        .filter(|entry| entry.project == "shop")
        .map(|entry| entry.event.ip.unwrap().to_string())
        .collect();
    assert_eq!(shop.len(), 6);
    for full in ["203.0.113.77", "2001:db8:1234:5678::9", "127.0.0.1"] {
        assert!(
            !shop.contains(&full.to_owned()),
            "{full} reached the queue: {shop:?}"
        );
    }
}

#[tokio::test]
async fn a_sender_that_is_not_a_trusted_proxy_cannot_name_another_address() {
    // The default test server trusts no proxy: its header is ignored.
    let server = TestServer::start().await;
    let response = server
        .post("/v1/events")
        .header("X-Forwarded-For", "198.51.100.1")
        .json(&visit("cookie-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let queued = server.queued();
    assert_eq!(
        queued[0].event.ip.map(|ip| ip.to_string()).as_deref(),
        Some("127.0.0.0"),
        "the peer's address, truncated"
    );
}
