//! The query API's error type and its mapping to HTTP: status, stable machine-readable code, and
//! a sentence that says what to change.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use scribble_domain::attribution::AttributionError;
use scribble_domain::funnel::{FunnelError, MAX_FUNNEL_STEPS};
use scribble_domain::leads::LeadError;
use scribble_store::StoreError;
use scribble_telemetry::ErrorCode;
use serde_json::json;

/// Everything a query can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "send a read key as `Authorization: Bearer <key>`, `X-Read-Key: <key>` or `?key=<key>`"
    )]
    MissingKey,
    #[error("this read key is not known; check the key or ask for a new one")]
    UnknownKey,
    #[error("a write key cannot read reports; use the project's read key")]
    WriteKeyOnReadApi,
    #[error("{name}: {reason}")]
    InvalidParameter { name: String, reason: String },
    #[error(
        "no customer has the identity {0:?}; identities look like u:<user id> or a:<anonymous id>"
    )]
    UnknownCustomer(String),
    #[error("the store cannot be read right now ({0}); try again shortly")]
    StoreUnavailable(String),
    #[error("the report could not be computed: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidParameter {
            name: name.into(),
            reason: reason.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::MissingKey | Self::UnknownKey => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::WriteKeyOnReadApi => (StatusCode::FORBIDDEN, "wrong_key_kind"),
            Self::InvalidParameter { .. } => (StatusCode::BAD_REQUEST, "invalid_parameter"),
            Self::UnknownCustomer(_) => (StatusCode::NOT_FOUND, "unknown_customer"),
            Self::StoreUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// Funnel options the domain refuses, named by the query parameter to change.
impl From<FunnelError> for ApiError {
    fn from(error: FunnelError) -> Self {
        match error {
            FunnelError::StepCount(count) => Self::invalid(
                "steps",
                format!("a funnel has 1 to {MAX_FUNNEL_STEPS} steps, not {count}"),
            ),
            FunnelError::EmptyTouchpoint(index) => {
                Self::invalid("steps", format!("step {} names no touchpoint", index + 1))
            }
            FunnelError::RepeatedStep { index, first } => Self::invalid(
                "steps",
                format!(
                    "step {} repeats step {}; an any-order funnel counts each step once",
                    index + 1,
                    first + 1
                ),
            ),
            FunnelError::NegativeWindow(_) => Self::invalid("window", "must be 0 or more"),
            FunnelError::StepWindowCount { given, steps } => Self::invalid(
                "step_windows",
                format!(
                    "give one entry per step ({steps}), the first empty, e.g. ,7d,30d; got {given}"
                ),
            ),
            FunnelError::FirstStepWindow => Self::invalid(
                "step_windows",
                "the first entry must be empty: the first step has no step before it",
            ),
            FunnelError::NegativeStepWindow { index, .. } => Self::invalid(
                "step_windows",
                format!("entry {} must be 0 or more", index + 1),
            ),
            FunnelError::StepWindowsInAnyOrder => Self::invalid(
                "step_windows",
                "an order=any funnel has no step before another; leave step_windows out and use \
                 window",
            ),
            FunnelError::NoNextSteps => Self::invalid("next_steps", "must be at least 1"),
        }
    }
}

/// Attribution options the domain refuses, named by the query parameter to change.
impl From<AttributionError> for ApiError {
    fn from(error: AttributionError) -> Self {
        match error {
            AttributionError::HalfLifeDays(days) => Self::invalid(
                "half_life_days",
                format!("must be a number of days above 0, not {days}"),
            ),
            AttributionError::PositionWeights(first, middle, last) => Self::invalid(
                "position_weights",
                format!(
                    "first, middle and last must each be at least 0 and sum to 1, e.g. \
                     0.4,0.2,0.4; got {first},{middle},{last}"
                ),
            ),
        }
    }
}

