//! One error type for the whole connector, classified by meaning, and its single mapping to HTTP.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, by meaning. Messages of client errors are written for the client;
/// server-side errors keep their detail for the logs and show the client a generic text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or names something impossible.
    #[error("{0}")]
    BadRequest(String),
    /// No usable identity came with the request.
    #[error("authentication required")]
    Unauthenticated,
    /// A token was present but is forged, expired, mis-signed or for something else.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The caller is known but may not do this (also cross-site requests).
    #[error("{0}")]
    Forbidden(String),
    /// Missing, or not visible to the caller: the two are deliberately indistinguishable.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A conditional write lost a race or a precondition does not hold.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A body or document is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// The document format is not one Document Server can open.
    #[error("{0}")]
    UnsupportedFormat(String),
    /// Stored data failed verification beyond what redundancy can repair.
    #[error("stored data failed verification: {0}")]
    Integrity(String),
    /// A backend (provider, catalog, key service, Document Server) failed or timed out.
    #[error("{backend} unavailable: {detail}")]
    Unavailable { backend: String, detail: String },
    /// Configuration is missing or invalid; names the variable.
    #[error("configuration: {0}")]
    Config(String),
    /// A bug or an unexpected state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn unavailable(backend: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Error::Unavailable {
            backend: backend.into(),
            detail: detail.to_string(),
        }
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Error::Internal(detail.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthenticated | Error::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedFormat(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Integrity(_) | Error::Config(_) | Error::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Stable machine-readable code for the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::Unauthenticated => "unauthenticated",
            Error::InvalidToken(_) => "invalid_token",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::Conflict(_) => "conflict",
            Error::TooLarge(_) => "too_large",
            Error::UnsupportedFormat(_) => "unsupported_format",
            Error::Integrity(_) => "integrity",
            Error::Unavailable { .. } => "unavailable",
            Error::Config(_) => "configuration",
            Error::Internal(_) => "internal",
        }
    }

    /// The text a client may see: never backend detail, never secrets.
    pub fn client_message(&self) -> String {
        match self {
            Error::Unavailable { backend, .. } => format!("{backend} is unavailable; try again"),
            Error::Integrity(_) | Error::Config(_) | Error::Internal(_) => {
                "internal error".to_string()
            }
            // Token failures say which rule failed, never the token or the secret.
            other => other.to_string(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request refused");
        }
        let body = json!({ "error": self.code(), "message": self.client_message() });
        (status, axum::Json(body)).into_response()
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::internal(format_args!("io: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::internal(format_args!("json: {e}"))
    }
}
