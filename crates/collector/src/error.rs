//! The collector's one error type and the one place that turns it into an HTTP reply: a status
//! and a JSON body `{"error": "<stable code>", "message": "<what to change>", ...}`.

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use scribble_bus::BusError;
use scribble_domain::event::FieldError;
use scribble_telemetry::ErrorCode;
use serde_json::{json, Value};
use tracing::error;

use crate::ingest::Rejection;
use crate::rate_limit::RetryAfter;

/// Everything a collector request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("send a project write key as `Authorization: Bearer <key>` or `X-Write-Key: <key>` (`key=<key>` on tracking links)")]
    Unauthorized,
    #[error("this is a read key, which only opens reports; send one of the project's write keys")]
    WrongKeyKind,
    #[error("the request body is over {limit} bytes; send fewer events per request")]
    BodyTooLarge { limit: usize },
    #[error("the gzip body inflates to more than {limit} bytes; send fewer events per request")]
    InflatedTooLarge { limit: usize },
    #[error("{count} events in one request is over the limit of {limit}; split the batch")]
    TooManyEvents { count: usize, limit: usize },
    #[error("could not read the request body ({0}); send it again")]
    UnreadableBody(String),
    #[error("Content-Encoding {0:?} is not supported; send gzip or an uncompressed body")]
    UnsupportedEncoding(String),
    #[error("the body is not valid gzip ({0}); compress it with gzip or drop Content-Encoding")]
    InvalidGzip(std::io::Error),
    #[error("the body is not valid JSON ({0}); send one event object, an array of events or {{\"batch\": [...]}}")]
    InvalidJson(serde_json::Error),
    #[error("\"batch\" must be a JSON array of event objects")]
    InvalidBatch,
    #[error("the request holds no events; send at least one")]
    EmptyBatch,
    #[error("none of the {} events is valid; fix the fields listed in `rejected`", .0.len())]
    AllRejected(Vec<Rejection>),
    #[error("the event is not valid: {0}")]
    InvalidEvent(FieldError),
    #[error("{0}")]
    RedirectNotAllowed(String),
    #[error("the event queue cannot take events right now; retry after the Retry-After seconds")]
    Queue(#[from] BusError),
    #[error("the event bus cannot take events right now")]
    NotReady,
    #[error("this write key is over its project's rate limit; retry after the Retry-After seconds, or ask for a higher limit")]
    RateLimited(RetryAfter),
    #[error("the collector is handling {limit} requests, as many as it takes at once; retry after the Retry-After seconds")]
    Overloaded { limit: usize },
}

impl CollectorError {
    /// The stable, machine-readable code of this error, as sent in the `error` field.
    pub fn code(&self) -> &'static str {
        self.reply().1
    }

    /// Status, code and the extra body fields of each variant.
    fn reply(&self) -> (StatusCode, &'static str, Option<Value>) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            Self::WrongKeyKind => (StatusCode::FORBIDDEN, "wrong_key_kind", None),
            Self::BodyTooLarge { limit } | Self::InflatedTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                Some(json!({ "limit_bytes": limit })),
            ),
            Self::TooManyEvents { count, limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_events",
                Some(json!({ "count": count, "limit": limit })),
            ),
            Self::UnreadableBody(_) => (StatusCode::BAD_REQUEST, "unreadable_body", None),
            Self::UnsupportedEncoding(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                None,
            ),
            Self::InvalidGzip(_) => (StatusCode::BAD_REQUEST, "invalid_gzip", None),
            Self::InvalidJson(source) => (
                StatusCode::BAD_REQUEST,
                "invalid_json",
                Some(json!({ "line": source.line(), "column": source.column() })),
            ),
            Self::InvalidBatch => (StatusCode::BAD_REQUEST, "invalid_batch", None),
            Self::EmptyBatch => (StatusCode::BAD_REQUEST, "empty_batch", None),
            Self::AllRejected(rejected) => (
                StatusCode::BAD_REQUEST,
                "all_events_rejected",
                Some(json!({ "accepted": 0, "rejected": rejected })),
            ),
            Self::InvalidEvent(problem) => (
                StatusCode::BAD_REQUEST,
                "invalid_event",
                Some(json!({ "field": problem.field, "reason": problem.reason })),
            ),
            Self::RedirectNotAllowed(_) => (StatusCode::BAD_REQUEST, "redirect_not_allowed", None),
            Self::Queue(BusError::Busy) => (StatusCode::SERVICE_UNAVAILABLE, "bus_busy", None),
            Self::Queue(BusError::Unavailable(_)) | Self::NotReady => {
                (StatusCode::SERVICE_UNAVAILABLE, "bus_unavailable", None)
            }
            Self::Queue(_) => (StatusCode::SERVICE_UNAVAILABLE, "queue_unavailable", None),
            Self::Overloaded { .. } => (StatusCode::SERVICE_UNAVAILABLE, "overloaded", None),
            Self::RateLimited(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                Some(json!({ "retry_after_seconds": wait.seconds() })),
            ),
        }
    }

    /// Seconds a sender should wait before retrying a 503: a full in-flight buffer (of the bus,
    /// or of the collector's own requests) drains in about a second; an unreachable broker takes
    /// longer to come back.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Queue(BusError::Unavailable(_)) | Self::NotReady => Some(5),
            Self::RateLimited(wait) => Some(wait.seconds()),
            _ if self.reply().0 == StatusCode::SERVICE_UNAVAILABLE => Some(1),
            _ => None,
        }
    }
}

