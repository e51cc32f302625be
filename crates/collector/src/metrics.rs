//! The collector's metrics, all defined here:
//!
//! - `scribble_collector_events_accepted_total{project}`: events durably handed to the bus;
//! - `scribble_collector_events_rejected_total{project,reason}`: events not queued, by reason:
//!   `invalid_event` for each event that failed validation (those named in `rejected`, every
//!   event of an `all_events_rejected` reply, a tracking link that describes no valid event),
//!   or the bus's code (`bus_unavailable`, `bus_busy`, `queue_unavailable`) for valid events the
//!   bus did not take;
//! - `scribble_collector_http_requests_total{route,status}`,
//!   `scribble_collector_http_request_duration_seconds{route}` and
//!   `scribble_collector_http_errors_total{route,code}`: every request, and every error reply
//!   by its code (`unauthorized`, `payload_too_large`, `invalid_json`, `rate_limited`,
//!   `bus_unavailable`, ...: the codes of [`CollectorError`](crate::CollectorError)). An email
//!   pixel or click whose event was not recorded counts under its code too, although the
//!   recipient still gets the pixel or the redirect;
//! - with Kafka only, `scribble_collector_kafka_in_flight_messages` and
//!   `scribble_collector_kafka_in_flight_bytes`: what the producer holds that Kafka has not
//!   acknowledged yet, read at each scrape. (The embedded queue answers after its own commit;
//!   its depth is the worker's `scribble_worker_queue_backlog_events`.)

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use scribble_bus::EventSink;
use scribble_telemetry::{register_computed_gauge, HttpMetrics, MetricsRegistry};

/// The `reason` of events that failed validation: the code of `CollectorError::InvalidEvent`.
pub(crate) const INVALID_EVENT: &str = "invalid_event";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectLabels {
    project: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectedLabels {
    project: String,
    reason: &'static str,
}

/// The collector's own metrics; the HTTP ones are recorded by middleware.
#[derive(Debug)]
pub(crate) struct CollectorMetrics {
    pub(crate) http: Arc<HttpMetrics>,
    accepted: Family<ProjectLabels, Counter>,
    rejected: Family<RejectedLabels, Counter>,
}

impl CollectorMetrics {
    /// Registers the collector's metrics in `registry`, the in-flight gauges reading `sink`.
    pub(crate) fn register(registry: &MetricsRegistry, sink: &Arc<dyn EventSink>) -> Arc<Self> {
        registry.register(|registry| {
            let metrics = Self {
                http: HttpMetrics::register(registry, "collector"),
                accepted: Family::default(),
                rejected: Family::default(),
            };
            registry.register(
                "scribble_collector_events_accepted",
                "Events durably handed to the bus, by project",
                metrics.accepted.clone(),
            );
            registry.register(
                "scribble_collector_events_rejected",
                "Events not queued, by project and reason (invalid_event, or the bus's error code)",
                metrics.rejected.clone(),
            );
            let messages_of = sink.clone();
            register_computed_gauge(
                registry,
                "scribble_collector_kafka_in_flight_messages",
                "Messages and requests the Kafka producer holds unacknowledged",
                move || {
                    messages_of
                        .in_flight()
                        .map(|held| saturating_i64(held.messages))
                },
            );
            let bytes_of = sink.clone();
            register_computed_gauge(
                registry,
                "scribble_collector_kafka_in_flight_bytes",
                "Event payload bytes waiting for Kafka's acknowledgement",
                move || bytes_of.in_flight().map(|held| saturating_i64(held.bytes)),
            );
            Arc::new(metrics)
        })
    }

    /// `events` of `project` were handed to the bus.
    pub(crate) fn accepted(&self, project: &str, events: usize) {
        self.accepted
            .get_or_create(&ProjectLabels {
                project: project.to_owned(),
            })
            .inc_by(events as u64);
    }

    /// `events` of `project` were not queued because of `reason`.
    pub(crate) fn rejected(&self, project: &str, reason: &'static str, events: usize) {
        if events == 0 {
            return;
        }
        self.rejected
            .get_or_create(&RejectedLabels {
                project: project.to_owned(),
                reason,
            })
            .inc_by(events as u64);
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use scribble_domain::event::FieldError;

    use super::*;
    use crate::CollectorError;

    #[test]
    fn invalid_event_is_the_code_of_a_validation_failure() {
        let error = CollectorError::InvalidEvent(FieldError::new("touchpoint", "required"));
        assert_eq!(error.code(), INVALID_EVENT);
    }
}
