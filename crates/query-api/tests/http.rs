//! The query API over real HTTP: the router on a loopback port over a real embedded store in a
//! temporary directory, filled with a small hand-built data set for two projects ("shop" and
//! "blog"), and queried with reqwest. Every expected number below is worked out by hand from
//! [`shop_events`] and [`blog_events`].
//!
//! Project isolation is also checked over a real ClickHouse store, which needs
//! `SCRIBBLE_TEST_CLICKHOUSE_URL` (from `eval "$(scripts/test-servers start DIR)"`); that test
//! works in a database of its own ([`TestDatabase`]) and drops it at the end.

use std::sync::Arc;

use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use scribble_domain::event::{validate, Event, EventLimits};
use scribble_domain::project::{Project, Projects};
use scribble_query_api::{router, serve, ApiConfig};
use scribble_store::testing::TestDatabase;
use scribble_store::{EmbeddedStore, JourneyStore};
use scribble_telemetry::{MetricsRegistry, Samples};
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
        || Uuid::from_u128(n),
        &EventLimits::default(),
    )
    .unwrap_or_else(|error| panic!("{raw}: {error}"))
}

/// Ann: an ad click and a site visit as cookie-a in the fall campaign (one session), then an email
/// and a purchase as user ann the next day (a second session); an identify ties cookie-a to ann
/// with persona researcher. Bob: anonymous, a spring ad click, then a fall site visit two days
/// later. Cara: persona bargain, a visit and a purchase on consecutive days. Ann's site visit
/// came with an address (truncated, as the collector stores it).
fn shop_events() -> Vec<Event> {
    let mut events = vec![
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
    ];
    events[1].ip = Some("203.0.113.0".parse().unwrap());
    events
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
    /// The store the API reads, for writing events as the worker would.
    store: Arc<EmbeddedStore>,
    /// Dropping it (with the server) starts the graceful shutdown.
    _stop: oneshot::Sender<()>,
    _task: JoinHandle<std::io::Result<()>>,
    _dir: TempDir,
}

/// Both projects' events, as the worker hands them to a store.
fn both_projects<'a>(shop: &'a [Event], blog: &'a [Event]) -> Vec<(&'a str, &'a Event)> {
    shop.iter()
        .map(|event| ("shop", event))
        .chain(blog.iter().map(|event| ("blog", event)))
        .collect()
}

/// The API's configuration: both projects with one write and one read key each.
fn two_projects() -> ApiConfig {
    let project = |name: &str, write: &str, read: &str| Project {
        name: name.into(),
        write_keys: vec![write.into()],
        read_keys: vec![read.into()],
        redirect_hosts: Vec::new(),
        ..Project::default()
    };
    ApiConfig::new(Projects {
        projects: vec![
            project("shop", SHOP_WRITE, SHOP_READ),
            project("blog", BLOG_WRITE, BLOG_READ),
        ],
    })
}

/// The query API on a loopback port over `store`: its address, and the sender whose drop stops
/// it gracefully.
async fn serve_on_loopback(
    store: Arc<dyn JourneyStore>,
) -> (String, oneshot::Sender<()>, JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        router(Arc::new(two_projects()), store, &MetricsRegistry::new()),
        async {
            let _ = stopped.await;
        },
    ));
    (base, stop, task)
}