impl IntoResponse for CollectorError {
    fn into_response(self) -> Response {
        let (status, code, extra) = self.reply();
        if let Self::Queue(source) = &self {
            error!(error = %source, "event queue append failed");
        }
        let mut body = json!({ "error": code, "message": self.to_string() });
        if let (Some(Value::Object(fields)), Some(object)) = (extra, body.as_object_mut()) {
            object.extend(fields);
        }
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(code));
        // Queue failures are transient (a commit that failed, a writer restarting, a broker
        // away) and rate limits refill: retrying the same request later is the right thing.
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn queue_failure_is_retryable_503() {
        let response = CollectorError::Queue(BusError::Closed).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let body = body_of(response).await;
        assert_eq!(body["error"], "queue_unavailable");
        assert!(body["message"].as_str().unwrap().contains("retry"));
    }

    #[tokio::test]
    async fn busy_bus_asks_for_a_retry_in_a_second() {
        let response = CollectorError::Queue(BusError::Busy).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        assert_eq!(body_of(response).await["error"], "bus_busy");
    }

    #[tokio::test]
    async fn overloaded_collector_asks_for_a_retry_in_a_second() {
        let response = CollectorError::Overloaded { limit: 1024 }.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let body = body_of(response).await;
        assert_eq!(body["error"], "overloaded");
        assert!(body["message"].as_str().unwrap().contains("1024 requests"));
    }

    #[tokio::test]
    async fn unavailable_bus_asks_for_a_retry_in_five_seconds() {
        for error in [
            CollectorError::Queue(BusError::Unavailable("timed out".into())),
            CollectorError::NotReady,
        ] {
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[RETRY_AFTER], "5");
            assert_eq!(body_of(response).await["error"], "bus_unavailable");
        }
    }

    #[tokio::test]
    async fn invalid_json_carries_line_and_column() {
        let source = serde_json::from_str::<Value>("{\n  \"a\": }").unwrap_err();
        let response = CollectorError::InvalidJson(source).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = body_of(response).await;
        assert_eq!(body["error"], "invalid_json");
        assert_eq!(body["line"], 2);
        assert_eq!(body["column"], 8);
    }

    #[tokio::test]
    async fn all_rejected_lists_each_rejection() {
        let rejected = vec![Rejection {
            index: 0,
            field: "touchpoint".into(),
            reason: "required".into(),
        }];
        let response = CollectorError::AllRejected(rejected).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = body_of(response).await;
        assert_eq!(body["accepted"], 0);
        assert_eq!(body["rejected"][0]["field"], "touchpoint");
    }

    #[tokio::test]
    async fn a_key_over_its_rate_is_429_with_the_wait_in_retry_after_and_body() {
        let response =
            CollectorError::RateLimited(RetryAfter(std::time::Duration::from_millis(2500)))
                .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "3");
        let body = body_of(response).await;
        assert_eq!(body["error"], "rate_limited");
        assert_eq!(body["retry_after_seconds"], 3);
    }

    #[tokio::test]
    async fn client_mistakes_are_4xx_with_their_code_and_fields_and_no_retry_after() {
        let cases = [
            (
                CollectorError::Unauthorized,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                json!({}),
            ),
            (
                CollectorError::WrongKeyKind,
                StatusCode::FORBIDDEN,
                "wrong_key_kind",
                json!({}),
            ),
            (
                CollectorError::BodyTooLarge { limit: 1024 * 1024 },
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                json!({"limit_bytes": 1024 * 1024}),
            ),
            (
                CollectorError::InflatedTooLarge {
                    limit: 5 * 1024 * 1024,
                },
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                json!({"limit_bytes": 5 * 1024 * 1024}),
            ),
            (
                CollectorError::TooManyEvents {
                    count: 10_001,
                    limit: 10_000,
                },
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_events",
                json!({"count": 10_001, "limit": 10_000}),
            ),
            (
                CollectorError::UnreadableBody("connection reset".into()),
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                json!({}),
            ),
            (
                CollectorError::UnsupportedEncoding("br".into()),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                json!({}),
            ),
            (
                CollectorError::InvalidGzip(std::io::Error::other("bad header")),
                StatusCode::BAD_REQUEST,
                "invalid_gzip",
                json!({}),
            ),
            (
                CollectorError::InvalidBatch,
                StatusCode::BAD_REQUEST,
                "invalid_batch",
                json!({}),
            ),
            (
                CollectorError::EmptyBatch,
                StatusCode::BAD_REQUEST,
                "empty_batch",
                json!({}),
            ),
            (
                CollectorError::InvalidEvent(FieldError::new("anonymous_id", "required")),
                StatusCode::BAD_REQUEST,
                "invalid_event",
                json!({"field": "anonymous_id", "reason": "required"}),
            ),
            (
                CollectorError::RedirectNotAllowed("add url=<address>".into()),
                StatusCode::BAD_REQUEST,
                "redirect_not_allowed",
                json!({}),
            ),
        ];
        for (error, status, code, fields) in cases {
            let message = error.to_string();
            assert_eq!(error.code(), code);
            let response = error.into_response();
            assert_eq!(response.status(), status, "{code}");
            assert!(response.headers().get(RETRY_AFTER).is_none(), "{code}");
            let body = body_of(response).await;
            assert_eq!(body["error"], code);
            assert_eq!(body["message"], message.as_str(), "{code}");
            for (name, value) in fields.as_object().unwrap() {
                assert_eq!(&body[name], value, "{code}: {name}");
            }
        }
    }
}
