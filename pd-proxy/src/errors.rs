//! Failures of a proxied request, and the vLLM-style JSON error each one
//! is answered with: `{"object":"error","message":...,"type":...,"param":"","code":N}`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use llmd_runtime::ErrorType;

/// Why a request could not be proxied. Messages never contain request or
/// response content.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request body is not valid JSON.
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The request body is JSON but not an object.
    #[error("request body must be a JSON object")]
    NotAnObject,
    /// The request body exceeds the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The request body could not be read from the client.
    #[error("request body could not be read")]
    BodyRead,
    /// A request header the proxy needs is malformed.
    #[error("malformed {name} header: {reason}")]
    BadHeader {
        /// The header.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// SSRF protection refused the prefill target.
    #[error("prefill target not allowed by SSRF protection")]
    SsrfDenied,
    /// The prefiller could not be reached, after retries.
    #[error("prefill failed: prefiller unreachable after {attempts} attempt(s)")]
    PrefillUnreachable {
        /// Attempts made.
        attempts: u32,
    },
    /// Every prefill attempt timed out.
    #[error("prefill failed: timed out after {attempts} attempt(s)")]
    PrefillTimeout {
        /// Attempts made.
        attempts: u32,
    },
    /// The prefiller kept answering with a server error.
    #[error("prefill failed: prefiller answered {status} after {attempts} attempt(s)")]
    PrefillServerError {
        /// The last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// The prefiller's answer is not a JSON object.
    #[error("prefill failed: the prefiller's response is not a JSON object")]
    PrefillBadResponse,
    /// The decoder refused the connection (vLLM not up).
    #[error(
        "The decode node is not ready. Please check that the vLLM service is running and the port configuration is correct."
    )]
    DecoderUnavailable,
    /// The decoder failed otherwise.
    #[error("decode failed: the decoder could not be reached or broke the connection")]
    DecoderFailed,
    /// The data-parallel header names no rank of this proxy.
    #[error("x-data-parallel-host-port names no data-parallel rank of this proxy")]
    UnknownDataParallelRank,
}

impl ProxyError {
    /// The HTTP status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::InvalidJson(_)
            | ProxyError::NotAnObject
            | ProxyError::BodyRead
            | ProxyError::BadHeader { .. }
            | ProxyError::UnknownDataParallelRank => StatusCode::BAD_REQUEST,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::SsrfDenied => StatusCode::FORBIDDEN,
            ProxyError::PrefillTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::PrefillUnreachable { .. }
            | ProxyError::PrefillServerError { .. }
            | ProxyError::PrefillBadResponse
            | ProxyError::DecoderFailed => StatusCode::BAD_GATEWAY,
            ProxyError::DecoderUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn vllm_type(&self) -> &'static str {
        match self.status() {
            StatusCode::BAD_REQUEST => "BadRequestError",
            StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
            StatusCode::FORBIDDEN => "Forbidden",
            StatusCode::GATEWAY_TIMEOUT => "GatewayTimeout",
            StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
            _ => "BadGateway",
        }
    }
}

impl ErrorType for ProxyError {
    fn error_type(&self) -> &'static str {
        match self {
            ProxyError::InvalidJson(_) => "invalid_json",
            ProxyError::NotAnObject => "body_not_object",
            ProxyError::BodyTooLarge { .. } => "body_too_large",
            ProxyError::BodyRead => "body_read",
            ProxyError::BadHeader { .. } => "bad_header",
            ProxyError::SsrfDenied => "ssrf_protection_denied",
            ProxyError::PrefillUnreachable { .. } => "prefill_unreachable",
            ProxyError::PrefillTimeout { .. } => "prefill_timeout",
            ProxyError::PrefillServerError { .. } => "prefill_server_error",
            ProxyError::PrefillBadResponse => "prefill_bad_response",
            ProxyError::DecoderUnavailable => "decoder_unavailable",
            ProxyError::DecoderFailed => "decoder_failed",
            ProxyError::UnknownDataParallelRank => "unknown_data_parallel_rank",
        }
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        error_response(self.status(), self.vllm_type(), &self.to_string())
    }
}

/// A vLLM-style JSON error response.
pub fn error_response(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "object": "error",
        "message": message,
        "type": error_type,
        "param": "",
        "code": status.as_u16(),
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn errors_are_vllm_style_json() {
        let response = ProxyError::DecoderUnavailable.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["object"], "error");
        assert_eq!(v["type"], "ServiceUnavailable");
        assert_eq!(v["param"], "");
        assert_eq!(v["code"], 503);
        assert!(v["message"].as_str().unwrap().contains("decode node"));
    }

    #[test]
    fn statuses_follow_the_failure() {
        assert_eq!(
            ProxyError::BodyTooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(ProxyError::SsrfDenied.status(), StatusCode::FORBIDDEN);
        assert_eq!(ProxyError::DecoderFailed.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            ProxyError::PrefillTimeout { attempts: 1 }.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
    }
}
