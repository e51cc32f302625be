//! Scribble's collector: the HTTP edge where websites, back-ends and email links send touchpoint
//! events. It authenticates the write key, decodes the body (gzip under a cap), validates each
//! event on its own and durably queues the valid ones before answering. Beyond
//! `max_requests_in_flight` event requests at once it sheds load: `503 overloaded` ([`overload`]).
//!
//! The event endpoints take the write key from a header or, for browsers, from `?key=`. Each
//! event records its sender's IP address ([`sender`]), truncated unless the project keeps it
//! whole.
//!
//! Routes (all under `/v1` answer CORS preflights from any origin):
//! - `POST /v1/events`, `/v1/identify`, `/v1/alias`: one event, an array, or `{"batch": [...]}`;
//! - `GET /v1/pixel.gif`: email opens, always answered with a transparent GIF;
//! - `GET /v1/click`: email clicks, redirected to the project's allowed hosts only;
//! - `GET /scribble.js`: the browser tracker ([`tracker`]);
//! - `GET /healthz`: liveness;
//! - `GET /readyz`: readiness, 200 only while the event sink can take events;
//! - `GET /metrics`: every metric of the process in the Prometheus text format ([`metrics`]
//!   lists the collector's own).

mod auth;
mod decode;
mod email;
mod error;
mod ingest;
mod metrics;
mod overload;
mod rate_limit;
mod sender;
mod tracker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use axum::http::{HeaderName, Method};
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use scribble_bus::EventSink;
use scribble_domain::event::{Event, EventLimits};
use scribble_domain::project::{KeyMatch, LiveProjects, Projects};
use scribble_telemetry::{record_requests, MetricsRegistry};
use tokio::net::TcpListener;
use tower_http::cors::{Any, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::metrics::CollectorMetrics;
use crate::rate_limit::RateLimiter;

pub use decode::MAX_EVENTS_PER_REQUEST;
pub use error::CollectorError;
pub use ingest::{Accepted, Rejection};
pub use sender::{sender_ip, IpNetwork, TrustedProxies};
/// The body decoding and per-event validation of `POST /v1/events`, without HTTP: the fuzz
/// targets (`fuzz/`) drive them with arbitrary bytes.
pub use {
    decode::decompress,
    ingest::{check_body, Checked},
};

/// The collector's settings, loaded once at start.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Projects and their keys as served now (a reload replaces them); only write keys are
    /// accepted here.
    pub projects: LiveProjects,
    /// Per-event size and shape limits.
    pub limits: EventLimits,
    /// Largest request body as sent (compressed or not), in bytes.
    pub max_body_bytes: usize,
    /// Largest body after gzip is undone, in bytes.
    pub max_decompressed_bytes: usize,
    /// Proxies whose `X-Forwarded-For` names the sender ([`sender`]); none by default.
    pub trusted_proxies: TrustedProxies,
    /// Most event requests handled at once; one more is refused with `503 overloaded`
    /// ([`overload`]). Bodies in flight stay under this times `max_body_bytes`.
    pub max_requests_in_flight: usize,
}

impl CollectorConfig {
    /// `projects` with the default limits: 32 KiB and 32 levels per event, 1 MiB bodies that may
    /// inflate to 5 MiB, 1024 requests in flight.
    pub fn new(projects: Projects) -> Self {
        Self::live(LiveProjects::new(projects))
    }

    /// [`new`](Self::new) over projects that may be reloaded while the collector runs.
    pub fn live(projects: LiveProjects) -> Self {
        Self {
            projects,
            limits: EventLimits::default(),
            max_body_bytes: 1024 * 1024,
            max_decompressed_bytes: 5 * 1024 * 1024,
            trusted_proxies: TrustedProxies::default(),
            max_requests_in_flight: 1024,
        }
    }
}

