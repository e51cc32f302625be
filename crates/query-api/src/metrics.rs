//! The query API's metrics, all defined here: the report latency per route and the errors by
//! code, through the HTTP metrics every Scribble service shares:
//!
//! - `scribble_api_http_requests_total{route,status}`;
//! - `scribble_api_http_request_duration_seconds{route}`: time to answer, per route pattern
//!   (`/v1/funnel`, `/v1/customers/{id}/journey`, ...), which for reports is the report latency;
//! - `scribble_api_http_errors_total{route,code}`: error replies by their code
//!   (`invalid_parameter`, `unauthorized`, `wrong_key_kind`, `unknown_customer`,
//!   `store_unavailable`, `internal`), as [`ApiError`](crate::error::ApiError) sends them.

use std::sync::Arc;

use scribble_telemetry::{HttpMetrics, MetricsRegistry};

/// Registers the query API's metrics in `registry`.
pub(crate) fn register(registry: &MetricsRegistry) -> Arc<HttpMetrics> {
    registry.register(|registry| HttpMetrics::register(registry, "api"))
}
