//! Routes of the query API. Each handler authenticates the read key, decodes its parameters,
//! computes the report on a blocking thread (reports scan every journey) and renders it. The
//! analyst reports are in [`reports`], with what they share in [`answer`]; the dashboard's time
//! series is in [`overview`] and the dashboard page itself in [`dashboard`]; erasing a customer
//! (the one route that writes) is in [`forget`]; [`routes`] lists
//! every route, and `openapi.json` (at the crate root) describes each of them. Every request is
//! recorded in the API's metrics ([`crate::metrics`]), served at `/metrics`.

mod answer;
mod dashboard;
mod forget;
mod overview;
mod reports;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, MethodRouter};
use axum::{middleware, Json, Router};
use scribble_domain::event::{format_time, IdentityKey};
use scribble_domain::journey::{session_numbers, DEFAULT_SESSION_GAP_MS};
use scribble_domain::metrics::scribble_metrics;
use scribble_domain::project::{bearer_key, KeyKind, LiveProjects, Projects};
use scribble_domain::render::{to_dot, to_mermaid};
use scribble_domain::stages::StageMap;
use scribble_store::JourneyStore;
use scribble_telemetry::{record_requests, MetricsRegistry};
use serde_json::{json, Value};
use tower_http::cors::CorsLayer;
use tracing::field::Empty;
use tracing::{instrument, Span};

use crate::error::ApiError;
use crate::metrics;
use crate::params::{filter_query, metrics_query, no_parameters, path_query, Format};

/// Settings of the query API, loaded once at start (the projects may be reloaded).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub projects: LiveProjects,
    pub stages: StageMap,
    pub session_gap_ms: i64,
}

impl ApiConfig {
    pub fn new(projects: Projects) -> Self {
        Self::live(LiveProjects::new(projects))
    }

    /// [`new`](Self::new) over projects that may be reloaded while the API runs.
    pub fn live(projects: LiveProjects) -> Self {
        Self {
            projects,
            stages: StageMap::default(),
            session_gap_ms: DEFAULT_SESSION_GAP_MS,
        }
    }
}

#[derive(Clone)]
struct AppState {
    config: Arc<ApiConfig>,
    store: Arc<dyn JourneyStore>,
    registry: MetricsRegistry,
}

/// Every route of the query API with its handler: all GET but the erasure of a customer. The
/// router is built from this list, and a test checks that `openapi.json` describes each path in
/// it.
fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/", get(dashboard::index)),
        ("/assets/{file}", get(dashboard::asset)),
        ("/healthz", get(|| async { "ok" })),
        ("/readyz", get(readyz)),
        ("/metrics", get(prometheus_metrics)),
        ("/openapi.json", get(openapi)),
        ("/v1/paths", get(paths)),
        ("/v1/metrics", get(metrics)),
        ("/v1/touchpoints", get(touchpoints)),
        ("/v1/overview", get(overview::overview_report)),
        ("/v1/customers/{id}/journey", get(journey)),
        ("/v1/customers/{id}", delete(forget::forget_customer)),
        ("/v1/funnel", get(reports::funnel_report)),
        ("/v1/drop-off", get(reports::drop_off_report)),
        ("/v1/top-paths", get(reports::top_paths_report)),
        ("/v1/influence", get(reports::influence_report)),
        ("/v1/attribution", get(reports::attribution_report)),
        ("/v1/sales-cycle", get(reports::sales_cycle_report)),
        ("/v1/leads", get(reports::leads_report)),
    ]
}

/// The path of every route the query API serves, as written in `openapi.json`.
pub fn route_paths() -> Vec<&'static str> {
    routes().into_iter().map(|(path, _)| path).collect()
}

/// The query API's routes over `store`. Its metrics are registered in `registry` (once per
/// registry), and `GET /metrics` serves all of `registry`.
pub fn router(
    config: Arc<ApiConfig>,
    store: Arc<dyn JourneyStore>,
    registry: &MetricsRegistry,
) -> Router {
    let http_metrics = metrics::register(registry);
    routes()
        .into_iter()
        .fold(Router::new(), |router, (path, handler)| {
            router.route(path, handler)
        })
        .layer(middleware::from_fn_with_state(
            http_metrics,
            record_requests,
        ))
        .layer(CorsLayer::permissive())
        .with_state(AppState {
            config,
            store,
            registry: registry.clone(),
        })
}

/// `ready` while the store answers, else `503 store_unavailable`.
async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.store.check_reachable().await?;
    Ok("ready")
}

/// Every metric of the process, for Prometheus (not the scribble metrics of `/v1/metrics`).
async fn prometheus_metrics(State(state): State<AppState>) -> Response {
    state.registry.reply()
}

/// The OpenAPI 3.0 description of every route, written by hand next to the code it describes.
const OPENAPI: &str = include_str!("../../openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A report request: the project its read key opens, and its query parameters without the key.
/// The key comes from `Authorization: Bearer`, `X-Read-Key`, or the `key` query parameter (so a
/// dashboard link can carry it).
struct Reader {
    project: String,
    params: Vec<(String, String)>,
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let headers = &parts.headers;
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_key);
        let header_key = headers
            .get("x-read-key")
            .and_then(|value| value.to_str().ok());
        let Query(mut params) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|error| ApiError::invalid("query", error.body_text()))?;
        // Only the first `key` is the key: a second one is an unknown parameter like any other.
        let query_key = params
            .iter()
            .position(|(name, _)| name == "key")
            .map(|index| params.remove(index).1);
        let key = bearer
            .or(header_key)
            .or(query_key.as_deref())
            .ok_or(ApiError::MissingKey)?
            .trim();
        match state.config.projects.current().by_key(key) {
            Some(found) if found.kind == KeyKind::Read => Ok(Self {
                project: found.project.name.clone(),
                params,
            }),
            Some(_) => Err(ApiError::WriteKeyOnReadApi),
            None => Err(ApiError::UnknownKey),
        }
    }
}

