//! The query API over real HTTP: the router on a loopback port over a real embedded store in a
//! temporary directory, filled with a small hand-built data set for two projects ("shop" and
//! "blog"), and queried with reqwest. Every expected number below is worked out by hand from
//! [`shop_events`] and [`blog_events`].

use std::sync::Arc;

use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use scribble_domain::event::{validate, Event, EventLimits};
use scribble_domain::project::{Project, Projects};
use scribble_query_api::{router, serve, ApiConfig};
use scribble_store::EmbeddedStore;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

const SHOP_READ: &str = "r-shop";
const SHOP_WRITE: &str = "w-shop";
const BLOG_READ: &str = "r-blog";
const BLOG_WRITE: &str = "w-blog";

/// Receive time of every event: after all event times, so no timestamp is "in the future".
const RECEIVED_MS: i64 = 1_900_000_000_000;

/// Validates `raw` (the collector's wire shape) into a stored event with id `n`.
fn event(n: u128, raw: Value) -> Event {
    let len = raw.to_string().len();
    validate(
        &raw,
        len,
        RECEIVED_MS,
        Uuid::from_u128(n),
        &EventLimits::default(),
    )
    .unwrap_or_else(|error| panic!("{raw}: {error}"))
}

/// Ann: an ad click and a site visit as cookie-a in the fall campaign (one session), then an email
/// and a purchase as user ann the next day (a second session); an identify ties cookie-a to ann
/// with persona researcher. Bob: anonymous, a spring ad click, then a fall site visit two days
/// later. Cara: persona bargain, a visit and a purchase on consecutive days.
fn shop_events() -> Vec<Event> {
    vec![
        event(
            1,
            json!({"timestamp": "2026-11-01T09:00:00Z", "touchpoint": "ad_click", "anonymous_id": "cookie-a", "properties": {"campaign": "fall"}}),
        ),
        event(
            2,
            json!({"timestamp": "2026-11-01T09:10:00Z", "touchpoint": "site_visit", "anonymous_id": "cookie-a", "properties": {"campaign": "fall"}}),
        ),
        event(
            3,
            json!({"timestamp": "2026-11-02T09:00:00Z", "touchpoint": "email_open", "user_id": "ann"}),
        ),
        event(
            4,
            json!({"timestamp": "2026-11-02T09:20:00Z", "touchpoint": "purchase", "user_id": "ann", "properties": {"value": 40}}),
        ),
        event(
            5,
            json!({"type": "identify", "timestamp": "2026-11-02T10:00:00Z", "user_id": "ann", "anonymous_id": "cookie-a", "traits": {"persona": "researcher"}}),
        ),
        event(
            6,
            json!({"timestamp": "2026-11-01T12:00:00Z", "touchpoint": "ad_click", "anonymous_id": "cookie-b", "properties": {"campaign": "spring"}}),
        ),
        event(
            7,
            json!({"timestamp": "2026-11-03T12:00:00Z", "touchpoint": "site_visit", "anonymous_id": "cookie-b", "properties": {"campaign": "fall"}}),
        ),
        event(
            8,
            json!({"type": "identify", "timestamp": "2026-11-01T00:00:00Z", "user_id": "cara", "traits": {"persona": "bargain"}}),
        ),
        event(
            9,
            json!({"timestamp": "2026-11-04T08:00:00Z", "touchpoint": "site_visit", "user_id": "cara"}),
        ),
        event(
            10,
            json!({"timestamp": "2026-11-05T08:00:00Z", "touchpoint": "purchase", "user_id": "cara"}),
        ),
    ]
}

/// Dan, the blog's only customer: same persona and campaign as Ann and a purchase, so any leak
/// between projects changes the shop's counts.
fn blog_events() -> Vec<Event> {
    vec![
        event(
            11,
            json!({"timestamp": "2026-11-01T10:00:00Z", "touchpoint": "newsletter_open", "user_id": "dan", "properties": {"campaign": "fall"}}),
        ),
        event(
            12,
            json!({"timestamp": "2026-11-01T10:05:00Z", "touchpoint": "purchase", "user_id": "dan", "properties": {"campaign": "fall"}}),
        ),
        event(
            13,
            json!({"type": "identify", "timestamp": "2026-11-01T10:06:00Z", "user_id": "dan", "traits": {"persona": "researcher"}}),
        ),
    ]
}

