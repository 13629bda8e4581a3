//! The prefill leg: one request to the prefiller, retried on connection
//! failures, timeouts and 5xx, in its own `llm_d.pd_proxy.prefill` span.

use crate::config::{KvConnector, RetryPolicy};
use crate::errors::ProxyError;
use crate::request::Api;
use crate::target::PrefillTarget;
use crate::upstream::{self, Failure, Origin, Upstream};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use llmd_runtime::{ErrorType, Identifier, event, record, traced_span};
use std::time::{Duration, Instant};

/// Largest prefill response read, in bytes (a prefill generates one token).
const MAX_PREFILL_RESPONSE: usize = 16 * 1024 * 1024;

/// One prefill to run.
#[derive(Debug)]
pub struct PrefillCall {
    /// How prefillers are called.
    pub upstream: Upstream,
    /// The prefiller.
    pub target: PrefillTarget,
    /// The API (its path is the prefill path).
    pub api: Api,
    /// Headers to send (trace context is added per attempt).
    pub headers: HeaderMap,
    /// The prefill body.
    pub body: Bytes,
    /// The request id shared with the decode leg.
    pub request_id: Identifier,
    /// The connector, for the span.
    pub connector: KvConnector,
    /// Whether the prefill runs asynchronously (sglang).
    pub asynchronous: bool,
    /// Retry policy.
    pub retry: RetryPolicy,
}

/// When the prefill ran, for the roll-up attributes.
#[derive(Clone, Copy, Debug)]
pub struct PrefillTiming {
    /// When the first attempt started.
    pub start: Instant,
    /// When the answer was in.
    pub end: Instant,
}

/// A successful prefill.
#[derive(Debug)]
pub struct Prefilled {
    /// The prefiller's response body.
    pub body: Bytes,
    /// When it ran.
    pub timing: PrefillTiming,
}

/// Why a prefill did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum PrefillFailure {
    /// The prefiller refused the request (4xx): returned to the client as is.
    #[error("prefiller answered {status}")]
    Rejected {
        /// Its status.
        status: StatusCode,
        /// Its headers.
        headers: HeaderMap,
        /// Its body.
        body: Bytes,
    },
    /// The prefill could not be done.
    #[error(transparent)]
    Failed(#[from] ProxyError),
}

impl ErrorType for PrefillFailure {
    fn error_type(&self) -> &'static str {
        match self {
            PrefillFailure::Rejected { .. } => "prefill_rejected",
            PrefillFailure::Failed(error) => error.error_type(),
        }
    }
}

impl IntoResponse for PrefillFailure {
    fn into_response(self) -> Response {
        match self {
            PrefillFailure::Rejected {
                status,
                mut headers,
                body,
            } => {
                upstream::strip_response_headers(&mut headers);
                (status, headers, body).into_response()
            }
            PrefillFailure::Failed(error) => error.into_response(),
        }
    }
}

/// The outcome of one attempt that did not succeed.
enum AttemptError {
    Failure(Failure),
    ServerError(StatusCode),
}

/// Runs the prefill, with retries.
#[traced_span(
    "llm_d.pd_proxy.prefill",
    attrs(
        llm_d.pd_proxy.request_id = call.request_id.clone(),
        llm_d.pd_proxy.prefill_target = call.target.identifier(),
        llm_d.pd_proxy.connector = call.connector,
        llm_d.pd_proxy.prefill.async = call.asynchronous,
    ),
    err
)]
pub async fn prefill(call: PrefillCall) -> Result<Prefilled, PrefillFailure> {
    let start = Instant::now();
    let origin = call
        .upstream
        .origin(call.target.authority())
        .map_err(|failure| give_up(AttemptError::Failure(failure), 0))?;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome = attempt(&call, &origin).await;
        let duration_ms = start.elapsed().as_secs_f64() * 1000.0;
        let error = match outcome {
            Ok((status, headers, body)) => {
                record!(
                    llm_d.pd_proxy.prefill.status_code = status.as_u16(),
                    llm_d.pd_proxy.prefill.duration_ms = duration_ms,
                );
                if status.is_success() {
                    let timing = PrefillTiming {
                        start,
                        end: Instant::now(),
                    };
                    return Ok(Prefilled { body, timing });
                }
                if !status.is_server_error() {
                    return Err(PrefillFailure::Rejected {
                        status,
                        headers,
                        body,
                    });
                }
                AttemptError::ServerError(status)
            }
            Err(failure) => AttemptError::Failure(failure),
        };
        if attempts > call.retry.max_retries {
            record!(llm_d.pd_proxy.prefill.duration_ms = duration_ms);
            return Err(PrefillFailure::Failed(give_up(error, attempts)));
        }
        event!("llm_d.pd_proxy.prefill.retry", error.type = retry_reason(&error));
        tokio::time::sleep(backoff(call.retry.backoff, attempts)).await;
    }
}

async fn attempt(
    call: &PrefillCall,
    origin: &Origin,
) -> Result<(StatusCode, HeaderMap, Bytes), Failure> {
    let send = async {
        let request = upstream::outbound_request(
            Method::POST,
            Uri::from_static(call.api.path()),
            &call.headers,
            call.body.clone(),
        );
        let (head, response) = origin.send(request).await?.into_parts();
        let body = Limited::new(response, MAX_PREFILL_RESPONSE)
            .collect()
            .await
            .map_err(|_| Failure::Broken)?;
        Ok((head.status, head.headers, body.to_bytes()))
    };
    match tokio::time::timeout(call.retry.attempt_timeout, send).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure::Timeout),
    }
}

fn backoff(base: Duration, attempts: u32) -> Duration {
    base.saturating_mul(1 << (attempts - 1).min(10))
}

fn retry_reason(error: &AttemptError) -> &'static str {
    match error {
        AttemptError::ServerError(_) => "server_error",
        AttemptError::Failure(Failure::Timeout) => "timeout",
        AttemptError::Failure(Failure::Refused | Failure::Connect) => "connect",
        AttemptError::Failure(Failure::Broken | Failure::RequestBody) => "broken",
    }
}

fn give_up(error: AttemptError, attempts: u32) -> ProxyError {
    match error {
        AttemptError::ServerError(status) => ProxyError::PrefillServerError {
            status: status.as_u16(),
            attempts,
        },
        AttemptError::Failure(Failure::Timeout) => ProxyError::PrefillTimeout { attempts },
        AttemptError::Failure(_) => ProxyError::PrefillUnreachable { attempts },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_saturates() {
        let base = Duration::from_millis(10);
        assert_eq!(backoff(base, 1), Duration::from_millis(10));
        assert_eq!(backoff(base, 3), Duration::from_millis(40));
        assert_eq!(backoff(base, 40), Duration::from_millis(10 * 1024));
    }
}