/// Runs a CPU-heavy report off the async threads.
async fn compute<R: Send + 'static>(
    report: impl FnOnce() -> R + Send + 'static,
) -> Result<R, ApiError> {
    Ok(tokio::task::spawn_blocking(report).await?)
}

#[instrument(skip_all, fields(project = %reader.project))]
async fn paths(State(state): State<AppState>, reader: Reader) -> Result<Response, ApiError> {
    let query = path_query(reader.params)?;
    let graph = state
        .store
        .path_graph(&reader.project, &query.filter, query.view, &query.options)
        .await?;
    Ok(match query.format {
        Format::Json => Json(graph).into_response(),
        Format::Dot => (
            [(header::CONTENT_TYPE, "text/vnd.graphviz; charset=utf-8")],
            to_dot(&graph),
        )
            .into_response(),
        Format::Mermaid => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            to_mermaid(&graph),
        )
            .into_response(),
    })
}

#[instrument(skip_all, fields(project = %reader.project))]
async fn metrics(State(state): State<AppState>, reader: Reader) -> Result<Response, ApiError> {
    let query = metrics_query(reader.params)?;
    let set = state
        .store
        .journeys_without_properties(&reader.project, &query.filter)
        .await?;
    let config = state.config.clone();
    let metrics = compute(move || scribble_metrics(&set, &config.stages, &query.goal)).await?;
    Ok(Json(metrics).into_response())
}

/// Every touchpoint with its event and customer counts, busiest first: what to pick as a path
/// start, end or goal.
#[instrument(skip_all, fields(project = %reader.project))]
async fn touchpoints(State(state): State<AppState>, reader: Reader) -> Result<Response, ApiError> {
    let filter = filter_query(reader.params)?;
    let set = state
        .store
        .journeys_without_properties(&reader.project, &filter)
        .await?;
    let rows = compute(move || {
        let mut counts: BTreeMap<&str, (usize, usize, &str)> = BTreeMap::new();
        for journey in &set.journeys {
            let mut seen = HashSet::new();
            for step in &journey.steps {
                let entry =
                    counts.entry(set.symbols.name(step.touchpoint)).or_insert((0, 0, set.symbols.name(step.channel)));
                entry.0 += 1;
                if seen.insert(step.touchpoint) {
                    entry.1 += 1;
                }
            }
        }
        let mut rows: Vec<Value> = counts
            .into_iter()
            .map(|(name, (events, customers, channel))| {
                json!({"touchpoint": name, "channel": channel, "events": events, "customers": customers})
            })
            .collect();
        rows.sort_by_key(|row| std::cmp::Reverse(row["events"].as_u64()));
        json!({"customers": set.journeys.len(), "events": set.event_count(), "touchpoints": rows})
    })
    .await?;
    Ok(Json(rows).into_response())
}

/// The customer identity of a `/v1/customers/{id}` path. Decoded here rather than rejected by
/// axum, so a mangled id gets the JSON error reply.
fn customer_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = id.map_err(|_| {
        ApiError::invalid(
            "id",
            "the customer identity in the path must be percent-encoded UTF-8, e.g. u:<user id>",
        )
    })?;
    Ok(id)
}

/// One customer's stitched timeline with all identities, traits, sessions and stages.
#[instrument(skip_all, fields(project = %reader.project, customer = Empty))]
async fn journey(
    State(state): State<AppState>,
    reader: Reader,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = customer_id(id)?;
    Span::current().record("customer", id.as_str());
    no_parameters(reader.params)?;
    let customer = state
        .store
        .customer(&reader.project, &IdentityKey::parse(&id))
        .await?
        .ok_or(ApiError::UnknownCustomer(id))?;
    let config = &state.config;
    let sessions = session_numbers(
        customer.touches.iter().map(|touch| touch.at_ms),
        config.session_gap_ms,
    );
    let timeline: Vec<Value> = customer
        .touches
        .iter()
        .zip(&sessions)
        .map(|(touch, session)| {
            json!({
                "event_id": touch.event_id,
                "time": format_time(touch.at_ms),
                "touchpoint": touch.touchpoint,
                "channel": touch.channel,
                "direct": touch.direct,
                "session": session,
                "stage": config.stages.stage_of(&touch.touchpoint).map(|stage| config.stages.stage_name(stage)),
                "properties": touch.properties,
                "ip": touch.ip,
            })
        })
        .collect();
    Ok(Json(json!({
        "customer_id": customer.customer_id.0,
        "identities": customer.identities.iter().map(|key| key.0.as_str()).collect::<Vec<_>>(),
        "traits": customer.traits,
        "touchpoints": customer.touches.len(),
        "sessions": sessions.last().copied().unwrap_or(0),
        "first_seen": customer.touches.first().map(|touch| format_time(touch.at_ms)),
        "last_seen": customer.touches.last().map(|touch| format_time(touch.at_ms)),
        "timeline": timeline,
    }))
    .into_response())
}
