//! What every Scribble process shares to report on itself: one Prometheus registry per process
//! ([`MetricsRegistry`]) and its `GET /metrics` reply in the Prometheus text format 0.0.4; the
//! HTTP request metrics of the collector and the query API ([`HttpMetrics`], recorded by the
//! [`record_requests`] middleware); gauges computed when scraped ([`register_computed_gauge`]);
//! and [`Samples`], a scrape read back, for tests and checks.
//!
//! Metrics go through `prometheus-client`, the Prometheus project's own Rust client, rather than
//! a global recorder (the `metrics` crate) or a hand-written registry: metrics are plain values
//! registered in an explicit registry that is passed down like the configuration, so
//! `scribble serve` puts its collector, worker and query API into one registry, each test gets
//! its own, and every label set is a typed struct whose cardinality can be read off its fields.
//! Each crate defines its own metrics in its `metrics` module; this crate only holds what they
//! share.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// The metrics of one process, shared by everything in it that records or serves them. Cheap to
/// clone; metrics may be registered at any time, and a scrape sees those registered so far.
#[derive(Clone, Default)]
pub struct MetricsRegistry {
    registry: Arc<RwLock<Registry>>,
}

impl std::fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsRegistry").finish_non_exhaustive()
    }
}

impl MetricsRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `register` on the registry and returns what it returns. Register each set of metrics
    /// once per registry: the same name twice would be exposed twice.
    pub fn register<T>(&self, register: impl FnOnce(&mut Registry) -> T) -> T {
        register(&mut self.registry.write())
    }

    /// Every registered metric in the Prometheus text exposition format 0.0.4.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry.read())
            .expect("writing to a String cannot fail");
        text
    }

    /// The `GET /metrics` reply: [`encode`](Self::encode) with its content type.
    pub fn reply(&self) -> Response {
        (
            [(
                CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            self.encode(),
        )
            .into_response()
    }
}

/// Latency buckets in seconds, from 0.5 ms to about 33 s, doubling.
pub fn seconds_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 17)
}

/// The stable error code of a reply (the `error` field of its JSON body), put in the response's
/// extensions by the crate's one `IntoResponse` for its error type, so that
/// [`record_requests`] counts errors by code without reading bodies. A reply that succeeds for
/// its caller but failed at something else (the email pixel, served even when its event was not
/// recorded) carries it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    route: String,
    code: &'static str,
}

/// Requests of one HTTP service by route and status, their latency by route, and error replies
/// by route and [`ErrorCode`]. Routes are the router's patterns (`/v1/customers/{id}/journey`),
/// and `unmatched` for paths no route serves, so the label sets stay few whatever is requested.
#[derive(Debug)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    errors: Family<ErrorLabels, Counter>,
}

impl HttpMetrics {
    /// Registers `scribble_{service}_http_requests_total{route,status}`,
    /// `scribble_{service}_http_request_duration_seconds{route}` and
    /// `scribble_{service}_http_errors_total{route,code}`.
    pub fn register(registry: &mut Registry, service: &str) -> Arc<Self> {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(seconds_buckets())),
            errors: Family::default(),
        };
        registry.register(
            format!("scribble_{service}_http_requests"),
            "HTTP requests answered, by route pattern and status",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            format!("scribble_{service}_http_request_duration"),
            "Time from request to response headers, by route pattern",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register(
            format!("scribble_{service}_http_errors"),
            "Replies carrying an error code (the `error` field of the body), by route pattern and code",
            metrics.errors.clone(),
        );
        Arc::new(metrics)
    }

    fn observe(&self, route: String, status: StatusCode, error: Option<ErrorCode>, seconds: f64) {
        if let Some(ErrorCode(code)) = error {
            self.errors
                .get_or_create(&ErrorLabels {
                    route: route.clone(),
                    code,
                })
                .inc();
        }
        self.duration
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .observe(seconds);
        self.requests
            .get_or_create(&RequestLabels {
                route,
                status: status.as_u16(),
            })
            .inc();
    }
}

/// Middleware recording every request into [`HttpMetrics`]; add it with
/// `Router::layer(axum::middleware::from_fn_with_state(metrics, record_requests))` so it sees
/// the matched route.
pub async fn record_requests(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe(
        route,
        response.status(),
        response.extensions().get::<ErrorCode>().copied(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The value source of a [`register_computed_gauge`] gauge.
type GaugeSource = Box<dyn Fn() -> Option<i64> + Send + Sync>;

/// A gauge whose value is asked for at each scrape.
struct ComputedGauge {
    name: &'static str,
    help: &'static str,
    value: GaugeSource,
}

impl std::fmt::Debug for ComputedGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComputedGauge")
            .field("name", &self.name)
            .finish()
    }
}

impl Collector for ComputedGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(value) = (self.value)() else {
            return Ok(());
        };
        let gauge = ConstGauge::new(value);
        let metric = encoder.encode_descriptor(self.name, self.help, None, gauge.metric_type())?;
        gauge.encode(metric)
    }
}

/// Registers gauge `name` whose value `value` gives at each scrape; a scrape leaves the gauge
/// out while `value` answers `None` (a figure the process cannot tell in its mode). `value`
/// must be quick and must not block: it runs inside the scrape.
pub fn register_computed_gauge(
    registry: &mut Registry,
    name: &'static str,
    help: &'static str,
    value: impl Fn() -> Option<i64> + Send + Sync + 'static,
) {
    registry.register_collector(Box::new(ComputedGauge {
        name,
        help,
        value: Box::new(value),
    }));
}