/// Lead options the domain refuses, named by the query parameter to change.
impl From<LeadError> for ApiError {
    fn from(error: LeadError) -> Self {
        match error {
            LeadError::NoLeadTouchpoints => Self::invalid(
                "leads",
                "list at least one touchpoint that makes a customer a lead",
            ),
            LeadError::GoalIsLead(goal) => Self::invalid(
                "goal",
                format!("{goal} is also in leads; a lead cannot be its own conversion"),
            ),
            LeadError::WithinDays(days) => Self::invalid(
                "within_days",
                format!("must be a number of days above 0, not {days}"),
            ),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            // The sender's to fix, not the store's: the same request would fail on every retry.
            StoreError::ReportTooWide => Self::invalid("from", error.to_string()),
            _ => Self::StoreUnavailable(error.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut body = json!({"error": code, "message": self.to_string()});
        if let Self::InvalidParameter { name, .. } = &self {
            body["parameter"] = json!(name);
        }
        let mut response = if status == StatusCode::SERVICE_UNAVAILABLE {
            (status, [(axum::http::header::RETRY_AFTER, "1")], Json(body)).into_response()
        } else {
            (status, Json(body)).into_response()
        };
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_store_is_a_retryable_503() {
        let response = ApiError::StoreUnavailable("connection refused".into()).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "1");
    }

    #[test]
    fn client_mistakes_are_4xx_without_retry_after() {
        let response = ApiError::invalid("steps", "must be a whole number").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .is_none());
        assert_eq!(
            ApiError::WriteKeyOnReadApi.into_response().status(),
            StatusCode::FORBIDDEN
        );
    }

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn every_error_has_its_status_code_and_retry_advice() {
        let cases = [
            (
                ApiError::MissingKey,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (
                ApiError::UnknownKey,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (
                ApiError::WriteKeyOnReadApi,
                StatusCode::FORBIDDEN,
                "wrong_key_kind",
            ),
            (
                ApiError::invalid("steps", "must be a whole number"),
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
            ),
            (
                ApiError::UnknownCustomer("u:nobody".into()),
                StatusCode::NOT_FOUND,
                "unknown_customer",
            ),
            (
                ApiError::StoreUnavailable("connection refused".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
            ),
            (
                ApiError::Internal("task panicked".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
        ];
        for (error, status, code) in cases {
            let message = error.to_string();
            let response = error.into_response();
            assert_eq!(response.status(), status, "{code}");
            let retry_after = response.headers().get(axum::http::header::RETRY_AFTER);
            assert_eq!(
                retry_after.is_some(),
                status == StatusCode::SERVICE_UNAVAILABLE,
                "{code}"
            );
            let body = body_of(response).await;
            assert_eq!(body["error"], code);
            assert_eq!(body["message"], message.as_str());
        }
    }

    #[tokio::test]
    async fn a_report_too_wide_for_the_store_is_the_senders_to_narrow_not_to_retry() {
        let error = ApiError::from(StoreError::ReportTooWide);
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .is_none());
        let body = body_of(response).await;
        assert_eq!(body["error"], "invalid_parameter");
        assert_eq!(body["parameter"], "from");
        assert!(body["message"].as_str().unwrap().contains("from and to"));
    }

    #[test]
    fn refused_report_options_name_the_query_parameter_to_change() {
        let cases: Vec<(ApiError, &str)> = vec![
            (FunnelError::StepCount(21).into(), "steps"),
            (FunnelError::EmptyTouchpoint(1).into(), "steps"),
            (
                FunnelError::RepeatedStep { index: 2, first: 0 }.into(),
                "steps",
            ),
            (FunnelError::NegativeWindow(-1).into(), "window"),
            (
                FunnelError::StepWindowCount { given: 1, steps: 3 }.into(),
                "step_windows",
            ),
            (FunnelError::FirstStepWindow.into(), "step_windows"),
            (
                FunnelError::NegativeStepWindow {
                    index: 1,
                    value: -5,
                }
                .into(),
                "step_windows",
            ),
            (FunnelError::StepWindowsInAnyOrder.into(), "step_windows"),
            (FunnelError::NoNextSteps.into(), "next_steps"),
            (AttributionError::HalfLifeDays(0.0).into(), "half_life_days"),
            (
                AttributionError::PositionWeights(1.0, 1.0, 1.0).into(),
                "position_weights",
            ),
            (LeadError::NoLeadTouchpoints.into(), "leads"),
            (LeadError::GoalIsLead("form_submit".into()).into(), "goal"),
            (LeadError::WithinDays(-1.0).into(), "within_days"),
        ];
        for (error, parameter) in cases {
            let message = error.to_string();
            match error {
                ApiError::InvalidParameter { name, .. } => assert_eq!(name, parameter, "{message}"),
                other => panic!("{other:?} is not an invalid parameter"),
            }
            assert!(message.starts_with(&format!("{parameter}: ")), "{message}");
        }
    }

    #[test]
    fn other_store_failures_are_unavailable() {
        let error = ApiError::from(StoreError::InvalidDatabaseName("1x".into()));
        assert!(matches!(error, ApiError::StoreUnavailable(_)), "{error:?}");
    }
}
