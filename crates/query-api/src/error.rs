//! The query API's error type and its mapping to HTTP: status, stable machine-readable code, and
//! a sentence that says what to change.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
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

impl From<scribble_store::StoreError> for ApiError {
    fn from(error: scribble_store::StoreError) -> Self {
        Self::StoreUnavailable(error.to_string())
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
}
