//! The worker's own HTTP listener, for Prometheus and orchestrators (the worker takes no
//! requests): `GET /metrics` ([`crate::metrics`]), `GET /healthz` (liveness: the process
//! answers) and `GET /readyz` (200 `ready`, or 503 with `store_unavailable` or
//! `bus_unavailable` while the last store write or bus call failed). This module is also the one
//! place where [`WorkerError`] becomes an HTTP reply.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use scribble_telemetry::MetricsRegistry;
use serde_json::json;
use tokio::net::TcpListener;

use crate::{WorkerError, WorkerMetrics};

#[derive(Clone)]
struct HttpState {
    registry: MetricsRegistry,
    metrics: Arc<WorkerMetrics>,
}

/// The worker's routes: every metric of `registry`, and the readiness `metrics` records.
pub fn router(registry: MetricsRegistry, metrics: Arc<WorkerMetrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<HttpState>| async move { state.registry.reply() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(HttpState { registry, metrics })
}

async fn readyz(State(state): State<HttpState>) -> Result<&'static str, WorkerError> {
    state.metrics.readiness().map(|()| "ready")
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "worker listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

impl WorkerError {
    /// The stable, machine-readable code of this error, as sent in the `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Bus(_) | Self::BusFailing => "bus_unavailable",
            Self::Store(_) | Self::StoreFailing => "store_unavailable",
            Self::Join(_) => "internal",
        }
    }
}

impl IntoResponse for WorkerError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::Join(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = json!({ "error": self.code(), "message": self.to_string() });
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use scribble_bus::ConsumerLag;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    async fn get(app: &Router, path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_follows_the_last_store_write_and_bus_call() {
        let registry = MetricsRegistry::new();
        let metrics = WorkerMetrics::register_kafka(&registry);
        let app = router(registry, metrics.clone());
        assert_eq!(get(&app, "/healthz").await, (StatusCode::OK, "ok".into()));
        assert_eq!(get(&app, "/readyz").await, (StatusCode::OK, "ready".into()));

        metrics.store_answered(false);
        let (status, body) = get(&app, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "store_unavailable");
        assert!(body["message"].as_str().unwrap().contains("retrying"));

        metrics.batch_stored(10, std::time::Duration::from_millis(3));
        metrics.bus_answered(false);
        let (status, body) = get(&app, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("bus_unavailable"), "{body}");

        metrics.bus_answered(true);
        assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
        assert_eq!(
            get(&app, "/healthz").await.0,
            StatusCode::OK,
            "alive throughout"
        );
    }

    #[tokio::test]
    async fn metrics_are_served_in_the_prometheus_text_format() {
        let registry = MetricsRegistry::new();
        let metrics = WorkerMetrics::register_kafka(&registry);
        metrics.batch_stored(120, std::time::Duration::from_millis(8));
        metrics.set_consumer_lag(ConsumerLag {
            partitions: 3,
            messages: 42,
        });
        let app = router(registry, metrics);
        let request = Request::get("/metrics").body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let samples = scribble_telemetry::Samples::parse(std::str::from_utf8(&body).unwrap());
        assert_eq!(
            samples.sum("scribble_worker_consumer_lag_messages", &[]),
            Some(42.0)
        );
        assert_eq!(
            samples.sum("scribble_worker_assigned_partitions", &[]),
            Some(3.0)
        );
        assert_eq!(
            samples.sum("scribble_worker_events_stored_total", &[]),
            Some(120.0)
        );
        assert_eq!(
            samples.sum("scribble_worker_batch_events_sum", &[]),
            Some(120.0)
        );
        assert_eq!(
            samples.sum("scribble_worker_insert_duration_seconds_count", &[]),
            Some(1.0)
        );
    }
}