impl TestApi {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.db")).unwrap());
        let (shop, blog) = (shop_events(), blog_events());
        let outcome = store.apply(&both_projects(&shop, &blog), 1).unwrap();
        assert_eq!(outcome.stored, 13);
        let (base, stop, task) = serve_on_loopback(Arc::new(store.clone())).await;
        Self {
            base,
            client: reqwest::Client::new(),
            store,
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

/// Every report endpoint, with a customer that exists in the shop and the parameters each
/// needs to answer.
const ENDPOINTS: [&str; 11] = [
    "/v1/paths",
    "/v1/metrics",
    "/v1/touchpoints",
    "/v1/customers/u:ann/journey",
    "/v1/funnel?steps=ad_click,purchase",
    "/v1/drop-off?steps=ad_click,purchase",
    "/v1/top-paths",
    "/v1/influence",
    "/v1/attribution",
    "/v1/sales-cycle",
    "/v1/leads",
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

/// Asserts that each `(path, parameter)` is refused with 400 `invalid_parameter`, naming the
/// parameter first in its message.
async fn assert_refused(api: &TestApi, cases: &[(&str, &str)]) {
    for &(path, parameter) in cases {
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
    for path in [
        "/v1/touchpoints",
        "/v1/customers/u:ann/journey",
        "/v1/funnel?steps=ad_click,purchase",
    ] {
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
    for path in [
        "/v1/paths",
        "/v1/metrics",
        "/v1/sales-cycle",
        "/v1/top-paths",
    ] {
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

/// The requests that exercise each route of the query API for project isolation, with the
/// customer path parameter filled by the caller; `None` for routes that hold no project data.
/// Every route must be listed: a new route fails [`no_route_shows_one_project_the_other_s_data`]
/// until it is.
fn isolation_requests(route: &str, customer: &str) -> Option<Vec<String>> {
    let plain = |queries: &[&str]| {
        Some(
            queries
                .iter()
                .map(|query| format!("{route}{query}"))
                .collect::<Vec<_>>(),
        )
    };
    match route {
        "/" | "/assets/{file}" | "/healthz" | "/readyz" | "/metrics" | "/openapi.json" => None,
        // DELETE only, and it changes the data: each project erasing the other's customer is
        // checked in `forgetting_a_customer_erases_it_and_keeps_it_erased`.
        "/v1/customers/{id}" => None,
        "/v1/customers/{id}/journey" => Some(vec![format!("/v1/customers/{customer}/journey")]),
        "/v1/paths" => plain(&[
            "",
            "?view=positional",
            "?format=dot",
            "?format=mermaid",
            "?trait.persona=researcher",
        ]),
        "/v1/metrics" | "/v1/touchpoints" | "/v1/overview" => {
            plain(&["", "?trait.persona=researcher", "?prop.campaign=fall"])
        }
        "/v1/top-paths" | "/v1/influence" | "/v1/attribution" | "/v1/sales-cycle" => plain(&[
            "",
            "?format=csv",
            "?breakdown_by=trait.persona",
            "?compare=previous_period&from=2026-11-03T00:00:00Z&to=2026-11-06T00:00:00Z",
        ]),
        "/v1/funnel" | "/v1/drop-off" => plain(&[
            "?steps=purchase",
            "?steps=purchase&format=csv",
            "?steps=purchase&breakdown_by=prop.campaign",
        ]),
        "/v1/leads" => plain(&["?leads=form_submit", "?leads=form_submit&format=csv"]),
        other => panic!("route {other} has no isolation requests; add them to isolation_requests"),
    }
}

/// The words of an answer (JSON, CSV, DOT or Mermaid): runs of letters, digits, `_`, `:` and `-`.
fn words(text: &str) -> std::collections::HashSet<&str> {
    text.split(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | ':' | '-')))
        .filter(|word| !word.is_empty())
        .collect()
}

#[tokio::test]
async fn no_route_shows_one_project_the_other_s_data() {
    let api = TestApi::start().await;
    assert_no_route_shows_the_other_project_s_data(&api.base).await;
}

/// The same over ClickHouse, whose reports read other tables with their own project filters.
#[tokio::test]
async fn no_route_shows_one_project_the_other_s_data_over_clickhouse() {
    let database = TestDatabase::migrated().await;
    let (shop, blog) = (shop_events(), blog_events());
    database
        .store
        .insert(&both_projects(&shop, &blog))
        .await
        .unwrap();
    let (base, _stop, _task) = serve_on_loopback(database.store.clone()).await;
    assert_no_route_shows_the_other_project_s_data(&base).await;
}

/// Both projects' read keys ask every route of the API at `base` (see [`isolation_requests`]),
/// and no answer names anything only the other project's events carry.
async fn assert_no_route_shows_the_other_project_s_data(base: &str) {
    let client = reqwest::Client::new();
    // Names only one project's events carry; purchase, researcher and fall are in both.
    let shop_only = [
        "ad_click",
        "site_visit",
        "email_open",
        "cookie-a",
        "cookie-b",
        "a:cookie-a",
        "a:cookie-b",
        "ann",
        "u:ann",
        "cara",
        "u:cara",
        "bargain",
        "spring",
    ];
    let blog_only = ["newsletter_open", "dan", "u:dan"];
    let readers = [
        (SHOP_READ, &blog_only[..], "u:dan", "u:ann"),
        (BLOG_READ, &shop_only[..], "u:ann", "u:dan"),
    ];
    let mut checked = 0;
    for (key, foreign, foreign_customer, own_customer) in readers {
        for route in scribble_query_api::route_paths() {
            for customer in [foreign_customer, own_customer] {
                let Some(requests) = isolation_requests(route, customer) else {
                    continue;
                };
                for request in requests {
                    let response = client
                        .get(format!("{base}{request}"))
                        .bearer_auth(key)
                        .send()
                        .await
                        .unwrap();
                    let status = response.status();
                    let text = response.text().await.unwrap();
                    if customer == foreign_customer && route.contains("{id}") {
                        // Refused as unknown: the answer only repeats the id the caller sent.
                        assert_eq!(status, StatusCode::NOT_FOUND, "{key} {request}: {text}");
                        assert!(text.contains("unknown_customer"), "{key} {request}: {text}");
                        checked += 1;
                        continue;
                    }
                    assert_eq!(status, StatusCode::OK, "{key} {request}: {text}");
                    let leaked: Vec<&&str> = foreign
                        .iter()
                        .filter(|name| words(&text).contains(**name))
                        .collect();
                    assert!(
                        leaked.is_empty(),
                        "{key} {request} shows {leaked:?}: {text}"
                    );
                    checked += 1;
                }
            }
        }
    }
    // Every data route was asked by both projects (the journey twice), so none was skipped.
    assert!(checked > 60, "only {checked} requests checked");
    // And the store holds both projects' data, so an empty answer did not pass for isolation.
    for (key, own) in [(SHOP_READ, "site_visit"), (BLOG_READ, "newsletter_open")] {
        let graph = client
            .get(format!("{base}/v1/paths"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(words(&graph).contains(own), "{key} misses {own}: {graph}");
    }
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
    assert_refused(&api, &cases).await;
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
            "ip": if n == 2 { json!("203.0.113.0") } else { Value::Null },
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

// The analyst reports, over the shop's journeys as stitched:
//
//   Ann  (u:ann, persona researcher)  ad_click 11-01 09:00 (fall), site_visit 11-01 09:10 (fall),
//                                     email_open 11-02 09:00, purchase 11-02 09:20 (value 40)
//   Bob  (a:cookie-b, no traits)      ad_click 11-01 12:00 (spring), site_visit 11-03 12:00 (fall)
//   Cara (u:cara, persona bargain)    site_visit 11-04 08:00, purchase 11-05 08:00

const DAY_SECONDS: f64 = 86_400.0;

fn close(actual: &Value, expected: f64) -> bool {
    actual
        .as_f64()
        .is_some_and(|actual| (actual - expected).abs() < 1e-9)
}

/// `(entered, converted, dropped)` per step of a funnel answer.
fn funnel_counts(report: &Value) -> Vec<(u64, u64, u64)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            (
                step["entered"].as_u64().unwrap(),
                step["converted"].as_u64().unwrap(),
                step["dropped"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A GET with the shop's read key that must succeed with `content_type`; returns the body.
async fn shop_text(api: &TestApi, path_and_query: &str, content_type: &str) -> String {
    let response = api.get(SHOP_READ, path_and_query).await;
    let status = response.status();
    let actual = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{path_and_query}: {body}");
    assert_eq!(actual, content_type, "{path_and_query}");
    body
}

#[tokio::test]
async fn funnel_counts_customers_step_by_step_with_times_between_steps() {
    let api = TestApi::start().await;
    let funnel = api
        .shop("/v1/funnel?steps=ad_click,site_visit,purchase")
        .await;
    assert_eq!(funnel["customers"], 3);
    assert_eq!(funnel["order"], "ordered");
    // Ann reaches the purchase; Bob stops at the visit; Cara never clicked an ad.
    assert_eq!(funnel_counts(&funnel), [(2, 2, 0), (2, 1, 1), (1, 1, 0)]);
    let steps = &funnel["steps"];
    assert_eq!(steps[1]["label"], "site_visit");
    assert!(
        close(&steps[2]["conversion_from_previous"], 0.5),
        "{funnel}"
    );
    assert!(close(&steps[2]["conversion_from_first"], 0.5), "{funnel}");
    assert_eq!(steps[0]["median_seconds_to_convert"], Value::Null);
    // Ad to visit: Ann 10 minutes, Bob 2 days; the median is their mean, p90 interpolated.
    assert!(close(
        &steps[1]["median_seconds_to_convert"],
        (600.0 + 2.0 * DAY_SECONDS) / 2.0
    ));
    assert!(close(
        &steps[1]["p90_seconds_to_convert"],
        600.0 + 0.9 * (2.0 * DAY_SECONDS - 600.0)
    ));
    // Visit to purchase: Ann, a day and ten minutes.
    assert!(close(
        &steps[2]["median_seconds_to_convert"],
        DAY_SECONDS + 600.0
    ));

    // Within a day of the ad: Ann's purchase is 20 minutes too late, Bob's visit two days.
    let day = api
        .shop("/v1/funnel?steps=ad_click,site_visit,purchase&window=1d")
        .await;
    assert_eq!(day["window_ms"], 86_400_000);
    assert_eq!(funnel_counts(&day), [(2, 1, 1), (1, 0, 1), (0, 0, 0)]);
    // At most an hour from ad to visit, then no limit: Bob's two days are too long.
    let hour = api
        .shop("/v1/funnel?steps=ad_click,site_visit,purchase&step_windows=,1h,")
        .await;
    assert_eq!(funnel_counts(&hour), [(2, 1, 1), (1, 1, 0), (1, 1, 0)]);
    // Strict: Ann's email comes between her visit and her purchase.
    let strict = api
        .shop("/v1/funnel?steps=ad_click,site_visit,purchase&order=strict")
        .await;
    assert_eq!(funnel_counts(&strict), [(2, 2, 0), (2, 0, 2), (0, 0, 0)]);
    // Any order: Ann did both, Bob the ad, Cara the purchase.
    let any = api
        .shop("/v1/funnel?steps=purchase,ad_click&order=any")
        .await;
    assert_eq!(funnel_counts(&any), [(3, 1, 2), (1, 1, 0)]);
    assert_eq!(any["steps"][1]["label"], "2 of 2 steps");
    // A step narrowed by a property: only Ann's ad is in the fall campaign.
    let fall = api
        .shop("/v1/funnel?steps=ad_click%5Bcampaign%3Dfall%5D,site_visit")
        .await;
    assert_eq!(funnel_counts(&fall), [(1, 1, 0), (1, 1, 0)]);
    assert_eq!(fall["steps"][0]["label"], "ad_click [campaign=fall]");
}

#[tokio::test]
async fn drop_off_shows_where_the_stopped_customers_went_and_came_from() {
    let api = TestApi::start().await;
    let report = api
        .shop("/v1/drop-off?steps=ad_click,site_visit,purchase&next_steps=2")
        .await;
    assert_eq!(report["next_steps"], 2);
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "every step but the last: {report}");
    assert_eq!(steps[0]["dropped"], 0);
    // Bob stopped at the visit, his last touchpoint, after an ad click.
    assert_eq!(steps[1]["label"], "site_visit");
    assert_eq!(steps[1]["dropped"], 1);
    assert_eq!(steps[1]["ended_there"], 1);
    assert_eq!(steps[1]["next"]["customers"], 0);
    assert_eq!(
        steps[1]["before"],
        json!([{"touchpoint": "ad_click", "customers": 1, "share": 1.0}])
    );
    // Stopping at the ad instead: Bob went on to the site.
    let report = api.shop("/v1/drop-off?steps=ad_click,purchase").await;
    assert_eq!(report["next_steps"], 3, "the default");
    let step = &report["steps"][0];
    assert_eq!(
        (&step["dropped"], &step["ended_there"]),
        (&json!(1), &json!(0))
    );
    assert_eq!(step["next"]["customers"], 1);
    let visit = step["next"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|node| node["label"] == "site_visit")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(
        (&visit["step"], &visit["customers"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(step["before"], json!([]));
}

#[tokio::test]
async fn top_paths_count_whole_journeys_and_their_conversions() {
    let api = TestApi::start().await;
    let report = api.shop("/v1/top-paths").await;
    assert_eq!(
        report,
        json!({
            "goal": null, "customers": 3, "conversions": null,
            "paths": [
                {"steps": ["ad_click", "site_visit"], "truncated": false, "customers": 1, "conversions": null, "conversion_rate": null},
                {"steps": ["ad_click", "site_visit", "email_open", "purchase"], "truncated": false, "customers": 1, "conversions": null, "conversion_rate": null},
                {"steps": ["site_visit", "purchase"], "truncated": false, "customers": 1, "conversions": null, "conversion_rate": null},
            ],
            "other": {"paths": 0, "customers": 0, "conversions": null, "conversion_rate": null},
        })
    );
    // Cut at two steps, Ann's path is Bob's, truncated; the limit sums Cara's into other.
    let cut = api
        .shop("/v1/top-paths?goal=purchase&steps=2&limit=2")
        .await;
    assert_eq!(cut["conversions"], 2);
    assert_eq!(
        cut["paths"],
        json!([
            {"steps": ["ad_click", "site_visit"], "truncated": false, "customers": 1, "conversions": 0, "conversion_rate": 0.0},
            {"steps": ["ad_click", "site_visit"], "truncated": true, "customers": 1, "conversions": 1, "conversion_rate": 1.0},
        ])
    );
    assert_eq!(
        cut["other"],
        json!({"paths": 1, "customers": 1, "conversions": 1, "conversion_rate": 1.0})
    );
    let csv = shop_text(
        &api,
        "/v1/top-paths?goal=purchase&steps=2&limit=2&format=csv",
        "text/csv; charset=utf-8",
    )
    .await;
    assert_eq!(
        csv,
        "path,steps,truncated,customers,conversions,conversion_rate\r\n\
         ad_click > site_visit,2,false,1,0,0\r\n\
         ad_click > site_visit,2,true,1,1,1\r\n\
         (other),,,1,1,1\r\n"
    );
    // Up to the goal and collapsed: nothing here repeats or goes past a purchase.
    let whole = api
        .shop("/v1/top-paths?goal=purchase&up_to_goal=true&collapse=true")
        .await;
    assert_eq!(whole["paths"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn influence_labels_moments_of_impact_and_influence() {
    let api = TestApi::start().await;
    let report = api.shop("/v1/influence?influence_reach=0.4").await;
    assert_eq!(report["goal"], "purchase");
    assert_eq!(
        (&report["customers"], &report["converters"]),
        (&json!(3), &json!(2))
    );
    let rows: Vec<(&str, u64, u64, f64, &str)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["touchpoint"].as_str().unwrap(),
                row["converters"].as_u64().unwrap(),
                row["non_converters"].as_u64().unwrap(),
                row["lift"].as_f64().unwrap(),
                row["label"].as_str().unwrap(),
            )
        })
        .collect();
    // Before converting, Ann saw ad, site and email and Cara the site; Bob saw ad and site.
    // Lift = (converters with * 3) / (customers with * 2).
    assert_eq!(
        rows,
        [
            ("email_open", 1, 0, 1.5, "moment_of_influence"),
            ("site_visit", 2, 1, 1.0, "moment_of_impact"),
            ("ad_click", 1, 1, 0.75, "none"),
        ]
    );
    // With the default reach of 0.2, the email (reaching 1 in 3) is no moment of influence.
    let default = api.shop("/v1/influence").await;
    assert_eq!(default["rows"][0]["label"], "none");
    let csv = shop_text(&api, "/v1/influence?format=csv", "text/csv; charset=utf-8").await;
    assert!(
        csv.starts_with("touchpoint,customers,converters,non_converters,reach,converter_reach,non_converter_reach,conversion_rate_with,lift,label,advice\r\nemail_open,1,1,0,"),
        "{csv}"
    );
}

#[tokio::test]
async fn attribution_credits_every_model_and_values() {
    let api = TestApi::start().await;
    let report = api
        .shop("/v1/attribution?goal=purchase&value_property=value")
        .await;
    assert_eq!(report["conversions"], 2);
    assert!(close(&report["value"], 40.0), "{report}");
    let row = |name: &str| -> Value {
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no row {name}: {report}"))
    };
    let names: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ad_click", "email_open", "site_visit"]);
    // Ann's 40 comes after ad, site, email; Cara's purchase (no value) after a site visit.
    let (ad, email, site) = (row("ad_click"), row("email_open"), row("site_visit"));
    let credit = |row: &Value, model: &str| {
        (
            row[model]["conversions"].as_f64().unwrap(),
            row[model]["value"].as_f64().unwrap(),
        )
    };
    assert_eq!(credit(&ad, "first_touch"), (1.0, 40.0));
    assert_eq!(credit(&site, "first_touch"), (1.0, 0.0));
    assert_eq!(credit(&email, "last_touch"), (1.0, 40.0));
    assert_eq!(credit(&ad, "last_touch"), (0.0, 0.0));
    assert!(close(&ad["linear"]["conversions"], 1.0 / 3.0));
    assert!(close(&site["linear"]["conversions"], 1.0 / 3.0 + 1.0));
    assert!(close(&email["linear"]["value"], 40.0 / 3.0));
    assert!(close(&ad["position_based"]["conversions"], 0.4));
    assert!(close(&site["position_based"]["conversions"], 0.2 + 1.0));
    assert!(close(&email["position_based"]["value"], 16.0));
    // Time decay, half-life 7 days: touches 1d20m, 1d10m and 20m before Ann's purchase.
    let weight = |minutes: f64| 2f64.powf(-minutes / (7.0 * 1440.0));
    let (w_ad, w_site, w_email) = (weight(1460.0), weight(1450.0), weight(20.0));
    let total = w_ad + w_site + w_email;
    assert!(
        close(&ad["time_decay"]["conversions"], w_ad / total),
        "{ad}"
    );
    assert!(close(
        &site["time_decay"]["conversions"],
        w_site / total + 1.0
    ));
    assert!(close(&email["time_decay"]["value"], 40.0 * w_email / total));
    let data_driven: f64 = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["data_driven"]["conversions"].as_f64().unwrap())
        .sum();
    assert!((data_driven - 2.0).abs() < 1e-9, "{report}");

    // By channel: the ad's channel is ads, the visit's web.
    let by_channel = api.shop("/v1/attribution?by=channel").await;
    assert_eq!(by_channel["by"], "channel");
    let first: Vec<(&str, f64)> = by_channel["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["name"].as_str().unwrap(),
                row["first_touch"]["conversions"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(first, [("ads", 1.0), ("email", 0.0), ("web", 1.0)]);
    // A half-life of a minute leaves almost all of Ann's time-decay credit to the email.
    let short = api.shop("/v1/attribution?half_life_days=0.000694").await;
    let email_share = short["rows"][1]["time_decay"]["conversions"]
        .as_f64()
        .unwrap();
    assert!(email_share > 0.999, "{short}");
    let csv = shop_text(
        &api,
        "/v1/attribution?format=csv",
        "text/csv; charset=utf-8",
    )
    .await;
    let header = csv.lines().next().unwrap();
    assert_eq!(
        header,
        "name,removal_effect,first_touch_conversions,first_touch_value,last_touch_conversions,last_touch_value,linear_conversions,linear_value,time_decay_conversions,time_decay_value,position_based_conversions,position_based_value,data_driven_conversions,data_driven_value"
    );
    assert_eq!(csv.lines().count(), 4, "{csv}");
}

#[tokio::test]
async fn sales_cycle_buckets_days_and_touchpoints_to_conversion() {
    let api = TestApi::start().await;
    let report = api.shop("/v1/sales-cycle").await;
    assert_eq!(
        (&report["customers"], &report["converters"]),
        (&json!(3), &json!(2))
    );
    // Ann: 1 day 20 minutes and 3 touchpoints; Cara: exactly 1 day (not "same day") and 1.
    let buckets = |measure: &str| -> Vec<(String, u64)> {
        report[measure]["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|bucket| {
                (
                    bucket["label"].as_str().unwrap().to_owned(),
                    bucket["customers"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let expected_days: Vec<(String, u64)> = [
        ("same day", 0),
        ("within a week", 2),
        ("within 30 days", 0),
        ("1-6 months", 0),
        ("over 6 months", 0),
    ]
    .iter()
    .map(|&(label, customers)| (label.to_owned(), customers))
    .collect();
    assert_eq!(buckets("days"), expected_days);
    let touchpoints: Vec<u64> = buckets("touchpoints").iter().map(|b| b.1).collect();
    assert_eq!(touchpoints, [0, 1, 1, 0, 0, 0]);
    assert!(
        close(&report["days"]["median"], 1.0 + 10.0 / 1440.0),
        "{report}"
    );
    assert!(close(&report["touchpoints"]["median"], 2.0));
    let csv = shop_text(
        &api,
        "/v1/sales-cycle?format=csv",
        "text/csv; charset=utf-8",
    )
    .await;
    assert!(
        csv.starts_with("measure,bucket,customers,share,value\r\ndays,same day,0,0,\r\ndays,within a week,2,1,\r\n"),
        "{csv}"
    );
}

#[tokio::test]
async fn leads_are_in_time_late_pending_or_zombies() {
    let api = TestApi::start().await;
    // A site visit makes a lead here. Ann buys a day and 10 minutes after hers (late), Cara
    // exactly a day after (in time); Bob never buys, 6.5 days before as_of: a zombie.
    let report = api
        .shop("/v1/leads?leads=site_visit&within_days=1&as_of=2026-11-10")
        .await;
    let counts: Vec<u64> = [
        "leads",
        "converted_in_time",
        "converted_late",
        "converted_before_lead",
        "pending",
        "zombies",
        "converted_after_lead",
    ]
    .iter()
    .map(|field| report[field].as_u64().unwrap())
    .collect();
    assert_eq!(counts, [3, 1, 1, 0, 0, 1, 2]);
    assert!(close(
        &report["median_days_lead_to_conversion"],
        (1.0 + 10.0 / 1440.0 + 1.0) / 2.0
    ));
    assert_eq!(
        report["before_conversion"],
        json!([{"touchpoint": "email_open", "customers": 1, "share": 0.5}])
    );
    assert!(
        report.get("zombie_customers").is_none(),
        "customer numbers mean nothing to a reader: {report}"
    );
    // As of 11-04 noon Cara has not bought yet, and Bob's lead is exactly a day old: pending.
    let earlier = api
        .shop("/v1/leads?leads=site_visit&within_days=1&as_of=2026-11-04T12:00:00Z")
        .await;
    assert_eq!(
        (
            &earlier["converted_late"],
            &earlier["pending"],
            &earlier["zombies"]
        ),
        (&json!(1), &json!(2), &json!(0))
    );
    // The default leads are forms and chats, which the shop has none of.
    assert_eq!(api.shop("/v1/leads").await["leads"], 0);
    let csv = shop_text(
        &api,
        "/v1/leads?leads=site_visit&within_days=1&as_of=2026-11-10&format=csv",
        "text/csv; charset=utf-8",
    )
    .await;
    assert!(
        csv.starts_with("section,item,customers,share,value\r\noutcome,converted_in_time,1,"),
        "{csv}"
    );
}

#[tokio::test]
async fn every_analyst_report_answers_csv_with_its_header_row() {
    let api = TestApi::start().await;
    let cases = [
        (
            "/v1/funnel?steps=ad_click,site_visit,purchase",
            "step,label,entered,converted,dropped,conversion_from_previous,conversion_from_first,median_seconds_to_convert,p90_seconds_to_convert",
        ),
        (
            "/v1/drop-off?steps=ad_click,purchase",
            "step,label,dropped,direction,position,touchpoint,customers,share_of_dropped",
        ),
        ("/v1/top-paths", "path,steps,truncated,customers,conversions,conversion_rate"),
        ("/v1/influence", "touchpoint,customers,converters,non_converters,reach,converter_reach,non_converter_reach,conversion_rate_with,lift,label,advice"),
        ("/v1/attribution", "name,removal_effect,first_touch_conversions,first_touch_value,last_touch_conversions,last_touch_value,linear_conversions,linear_value,time_decay_conversions,time_decay_value,position_based_conversions,position_based_value,data_driven_conversions,data_driven_value"),
        ("/v1/sales-cycle", "measure,bucket,customers,share,value"),
        ("/v1/leads", "section,item,customers,share,value"),
    ];
    for (path, header) in cases {
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = format!("{path}{separator}format=csv");
        let csv = shop_text(&api, &url, "text/csv; charset=utf-8").await;
        assert_eq!(csv.split("\r\n").next(), Some(header), "{path}: {csv}");
    }
    let funnel = shop_text(
        &api,
        "/v1/funnel?steps=ad_click,site_visit,purchase&format=csv",
        "text/csv; charset=utf-8",
    )
    .await;
    assert_eq!(
        funnel.split("\r\n").skip(1).collect::<Vec<_>>(),
        [
            "1,ad_click,2,2,0,1,1,,",
            "2,site_visit,2,1,1,1,1,86700,155580",
            "3,purchase,1,1,0,0.5,0.5,87000,87000",
            "",
        ]
    );
}

#[tokio::test]
async fn breakdowns_answer_the_report_per_segment_largest_first() {
    let api = TestApi::start().await;
    // Persona: one customer each, so by value: "(none)" (Bob) sorts before letters.
    let by_persona = api.shop("/v1/sales-cycle?breakdown_by=trait.persona").await;
    assert_eq!(by_persona["breakdown_by"], "trait.persona");
    let segments: Vec<(&str, u64, u64)> = by_persona["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|segment| {
            (
                segment["value"].as_str().unwrap(),
                segment["customers"].as_u64().unwrap(),
                segment["report"]["converters"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        segments,
        [("(none)", 1, 0), ("bargain", 1, 1), ("researcher", 1, 1)]
    );
    assert!(close(
        &by_persona["segments"][1]["report"]["days"]["median"],
        1.0
    ));
    assert!(close(
        &by_persona["segments"][2]["report"]["days"]["median"],
        1.0 + 20.0 / 1440.0
    ));

    // Campaign from the customer's first selected touchpoint carrying it: Bob's first is the
    // spring ad, but from 11-02 on only his fall visit is selected. Ann has none from 11-02.
    let all = api
        .shop("/v1/funnel?steps=site_visit,purchase&breakdown_by=prop.campaign")
        .await;
    let values: Vec<&str> = all["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|segment| segment["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["(none)", "fall", "spring"]);
    let later = api
        .shop("/v1/funnel?steps=site_visit,purchase&breakdown_by=prop.campaign&from=2026-11-02")
        .await;
    let segments = later["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 2, "{later}");
    assert_eq!(
        (&segments[0]["value"], &segments[0]["customers"]),
        (&json!("(none)"), &json!(2))
    );
    assert_eq!(
        funnel_counts(&segments[0]["report"]),
        [(1, 1, 0), (1, 1, 0)],
        "only Cara visits"
    );
    assert_eq!(segments[0]["report"]["customers"], 2);
    assert_eq!(
        (&segments[1]["value"], &segments[1]["customers"]),
        (&json!("fall"), &json!(1))
    );
    assert_eq!(
        funnel_counts(&segments[1]["report"]),
        [(1, 0, 1), (0, 0, 0)]
    );

    let csv = shop_text(
        &api,
        "/v1/funnel?steps=site_visit,purchase&breakdown_by=prop.campaign&from=2026-11-02&format=csv",
        "text/csv; charset=utf-8",
    )
    .await;
    assert_eq!(
        csv.split("\r\n").collect::<Vec<_>>(),
        [
            "segment,step,label,entered,converted,dropped,conversion_from_previous,conversion_from_first,median_seconds_to_convert,p90_seconds_to_convert",
            "(none),1,site_visit,1,1,0,1,1,,",
            "(none),2,purchase,1,1,0,1,1,86400,86400",
            "fall,1,site_visit,1,0,1,1,1,,",
            "fall,2,purchase,0,0,0,0,0,,",
            "",
        ]
    );
    // No customer at all: no segment, and the CSV still has its header.
    let none = api
        .shop("/v1/sales-cycle?breakdown_by=trait.persona&prop.campaign=winter")
        .await;
    assert_eq!(none["segments"], json!([]));
    let csv = shop_text(
        &api,
        "/v1/sales-cycle?breakdown_by=trait.persona&prop.campaign=winter&format=csv",
        "text/csv; charset=utf-8",
    )
    .await;
    assert_eq!(csv, "segment,measure,bucket,customers,share,value\r\n");
}

#[tokio::test]
async fn previous_period_comparison_shows_both_sides_and_unmatched_paths() {
    let api = TestApi::start().await;
    // a: 11-03 up to 11-05, Bob's and Cara's visits. b: the two days before, Ann's four
    // touchpoints and Bob's ad.
    let answer = api
        .shop("/v1/top-paths?from=2026-11-03&to=2026-11-05&compare=previous_period")
        .await;
    assert_eq!(
        answer["a"]["filter"],
        json!({"from": "2026-11-03T00:00:00.000Z", "to": "2026-11-05T00:00:00.000Z", "properties": {}, "traits": {}})
    );
    assert_eq!(
        answer["b"]["filter"],
        json!({"from": "2026-11-01T00:00:00.000Z", "to": "2026-11-03T00:00:00.000Z", "properties": {}, "traits": {}})
    );
    let path = |steps: &[&str], customers: u64| json!({"steps": steps, "truncated": false, "customers": customers, "conversions": null, "conversion_rate": null});
    assert_eq!(
        answer["a"]["report"]["paths"],
        json!([path(&["site_visit"], 2)])
    );
    assert_eq!(answer["b"]["report"]["customers"], 2);
    assert_eq!(
        answer["difference"],
        json!({
            "goal": null, "customers": 0, "conversions": null,
            "paths": [
                {"missing_from": "b", "a": path(&["site_visit"], 2)},
                {"missing_from": "a", "b": path(&["ad_click"], 1)},
                {"missing_from": "a", "b": path(&["ad_click", "site_visit", "email_open", "purchase"], 1)},
            ],
            "other": {"paths": 0, "customers": 0, "conversions": null, "conversion_rate": null},
        })
    );
}

#[tokio::test]
async fn segment_comparison_differences_are_b_minus_a() {
    let api = TestApi::start().await;
    // a: everyone; b: bargain hunters (Cara).
    let answer = api
        .shop("/v1/funnel?steps=site_visit,purchase&compare.trait.persona=bargain")
        .await;
    assert_eq!(
        answer["b"]["filter"]["traits"],
        json!({"persona": "bargain"})
    );
    assert_eq!(
        funnel_counts(&answer["a"]["report"]),
        [(3, 2, 1), (2, 2, 0)]
    );
    assert_eq!(
        funnel_counts(&answer["b"]["report"]),
        [(1, 1, 0), (1, 1, 0)]
    );
    let difference = &answer["difference"];
    assert_eq!(difference["customers"], -2);
    assert_eq!(difference["order"], "ordered", "equal values are kept");
    let first = &difference["steps"][0];
    assert_eq!(
        (&first["step"], &first["label"]),
        (&json!(1), &json!("site_visit")),
        "kept"
    );
    assert_eq!(
        (&first["entered"], &first["converted"], &first["dropped"]),
        (&json!(-2), &json!(-1), &json!(-1))
    );
    let second = &difference["steps"][1];
    assert_eq!(second["entered"], -1);
    // 2 of 3 visitors bought in a, 1 of 1 in b.
    assert!(
        close(&second["conversion_from_previous"], 1.0 - 2.0 / 3.0),
        "{difference}"
    );
    // Visit to purchase: a has Ann (1d 10m) and Cara (1d), b Cara only.
    assert!(
        close(&second["median_seconds_to_convert"], -300.0),
        "{difference}"
    );
    assert_eq!(first["median_seconds_to_convert"], Value::Null);

    let csv = shop_text(
        &api,
        "/v1/funnel?steps=site_visit,purchase&compare.trait.persona=bargain&format=csv",
        "text/csv; charset=utf-8",
    )
    .await;
    let rows: Vec<&str> = csv.split("\r\n").collect();
    assert!(rows[0].starts_with("side,step,label,entered"), "{csv}");
    assert_eq!(
        rows[1..],
        [
            "a,1,site_visit,3,2,1,1,1,,",
            "a,2,purchase,2,2,0,0.6666666666666666,0.6666666666666666,86700,86940",
            "b,1,site_visit,1,1,0,1,1,,",
            "b,2,purchase,1,1,0,1,1,86400,86400",
            "",
        ]
    );
}

#[tokio::test]
async fn analyst_report_mistakes_are_400_naming_the_parameter() {
    let api = TestApi::start().await;
    let cases = [
        ("/v1/funnel", "steps"),
        ("/v1/funnel?steps=a,b,a&order=any", "steps"),
        ("/v1/funnel?steps=a,b&order=any&step_windows=,1d", "step_windows"),
        ("/v1/funnel?steps=a,b&window=a%20week", "window"),
        ("/v1/drop-off?steps=a,b&next_steps=11", "next_steps"),
        ("/v1/top-paths?limit=0", "limit"),
        ("/v1/top-paths?up_to_goal=true", "up_to_goal"),
        ("/v1/influence?impact_reach=2", "impact_reach"),
        ("/v1/influence?goals=purchase", "goals"),
        ("/v1/attribution?position_weights=1,1,1", "position_weights"),
        ("/v1/attribution?by=campaign", "by"),
        ("/v1/attribution?half_life_days=0", "half_life_days"),
        ("/v1/sales-cycle?format=dot", "format"),
        ("/v1/leads?goal=form_submit", "goal"),
        ("/v1/leads?within_days=0", "within_days"),
        ("/v1/leads?as_of=soon", "as_of"),
        ("/v1/top-paths?breakdown_by=persona", "breakdown_by"),
        ("/v1/top-paths?breakdown_by=trait.persona&compare=previous_period&from=2026-11-01&to=2026-11-03", "compare"),
        ("/v1/top-paths?compare=previous_period", "compare"),
        ("/v1/top-paths?compare=last_year", "compare"),
        ("/v1/top-paths?compare.from=2026-11-10&to=2026-11-05&compare.trait.persona=x", "compare.to"),
    ];
    assert_refused(&api, &cases).await;
}

#[tokio::test]
async fn readiness_and_metrics_need_no_key_and_metrics_time_each_route_and_count_errors() {
    let api = TestApi::start().await;
    let ready = api.client.get(api.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.text().await.unwrap(), "ready");

    api.shop("/v1/funnel?steps=ad_click,purchase").await;
    api.shop("/v1/funnel?steps=site_visit,purchase").await;
    api.shop("/v1/customers/u:ann/journey").await;
    assert_eq!(
        api.get_with(SHOP_READ, "/v1/funnel?steps=").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.get_with(SHOP_WRITE, "/v1/paths").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.get_with(SHOP_READ, "/v1/customers/u:nobody/journey")
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    let response = api.client.get(api.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let samples = Samples::parse(&response.text().await.unwrap());
    let latency = "scribble_api_http_request_duration_seconds_count";
    assert_eq!(samples.sum(latency, &[("route", "/v1/funnel")]), Some(3.0));
    assert_eq!(
        samples.sum(latency, &[("route", "/v1/customers/{id}/journey")]),
        Some(2.0),
        "one series per route pattern, not per customer"
    );
    let requests = "scribble_api_http_requests_total";
    assert_eq!(
        samples.sum(requests, &[("route", "/v1/funnel"), ("status", "200")]),
        Some(2.0)
    );
    assert_eq!(
        samples.sum(requests, &[("route", "/readyz"), ("status", "200")]),
        Some(1.0)
    );
    let errors = "scribble_api_http_errors_total";
    for (route, code) in [
        ("/v1/funnel", "invalid_parameter"),
        ("/v1/paths", "wrong_key_kind"),
        ("/v1/customers/{id}/journey", "unknown_customer"),
    ] {
        assert_eq!(
            samples.sum(errors, &[("route", route), ("code", code)]),
            Some(1.0),
            "{route} {code}"
        );
    }
    assert_eq!(samples.count(errors, &[]), 3.0);
}

#[tokio::test]
async fn openapi_document_describes_every_route_without_a_key() {
    let api = TestApi::start().await;
    let response = api
        .client
        .get(api.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.0"));
    let mut documented: Vec<&str> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut routed = scribble_query_api::route_paths();
    documented.sort_unstable();
    routed.sort_unstable();
    assert_eq!(
        documented, routed,
        "openapi.json and the router list different routes"
    );
    // The three ways to send a read key and the error body every route refers to.
    let components = &document["components"];
    for scheme in ["bearer", "readKeyHeader", "readKeyQuery"] {
        assert!(
            components["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
    assert!(components["schemas"]["Error"]["properties"]["parameter"].is_object());
    // Every `$ref` points at something the document defines.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(fields) => {
                if let Some(Value::String(target)) = fields.get("$ref") {
                    out.push(target);
                }
                fields.values().for_each(|value| refs(value, out));
            }
            Value::Array(items) => items.iter().for_each(|value| refs(value, out)),
            _ => {}
        }
    }
    let mut targets = Vec::new();
    refs(&document, &mut targets);
    assert!(targets.len() > 20);
    for target in targets {
        let pointer = target.strip_prefix('#').unwrap();
        assert!(
            document.pointer(pointer).is_some(),
            "dangling $ref {target}"
        );
    }
    // Each analyst report documents its own parameters and the shared ones.
    let names = |path: &str| -> Vec<String> {
        document["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|parameter| {
                let parameter = match parameter["$ref"].as_str() {
                    Some(target) => document.pointer(target.strip_prefix('#').unwrap()).unwrap(),
                    None => parameter,
                };
                parameter["name"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let expected: [(&str, &[&str]); 7] = [
        ("/v1/funnel", &["steps", "order", "window", "step_windows"]),
        (
            "/v1/drop-off",
            &["steps", "order", "window", "step_windows", "next_steps"],
        ),
        (
            "/v1/top-paths",
            &["goal", "up_to_goal", "collapse", "steps", "limit"],
        ),
        (
            "/v1/influence",
            &["goal", "impact_reach", "influence_reach", "influence_lift"],
        ),
        (
            "/v1/attribution",
            &[
                "goal",
                "by",
                "half_life_days",
                "position_weights",
                "value_property",
            ],
        ),
        ("/v1/sales-cycle", &["goal"]),
        ("/v1/leads", &["leads", "goal", "within_days", "as_of"]),
    ];
    let shared = [
        "from",
        "to",
        "prop.<key>",
        "trait.<key>",
        "format",
        "breakdown_by",
        "compare",
        "compare.from",
        "compare.to",
        "compare.prop.<key>",
        "compare.trait.<key>",
    ];
    for (path, own) in expected {
        let mut wanted: Vec<&str> = own.to_vec();
        wanted.extend(shared);
        assert_eq!(names(path), wanted, "{path}");
    }
}

#[tokio::test]
async fn overview_counts_each_day_and_adds_up_to_the_totals() {
    let api = TestApi::start().await;
    let overview = api.shop("/v1/overview").await;
    assert_eq!(
        (&overview["interval"], &overview["goal"]),
        (&json!("day"), &json!("purchase"))
    );
    assert_eq!(
        (
            &overview["customers"],
            &overview["events"],
            &overview["conversions"]
        ),
        (&json!(3), &json!(8), &json!(2))
    );
    let rows: Vec<(&str, u64, u64, u64, u64)> = overview["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bucket| {
            let number = |name: &str| bucket[name].as_u64().unwrap();
            (
                bucket["start"].as_str().unwrap(),
                number("customers"),
                number("new_customers"),
                number("events"),
                number("conversions"),
            )
        })
        .collect();
    // Ann and Bob start on the 1st, Ann buys on the 2nd, Bob comes back on the 3rd, Cara visits
    // on the 4th and buys on the 5th.
    assert_eq!(
        rows,
        vec![
            ("2026-11-01T00:00:00.000Z", 2, 2, 3, 0),
            ("2026-11-02T00:00:00.000Z", 1, 0, 2, 1),
            ("2026-11-03T00:00:00.000Z", 1, 0, 1, 0),
            ("2026-11-04T00:00:00.000Z", 1, 1, 1, 0),
            ("2026-11-05T00:00:00.000Z", 1, 0, 1, 1),
        ]
    );
}

#[tokio::test]
async fn overview_takes_weeks_filters_and_csv() {
    let api = TestApi::start().await;
    let weeks = api.shop("/v1/overview?interval=week").await;
    assert_eq!(
        weeks["buckets"],
        json!([
            {"start": "2026-10-26T00:00:00.000Z", "customers": 2, "new_customers": 2, "events": 3, "conversions": 0},
            {"start": "2026-11-02T00:00:00.000Z", "customers": 3, "new_customers": 1, "events": 5, "conversions": 2},
        ])
    );
    let researchers = api
        .shop("/v1/overview?trait.persona=researcher&goal=email_open")
        .await;
    assert_eq!(
        (&researchers["customers"], &researchers["conversions"]),
        (&json!(1), &json!(1))
    );
    let response = api
        .get(SHOP_READ, "/v1/overview?format=csv&to=2026-11-02")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        response.text().await.unwrap(),
        "start,customers,new_customers,events,conversions\r\n\
         2026-11-01T00:00:00.000Z,2,2,3,0\r\n"
    );
}

#[tokio::test]
async fn overview_refuses_bad_parameters_and_keys() {
    let api = TestApi::start().await;
    let cases = [
        ("/v1/overview?interval=month", "interval"),
        ("/v1/overview?goal=", "goal"),
        ("/v1/overview?format=dot", "format"),
        ("/v1/overview?from=yesterday", "from"),
        ("/v1/overview?intervals=day", "intervals"),
    ];
    assert_refused(&api, &cases).await;
    let (status, body) = api.get_with(SHOP_WRITE, "/v1/overview").await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("wrong_key_kind"))
    );
    let missing = api
        .client
        .get(api.url("/v1/overview"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let blog = api.get_with(BLOG_READ, "/v1/overview").await.1;
    assert_eq!(
        (&blog["customers"], &blog["events"]),
        (&json!(1), &json!(2))
    );
}

#[tokio::test]
async fn the_dashboard_and_its_assets_are_served_without_a_key() {
    let api = TestApi::start().await;
    let page = api.client.get(api.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(html.contains("assets/app.js") && html.contains("assets/style.css"));
    for (file, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
    ] {
        let response = api
            .client
            .get(api.url(&format!("/assets/{file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        assert_eq!(response.headers()[CONTENT_TYPE], content_type, "{file}");
    }
    // The charting library goes gzipped to browsers that take it, and plain to others.
    let zipped = api
        .client
        .get(api.url("/assets/echarts.min.js"))
        .header("accept-encoding", "gzip, deflate, br")
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let zipped_len = zipped.bytes().await.unwrap().len();
    let plain = api
        .client
        .get(api.url("/assets/echarts.min.js"))
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.text().await.unwrap();
    assert!(
        plain.len() > 2 * zipped_len,
        "{} vs {zipped_len}",
        plain.len()
    );
    assert!(
        plain.contains("Apache"),
        "the licence notice stays in the bundle"
    );
    let (status, body) = api.get_with(SHOP_READ, "/assets/nope.js").await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::NOT_FOUND, &json!("not_found"))
    );
}

/// `DELETE {path}` carrying `key` as a bearer token; the status and the JSON body (or null).
async fn delete_with(api: &TestApi, key: &str, path: &str) -> (StatusCode, Value) {
    let response = api
        .client
        .delete(api.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn forgetting_a_customer_erases_it_and_keeps_it_erased() {
    let api = TestApi::start().await;
    // Only the project's read key erases: not its (public) write key, not another project's.
    let (status, body) = delete_with(&api, SHOP_WRITE, "/v1/customers/u:ann").await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("wrong_key_kind"))
    );
    let response = api
        .client
        .delete(api.url("/v1/customers/u:ann"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = delete_with(&api, BLOG_READ, "/v1/customers/u:ann").await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::NOT_FOUND, &json!("unknown_customer"))
    );
    let (status, body) = delete_with(&api, SHOP_READ, "/v1/customers/u:ann?soon=1").await;
    assert_eq!(
        (status, &body["parameter"]),
        (StatusCode::BAD_REQUEST, &json!("soon"))
    );
    assert_eq!(
        api.shop("/v1/customers/u:ann/journey").await["touchpoints"],
        4
    );

    // By any identity: the whole stitched customer goes.
    let (status, forgotten) = delete_with(&api, SHOP_READ, "/v1/customers/a:cookie-a").await;
    assert_eq!(status, StatusCode::OK, "{forgotten}");
    assert_eq!(
        forgotten,
        json!({"customer_id": "u:ann", "identities": ["u:ann", "a:cookie-a"], "events": 5, "complete": true})
    );
    for identity in ["u:ann", "a:cookie-a"] {
        let (status, body) = api
            .get_with(SHOP_READ, &format!("/v1/customers/{identity}/journey"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{identity}: {body}");
        let (status, _) = delete_with(&api, SHOP_READ, &format!("/v1/customers/{identity}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{identity} again");
    }
    let touchpoints = api.shop("/v1/touchpoints").await;
    assert_eq!(
        (&touchpoints["customers"], &touchpoints["events"]),
        (&json!(2), &json!(4))
    );
    assert_eq!(
        api.shop("/v1/metrics").await["conversions"],
        1,
        "only cara's purchase"
    );
    assert_eq!(
        api.shop("/v1/customers/a:cookie-b/journey").await["touchpoints"],
        2
    );
    let (_, dan) = api.get_with(BLOG_READ, "/v1/customers/dan/journey").await;
    assert_eq!(dan["touchpoints"], 2, "the other project is untouched");

    // Late events naming either identity, even together with a new one, stay out.
    let late = [
        event(
            20,
            json!({"timestamp": "2026-11-06T09:00:00Z", "touchpoint": "site_visit", "anonymous_id": "cookie-a"}),
        ),
        event(
            21,
            json!({"type": "identify", "timestamp": "2026-11-06T09:01:00Z", "user_id": "ann", "anonymous_id": "cookie-new"}),
        ),
        event(
            22,
            json!({"type": "alias", "timestamp": "2026-11-06T09:02:00Z", "user_id": "ann-2", "previous_id": "ann"}),
        ),
    ];
    let batch: Vec<(&str, &Event)> = late.iter().map(|event| ("shop", event)).collect();
    assert_eq!(api.store.apply(&batch, 2).unwrap().tombstoned, 3);
    for identity in ["u:ann", "a:cookie-a", "a:cookie-new", "u:ann-2"] {
        let (status, _) = api
            .get_with(SHOP_READ, &format!("/v1/customers/{identity}/journey"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{identity}");
    }
}
