//! The query API's error type and its mapping to HTTP: status, stable machine-readable code, and
//! a sentence that says what to change.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use scribble_store::StoreError;
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
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return (status, [(axum::http::header::RETRY_AFTER, "1")], Json(body)).into_response();
        }
        (status, Json(body)).into_response()
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
    fn other_store_failures_are_unavailable() {
        let error = ApiError::from(StoreError::InvalidDatabaseName("1x".into()));
        assert!(matches!(error, ApiError::StoreUnavailable(_)), "{error:?}");
    }
}