/// What every handler sees.
#[derive(Clone)]
struct AppState {
    config: Arc<CollectorConfig>,
    queue: Arc<dyn EventSink>,
    limiter: Arc<RateLimiter>,
    metrics: Arc<CollectorMetrics>,
    registry: MetricsRegistry,
}

impl AppState {
    /// Refuses a write key over its project's rate limit, before its body is decoded.
    fn admit(&self, key: &KeyMatch<'_>) -> Result<(), CollectorError> {
        self.limiter
            .admit(&bucket_name(key), key.project.rate_limit, Instant::now())
            .map_err(CollectorError::RateLimited)
    }

    /// Charges `events` accepted under `key` to its rate limit.
    fn charge(&self, key: &KeyMatch<'_>, events: usize) {
        self.limiter.charge(
            &bucket_name(key),
            key.project.rate_limit,
            events,
            Instant::now(),
        );
    }

    /// Hands `events` of `project` to the bus, counting them as accepted, or as rejected with
    /// the bus's error code.
    async fn enqueue(&self, project: &str, events: &[Event]) -> Result<(), CollectorError> {
        match self.queue.append(project, events).await {
            Ok(()) => {
                self.metrics.accepted(project, events.len());
                Ok(())
            }
            Err(failure) => {
                let error = CollectorError::from(failure);
                self.metrics.rejected(project, error.code(), events.len());
                Err(error)
            }
        }
    }
}

/// The rate-limit bucket of a key: ids of plain keys (`write_keys[0]`) repeat across projects.
fn bucket_name(key: &KeyMatch<'_>) -> String {
    format!("{}/{}", key.project.name, key.key_id)
}

/// The collector's routes, ready to be served (or merged into a bigger router). Its metrics are
/// registered in `registry` (once per registry), and `GET /metrics` serves all of `registry`.
pub fn router(
    config: Arc<CollectorConfig>,
    queue: Arc<dyn EventSink>,
    registry: &MetricsRegistry,
) -> Router {
    let metrics = CollectorMetrics::register(registry, &queue);
    let body_limit = DefaultBodyLimit::max(config.max_body_bytes);
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST, Method::GET, Method::OPTIONS])
        .allow_headers([
            CONTENT_TYPE,
            AUTHORIZATION,
            HeaderName::from_static("x-write-key"),
            CONTENT_ENCODING,
        ])
        // Browsers may reuse a preflight for an hour instead of sending one before every batch.
        .max_age(Duration::from_secs(3600));
    let v1 = Router::new()
        .route("/v1/events", post(ingest::events))
        .route("/v1/identify", post(ingest::identify))
        .route("/v1/alias", post(ingest::alias))
        .route_layer(middleware::from_fn(auth::query_key))
        // Outermost, so an overloaded collector refuses before it reads a key or a body.
        .route_layer(middleware::from_fn_with_state(
            overload::InFlight::new(config.max_requests_in_flight),
            overload::shed_when_full,
        ))
        .route("/v1/pixel.gif", get(email::pixel))
        .route("/v1/click", get(email::click))
        .layer(body_limit)
        .layer(cors);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/scribble.js", get(tracker::script))
        .route("/metrics", get(metrics_reply))
        .merge(v1)
        .layer(middleware::from_fn_with_state(
            metrics.http.clone(),
            record_requests,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(AppState {
            config,
            queue,
            limiter: Arc::default(),
            metrics,
            registry: registry.clone(),
        })
}

/// Every metric of the process, for Prometheus.
async fn metrics_reply(State(state): State<AppState>) -> axum::response::Response {
    state.registry.reply()
}

/// `ready` while the event sink can take events, else a 503 `bus_unavailable` so load balancers
/// send traffic to another collector.
async fn readyz(State(state): State<AppState>) -> Result<&'static str, CollectorError> {
    if state.queue.is_ready() {
        Ok("ready")
    } else {
        Err(CollectorError::NotReady)
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in flight finish.
/// Each request knows its peer's address, which events record as their sender's.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "collector listening");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
