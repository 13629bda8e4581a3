//! Errors the gateway answers with, as vLLM-style JSON:
//! `{"object":"error","message":...,"type":...,"param":"","code":N}`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

/// A failed request, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not a JSON object or lacks what the route needs.
    #[error("{0}")]
    BadRequest(String),
    /// No endpoint of the pool serves the model.
    #[error("The model `{0}` does not exist.")]
    UnknownModel(String),
    /// Endpoints serve the model but none is ready.
    #[error("no ready endpoint serves model `{0}`")]
    NoReadyEndpoint(String),
    /// The chosen endpoint could not be reached or failed mid-way.
    #[error("upstream endpoint failed: {0}")]
    Upstream(&'static str),
    /// The body exceeds the configured limit.
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(usize),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnknownModel(_) => StatusCode::NOT_FOUND,
            ApiError::NoReadyEndpoint(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) | ApiError::TooLarge(_) => "BadRequestError",
            ApiError::UnknownModel(_) => "NotFoundError",
            ApiError::NoReadyEndpoint(_) => "ServiceUnavailableError",
            ApiError::Upstream(_) => "BadGatewayError",
        }
    }
}

impl llmd_runtime::ErrorType for ApiError {
    fn error_type(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::UnknownModel(_) => "unknown_model",
            ApiError::NoReadyEndpoint(_) => "no_ready_endpoint",
            ApiError::Upstream(_) => "upstream",
            ApiError::TooLarge(_) => "body_too_large",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({
            "object": "error",
            "message": self.to_string(),
            "type": self.type_name(),
            "param": "",
            "code": status.as_u16(),
        });
        (status, Json(body)).into_response()
    }
}