/// A scrape read back: each sample's name and labels with its value. For tests and checks; the
/// processes never parse their own output.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Samples {
    /// Reads the Prometheus text format: comments are skipped, and a line that is not a sample
    /// (`name{label="value",...} number`) panics, since a test must not read past a broken
    /// exposition.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (series, value) = line
                    .rsplit_once(' ')
                    .unwrap_or_else(|| panic!("not a sample: {line}"));
                let value: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("not a number in: {line}"));
                let (name, labels) = match series.split_once('{') {
                    None => (series, BTreeMap::new()),
                    Some((name, labels)) => (name, parse_labels(labels, line)),
                };
                (name.to_owned(), labels, value)
            })
            .collect();
        Self { samples }
    }

    /// The sum of every sample named `name` whose labels include all of `labels`; `None` when
    /// there is no such sample.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut matching = self
            .samples
            .iter()
            .filter(|(sample, sample_labels, _)| {
                sample == name
                    && labels.iter().all(|(key, value)| {
                        sample_labels.get(*key).map(String::as_str) == Some(value)
                    })
            })
            .map(|(_, _, value)| *value)
            .peekable();
        matching.peek()?;
        Some(matching.sum())
    }

    /// [`sum`](Self::sum), with 0 when no sample matches (a counter not moved yet).
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.sum(name, labels).unwrap_or(0.0)
    }
}

/// `key="value",...}` of a sample line (label values are written without escapes by our
/// metrics: routes, codes and project names).
fn parse_labels(labels: &str, line: &str) -> BTreeMap<String, String> {
    let labels = labels
        .strip_suffix('}')
        .unwrap_or_else(|| panic!("unclosed labels in: {line}"));
    labels
        .split("\",")
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair
                .split_once("=\"")
                .unwrap_or_else(|| panic!("not a label in: {line}"));
            (key.to_owned(), value.trim_end_matches('"').to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    async fn failing() -> Response {
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
        response
            .extensions_mut()
            .insert(ErrorCode("store_unavailable"));
        response
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_pattern_status_and_error_code() {
        let registry = MetricsRegistry::new();
        let http = registry.register(|registry| HttpMetrics::register(registry, "test"));
        let app = Router::new()
            .route("/items/{id}", get(|| async { "item" }))
            .route("/down", get(failing))
            .layer(axum::middleware::from_fn_with_state(http, record_requests));
        for uri in ["/items/1", "/items/2", "/down", "/nowhere"] {
            let request = axum::http::Request::get(uri).body(Body::empty()).unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        let samples = Samples::parse(&registry.encode());
        let requests = "scribble_test_http_requests_total";
        assert_eq!(
            samples.sum(requests, &[("route", "/items/{id}"), ("status", "200")]),
            Some(2.0)
        );
        assert_eq!(
            samples.sum(requests, &[("route", "unmatched"), ("status", "404")]),
            Some(1.0)
        );
        assert_eq!(
            samples.sum(
                "scribble_test_http_errors_total",
                &[("route", "/down"), ("code", "store_unavailable")]
            ),
            Some(1.0)
        );
        assert_eq!(samples.count("scribble_test_http_errors_total", &[]), 1.0);
        assert_eq!(
            samples.sum(
                "scribble_test_http_request_duration_seconds_count",
                &[("route", "/items/{id}")]
            ),
            Some(2.0)
        );
    }

    #[test]
    fn computed_gauges_are_asked_at_each_scrape_and_left_out_without_a_value() {
        let registry = MetricsRegistry::new();
        let source = Arc::new(std::sync::atomic::AtomicI64::new(3));
        let read = source.clone();
        registry.register(|registry| {
            register_computed_gauge(registry, "scribble_test_depth", "Depth", move || {
                Some(read.load(std::sync::atomic::Ordering::Relaxed))
            });
            register_computed_gauge(registry, "scribble_test_unknown", "Unknown", || None);
        });
        let first = Samples::parse(&registry.encode());
        assert_eq!(first.sum("scribble_test_depth", &[]), Some(3.0));
        assert_eq!(first.sum("scribble_test_unknown", &[]), None);
        source.store(7, std::sync::atomic::Ordering::Relaxed);
        let second = Samples::parse(&registry.encode());
        assert_eq!(second.sum("scribble_test_depth", &[]), Some(7.0));
    }

    #[test]
    fn samples_read_names_labels_and_values() {
        let samples = Samples::parse(
            "# HELP a_total A.\n# TYPE a_total counter\n\
             a_total{project=\"shop\",reason=\"invalid_event\"} 2\n\
             a_total{project=\"blog\",reason=\"invalid_event\"} 3\n\
             b 1.5\n",
        );
        assert_eq!(samples.sum("a_total", &[("project", "shop")]), Some(2.0));
        assert_eq!(
            samples.sum("a_total", &[("reason", "invalid_event")]),
            Some(5.0)
        );
        assert_eq!(samples.sum("b", &[]), Some(1.5));
        assert_eq!(samples.sum("c", &[]), None);
        assert_eq!(samples.count("c", &[]), 0.0);
    }
}