/// A query API on a loopback port over a store holding [`shop_events`] and [`blog_events`].
struct TestApi {
    base: String,
    client: reqwest::Client,
    /// Dropping it (with the server) starts the graceful shutdown.
    _stop: oneshot::Sender<()>,
    _task: JoinHandle<std::io::Result<()>>,
    _dir: TempDir,
}

impl TestApi {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("store.db")).unwrap();
        let (shop, blog) = (shop_events(), blog_events());
        let batch: Vec<(&str, &Event)> = shop
            .iter()
            .map(|event| ("shop", event))
            .chain(blog.iter().map(|event| ("blog", event)))
            .collect();
        let outcome = store.apply(&batch, 1).unwrap();
        assert_eq!(outcome.stored, 13);
        let project = |name: &str, write: &str, read: &str| Project {
            name: name.into(),
            write_keys: vec![write.into()],
            read_keys: vec![read.into()],
            redirect_hosts: Vec::new(),
        };
        let config = ApiConfig::new(Projects {
            projects: vec![
                project("shop", SHOP_WRITE, SHOP_READ),
                project("blog", BLOG_WRITE, BLOG_READ),
            ],
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            router(Arc::new(config), Arc::new(Arc::new(store))),
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            base,
            client: reqwest::Client::new(),
            _stop: stop,
            _task: task,
            _dir: dir,
        }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// A GET carrying `key` as a bearer token.
    async fn get(&self, key: &str, path_and_query: &str) -> reqwest::Response {
        self.client
            .get(self.url(path_and_query))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// A GET carrying `key` as a bearer token; returns the status and the JSON body (or null).
    async fn get_with(&self, key: &str, path_and_query: &str) -> (StatusCode, Value) {
        let response = self.get(key, path_and_query).await;
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A GET with the shop's read key that must succeed; returns the JSON body.
    async fn shop(&self, path_and_query: &str) -> Value {
        let (status, body) = self.get_with(SHOP_READ, path_and_query).await;
        assert_eq!(status, StatusCode::OK, "{path_and_query}: {body}");
        body
    }
}

/// Every report endpoint, with a customer that exists in the shop.
const ENDPOINTS: [&str; 4] = [
    "/v1/paths",
    "/v1/metrics",
    "/v1/touchpoints",
    "/v1/customers/u:ann/journey",
];

/// The node labels of a path graph answer.
fn labels(graph: &Value) -> Vec<&str> {
    let mut labels: Vec<&str> = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["label"].as_str().unwrap())
        .collect();
    labels.sort_unstable();
    labels
}

/// `(touchpoint, events, customers)` of a touchpoints answer, by name.
fn touchpoint_rows(answer: &Value) -> Vec<(String, u64, u64)> {
    let mut rows: Vec<(String, u64, u64)> = answer["touchpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["touchpoint"].as_str().unwrap().to_owned(),
                row["events"].as_u64().unwrap(),
                row["customers"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn rows(expected: &[(&str, u64, u64)]) -> Vec<(String, u64, u64)> {
    expected
        .iter()
        .map(|&(name, events, customers)| (name.to_owned(), events, customers))
        .collect()
}

#[tokio::test]
async fn healthz_says_ok_without_a_key() {
    let api = TestApi::start().await;
    let response = api.client.get(api.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn missing_key_is_401_unauthorized_on_every_report() {
    let api = TestApi::start().await;
    for path in ENDPOINTS {
        let response = api.client.get(api.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized", "{path}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("X-Read-Key"),
            "{path}: the message says how to send a key: {body}"
        );
    }
}

#[tokio::test]
async fn unknown_key_is_401_unauthorized_on_every_report() {
    let api = TestApi::start().await;
    for path in ENDPOINTS {
        let (status, body) = api.get_with("r-nobody", path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["error"], "unauthorized", "{path}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("not known"),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn write_key_is_403_wrong_key_kind_on_every_report() {
    let api = TestApi::start().await;
    for key in [SHOP_WRITE, BLOG_WRITE] {
        for path in ENDPOINTS {
            let (status, body) = api.get_with(key, path).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{key} {path}");
            assert_eq!(body["error"], "wrong_key_kind", "{key} {path}: {body}");
        }
    }
}

#[tokio::test]
async fn read_key_is_accepted_as_bearer_header_or_query_parameter() {
    let api = TestApi::start().await;
    for path in ["/v1/touchpoints", "/v1/customers/u:ann/journey"] {
        let by_bearer = api.get(SHOP_READ, path).await;
        let by_header = api
            .client
            .get(api.url(path))
            .header("X-Read-Key", SHOP_READ)
            .send()
            .await
            .unwrap();
        let by_query = api
            .client
            .get(api.url(path))
            .query(&[("key", SHOP_READ)])
            .send()
            .await
            .unwrap();
        let mut answers = Vec::new();
        for response in [by_bearer, by_header, by_query] {
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            answers.push(response.json::<Value>().await.unwrap());
        }
        assert_eq!(answers[0], answers[1], "{path}");
        assert_eq!(answers[0], answers[2], "{path}");
    }
    // `key` is taken by auth, never mistaken for an unknown report parameter.
    for path in ["/v1/paths", "/v1/metrics"] {
        let response = api
            .client
            .get(api.url(path))
            .query(&[("key", SHOP_READ)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn each_read_key_sees_only_its_own_project() {
    let api = TestApi::start().await;

    let shop = api.shop("/v1/touchpoints").await;
    assert_eq!(shop["customers"], 3);
    assert_eq!(shop["events"], 8);
    assert_eq!(
        touchpoint_rows(&shop),
        rows(&[
            ("ad_click", 2, 2),
            ("email_open", 1, 1),
            ("purchase", 2, 2),
            ("site_visit", 3, 3),
        ])
    );
    let (status, blog) = api.get_with(BLOG_READ, "/v1/touchpoints").await;
    assert_eq!(status, StatusCode::OK, "{blog}");
    assert_eq!(blog["customers"], 1);
    assert_eq!(
        touchpoint_rows(&blog),
        rows(&[("newsletter_open", 1, 1), ("purchase", 1, 1)])
    );

    let shop_graph = api.shop("/v1/paths").await;
    assert_eq!(shop_graph["customers"], 3);
    assert_eq!(
        labels(&shop_graph),
        [
            "(end)",
            "(start)",
            "ad_click",
            "email_open",
            "purchase",
            "site_visit"
        ]
    );
    let (_, blog_graph) = api.get_with(BLOG_READ, "/v1/paths").await;
    assert_eq!(blog_graph["customers"], 1);
    assert_eq!(
        labels(&blog_graph),
        ["(end)", "(start)", "newsletter_open", "purchase"]
    );

    let shop_metrics = api.shop("/v1/metrics").await;
    assert_eq!(shop_metrics["customers"], 3);
    assert_eq!(shop_metrics["conversions"], 2);
    let (_, blog_metrics) = api.get_with(BLOG_READ, "/v1/metrics").await;
    assert_eq!(blog_metrics["customers"], 1);
    assert_eq!(blog_metrics["conversions"], 1);

    let (status, body) = api.get_with(SHOP_READ, "/v1/customers/u:dan/journey").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "unknown_customer");
    let (status, body) = api.get_with(BLOG_READ, "/v1/customers/u:ann/journey").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "unknown_customer");
    let (status, dan) = api.get_with(BLOG_READ, "/v1/customers/dan/journey").await;
    assert_eq!(status, StatusCode::OK, "{dan}");
    assert_eq!(dan["customer_id"], "u:dan");
    assert_eq!(dan["touchpoints"], 2);
}

#[tokio::test]
async fn touchpoints_are_listed_busiest_first_then_by_name() {
    let api = TestApi::start().await;
    let answer = api.shop("/v1/touchpoints").await;
    let order: Vec<(&str, u64)> = answer["touchpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["touchpoint"].as_str().unwrap(),
                row["events"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("site_visit", 3),
            ("ad_click", 2),
            ("purchase", 2),
            ("email_open", 1)
        ]
    );
}

#[tokio::test]
async fn cors_preflight_lets_a_dashboard_on_another_origin_send_its_read_key() {
    let api = TestApi::start().await;
    let response = api
        .client
        .request(reqwest::Method::OPTIONS, api.url("/v1/paths"))
        .header("origin", "https://dashboards.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "x-read-key")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed.contains('*') || allowed.contains("x-read-key"),
        "{allowed}"
    );
    let answer = api
        .client
        .get(api.url("/v1/touchpoints"))
        .header("origin", "https://dashboards.example")
        .header("x-read-key", SHOP_READ)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["access-control-allow-origin"], "*");
}

/// The collector and the query API read `Authorization` alike: the scheme in any case.
#[tokio::test]
async fn a_lowercase_bearer_scheme_is_a_key_too() {
    let api = TestApi::start().await;
    let answer = api
        .client
        .get(api.url("/v1/touchpoints"))
        .header("authorization", format!("bearer {SHOP_READ}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
}

#[tokio::test]
async fn paths_render_as_dot_and_mermaid() {
    let api = TestApi::start().await;
    let dot = api.get(SHOP_READ, "/v1/paths?format=dot").await;
    assert_eq!(dot.status(), StatusCode::OK);
    let content_type = dot.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/vnd.graphviz"),
        "{content_type}"
    );
    let text = dot.text().await.unwrap();
    assert!(text.starts_with("digraph"), "{text}");
    assert!(text.contains("site_visit"), "{text}");
    assert!(!text.contains("newsletter_open"), "blog leaked: {text}");

    let mermaid = api
        .get(SHOP_READ, "/v1/paths?format=mermaid&view=positional")
        .await;
    assert_eq!(mermaid.status(), StatusCode::OK);
    let content_type = mermaid.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = mermaid.text().await.unwrap();
    assert!(text.starts_with("flowchart"), "{text}");
    assert!(text.contains("1. ad_click"), "{text}");
}

#[tokio::test]
async fn time_range_keeps_touchpoints_from_inclusive_to_exclusive() {
    let api = TestApi::start().await;
    // 2026-11-02 up to (not including) 2026-11-04: Ann's email and purchase, Bob's fall visit.
    let answer = api
        .shop("/v1/touchpoints?from=2026-11-02&to=2026-11-04")
        .await;
    assert_eq!(answer["customers"], 2);
    assert_eq!(answer["events"], 3);
    assert_eq!(
        touchpoint_rows(&answer),
        rows(&[
            ("email_open", 1, 1),
            ("purchase", 1, 1),
            ("site_visit", 1, 1)
        ])
    );
    // RFC 3339 bounds, to the minute: from Ann's site visit up to (without) Ann's purchase.
    let answer = api
        .shop("/v1/touchpoints?from=2026-11-01T09:10:00Z&to=2026-11-02T09:20:00Z")
        .await;
    assert_eq!(answer["customers"], 2, "{answer}");
    assert_eq!(answer["events"], 3, "{answer}");
    assert_eq!(
        touchpoint_rows(&answer),
        rows(&[
            ("ad_click", 1, 1),
            ("email_open", 1, 1),
            ("site_visit", 1, 1)
        ])
    );
    // Metrics over the range: Cara's purchase on 11-05 falls outside.
    let metrics = api.shop("/v1/metrics?from=2026-11-02&to=2026-11-04").await;
    assert_eq!(metrics["customers"], 2);
    assert_eq!(metrics["conversions"], 1);
    let graph = api.shop("/v1/paths?from=2026-11-04").await;
    assert_eq!(
        graph["customers"], 1,
        "only Cara has touchpoints from 11-04"
    );
}

#[tokio::test]
async fn property_and_trait_filters_narrow_events_and_customers() {
    let api = TestApi::start().await;

    // Fall campaign: Ann's ad click and visit, Bob's second visit. Dan (blog) is fall too.
    let fall = api.shop("/v1/touchpoints?prop.campaign=fall").await;
    assert_eq!(fall["customers"], 2);
    assert_eq!(fall["events"], 3);
    assert_eq!(
        touchpoint_rows(&fall),
        rows(&[("ad_click", 1, 1), ("site_visit", 2, 2)])
    );
    let numeric = api.shop("/v1/touchpoints?prop.value=40").await;
    assert_eq!(numeric["events"], 1, "numbers compare as their JSON text");
    let unseen = api.shop("/v1/touchpoints?prop.campaign=winter").await;
    assert_eq!(unseen["events"], 0);
    assert_eq!(unseen["customers"], 0);

    // Researchers: only Ann (Dan is a researcher in the blog).
    let researchers = api.shop("/v1/touchpoints?trait.persona=researcher").await;
    assert_eq!(researchers["customers"], 1);
    assert_eq!(researchers["events"], 4);
    let bargain = api.shop("/v1/metrics?trait.persona=bargain").await;
    assert_eq!(bargain["customers"], 1);
    assert_eq!(bargain["conversions"], 1);

    // Both filters AND together: Ann's two fall touchpoints.
    let both = api
        .shop("/v1/touchpoints?prop.campaign=fall&trait.persona=researcher")
        .await;
    assert_eq!(both["customers"], 1);
    assert_eq!(both["events"], 2);
    let graph = api
        .shop("/v1/paths?prop.campaign=fall&trait.persona=researcher")
        .await;
    assert_eq!(graph["customers"], 1);
    assert_eq!(
        labels(&graph),
        ["(end)", "(start)", "ad_click", "site_visit"]
    );
    let metrics = api.shop("/v1/metrics?prop.campaign=fall").await;
    assert_eq!(metrics["customers"], 2);
    assert_eq!(metrics["conversions"], 0, "no purchase carries a campaign");
}

#[tokio::test]
async fn unknown_or_malformed_parameters_are_400_naming_the_parameter() {
    let api = TestApi::start().await;
    let cases = [
        ("/v1/paths?strat=site_visit", "strat"),
        ("/v1/paths?format=png", "format"),
        ("/v1/paths?steps=0", "steps"),
        ("/v1/metrics?campaign=fall", "campaign"),
        ("/v1/metrics?format=dot", "format"),
        ("/v1/touchpoints?persona=researcher", "persona"),
        ("/v1/touchpoints?from=last%20week", "from"),
        ("/v1/touchpoints?from=2026-11-04&to=2026-11-02", "to"),
        ("/v1/customers/a:cookie-a/journey?from=2026-11-01", "from"),
        ("/v1/customers/%FF/journey", "id"),
    ];
    for (path, parameter) in cases {
        let (status, body) = api.get_with(SHOP_READ, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"], "invalid_parameter", "{path}: {body}");
        assert_eq!(body["parameter"], parameter, "{path}: {body}");
        assert!(
            body["message"].as_str().unwrap().starts_with(parameter),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn journey_shows_identities_traits_sessions_and_staged_timeline() {
    let api = TestApi::start().await;
    let journey = api.shop("/v1/customers/a:cookie-a/journey").await;
    let step = |n: u128,
                time: &str,
                touchpoint: &str,
                channel: &str,
                stage: &str,
                session: u32,
                properties: Value| {
        json!({
            "event_id": Uuid::from_u128(n).to_string(), "time": time, "touchpoint": touchpoint,
            "channel": channel, "direct": true, "session": session, "stage": stage, "properties": properties,
        })
    };
    assert_eq!(
        journey,
        json!({
            "customer_id": "u:ann",
            "identities": ["u:ann", "a:cookie-a"],
            "traits": {"persona": "researcher"},
            "touchpoints": 4,
            "sessions": 2,
            "first_seen": "2026-11-01T09:00:00.000Z",
            "last_seen": "2026-11-02T09:20:00.000Z",
            "timeline": [
                step(1, "2026-11-01T09:00:00.000Z", "ad_click", "ads", "awareness", 1, json!({"campaign": "fall"})),
                step(2, "2026-11-01T09:10:00.000Z", "site_visit", "web", "consideration", 1, json!({"campaign": "fall"})),
                step(3, "2026-11-02T09:00:00.000Z", "email_open", "email", "consideration", 2, json!({})),
                step(4, "2026-11-02T09:20:00.000Z", "purchase", "web", "purchase", 2, json!({"value": "40"})),
            ],
        })
    );
    // Any identity of the customer finds the same journey; a bare id is a user id.
    assert_eq!(api.shop("/v1/customers/ann/journey").await, journey);
    assert_eq!(api.shop("/v1/customers/u:ann/journey").await, journey);

    let (status, body) = api.get_with(SHOP_READ, "/v1/customers/a:ann/journey").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "ann is a user id, not an anonymous one: {body}"
    );
    assert_eq!(body["error"], "unknown_customer");
}
