//! The HTTP gateway: OpenAI routes in, the scheduler picks an endpoint, the
//! request is forwarded to it and its answer streamed back.

pub mod errors;
pub mod forward;
pub mod metrics;
pub mod request;

use crate::plugins::SchedulingRequest;
use crate::pool::Pool;
use crate::scheduler::Scheduler;
use crate::tokenize::Tokenizers;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use errors::ApiError;
use forward::{REQUEST_ID_HEADER, Upstream};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use llmd_runtime::http::{OriginPools, ServerTraceLayer};
use llmd_runtime::record;
use llmd_runtime::span::SpanMeta;
use metrics::GatewayMetrics;
use opentelemetry::trace::SpanKind;
use request::Route;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Default largest request body accepted, in bytes.
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Longest `x-request-id` taken from a client; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Gateway {
    /// The endpoints.
    pub pool: Arc<Pool>,
    /// The configured scheduler.
    pub scheduler: Arc<Scheduler>,
    /// Prompt tokenization for the prefix scorer and the decider.
    pub tokenizers: Arc<Tokenizers>,
    /// The client used for upstream requests.
    pub client: OriginPools,
    /// The gateway's own metrics.
    pub metrics: GatewayMetrics,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
}

/// The SERVER span of every inference request, with room for the
/// operation, model and request id the handler records on it.
pub static GATEWAY_REQUEST: SpanMeta =
    SpanMeta::new("gateway.request", SpanKind::Server).with_later_attributes(3);

/// The gateway's routes. Inference routes are traced with a
/// `gateway.request` SERVER span continuing the caller's `traceparent`;
/// `/v1/models`, `/health` and `/metrics` are not traced.
pub fn router(gateway: Arc<Gateway>, local_addr: SocketAddr) -> Router {
    let inference = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .layer(ServerTraceLayer::new(&GATEWAY_REQUEST).local_addr(local_addr));
    Router::new()
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(prometheus))
        .merge(inference)
        .with_state(gateway)
}

async fn chat_completions(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    gw.handle(Route::ChatCompletions, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn completions(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    gw.handle(Route::Completions, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn models(State(gw): State<Arc<Gateway>>) -> Response {
    let snapshot = gw.pool.snapshot();
    let data: Vec<serde_json::Value> = snapshot
        .models()
        .into_iter()
        .map(|m| serde_json::json!({ "id": m, "object": "model", "created": 0, "owned_by": "llm-d" }))
        .collect();
    axum::Json(serde_json::json!({ "object": "list", "data": data })).into_response()
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn prometheus(State(gw): State<Arc<Gateway>>) -> Response {
    let text = gw.metrics.render(&gw.pool.snapshot());
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

impl Gateway {
    async fn handle(
        &self,
        route: Route,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response, ApiError> {
        let body = self.read_body(body).await?;
        let parsed = request::parse(route, &body)?;
        let request_id = request_id(&headers);
        let mut scheduling = SchedulingRequest::new(&parsed.model, &request_id)
            .with_cache_salt(parsed.cache_salt.as_deref());
        record!(
            gen_ai.operation.name = route.operation(),
            gen_ai.request.model = scheduling.model_attr.clone(),
            gen_ai.request.id = scheduling.request_id.clone(),
        );
        let snapshot = self.pool.snapshot();
        if !snapshot.serves(&parsed.model) {
            return Err(ApiError::UnknownModel(parsed.model));
        }
        let candidates = snapshot.ready_for(&parsed.model);
        let Some(first) = candidates.first() else {
            return Err(ApiError::NoReadyEndpoint(parsed.model));
        };
        if self.scheduler.needs_tokens() {
            match self
                .tokenizers
                .tokens(&parsed.model, &parsed.prompt, first.spec().address)
                .await
            {
                Ok(tokens) => scheduling.tokens = Some(Arc::from(tokens)),
                Err(error) => {
                    tracing::warn!(%error, "prompt not tokenized; prefix scores and P/D decision go without it");
                }
            }
        }
        let started = Instant::now();
        let decision = self
            .scheduler
            .schedule(&scheduling, &candidates)
            .await
            .map_err(|_| ApiError::NoReadyEndpoint(parsed.model.clone()))?;
        self.metrics
            .record_decision(decision.kind, started.elapsed());
        let upstream = Upstream {
            target: decision.target.target(),
            route,
            request_id: &request_id,
            prefiller: decision.prefiller_host_port.as_deref(),
        };
        forward::forward(&self.client, &upstream, &headers, body).await
    }

    async fn read_body(&self, body: Body) -> Result<Bytes, ApiError> {
        match Limited::new(body, self.body_limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                Err(ApiError::TooLarge(self.body_limit))
            }
            Err(_) => Err(ApiError::BadRequest(
                "the request body could not be read".to_owned(),
            )),
        }
    }
}

/// The client's `x-request-id` if it is a sane id, else a new random one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_REQUEST_ID_LEN
                && id.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(|| format!("{:032x}", rand::random::<u128>()), str::to_owned)
}
