//! A real OTLP trace receiver for tests: a tonic gRPC `TraceService` and an
//! HTTP `/v1/traces` endpoint (protobuf and JSON), both on `127.0.0.1:0`,
//! running on their own runtime so any test (sync or async, any runtime
//! flavour) can wait on them.
//!
//! It keeps every decoded span with its resource's `service.name`, and
//! every raw request body, so a test can assert that a string never left
//! the process.

use super::span_count::{CountingTraceService, ExportSkeleton};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// The largest request body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// How a request reached the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with a protobuf body.
    HttpProtobuf,
    /// OTLP/HTTP with a JSON body.
    HttpJson,
}

/// One span as received.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// The `service.name` of the span's resource.
    pub service_name: Option<String>,
    /// How the span arrived.
    pub transport: Transport,
    /// The decoded OTLP span.
    pub span: Span,
}

/// One request body as received (for gRPC, including the 5-byte message
/// frame header).
#[derive(Clone, Debug)]
pub struct RawRequest {
    /// How the request arrived.
    pub transport: Transport,
    /// The body bytes.
    pub body: Bytes,
}

/// A running receiver; stops when dropped.
pub struct OtlpReceiver {
    grpc: SocketAddr,
    http: SocketAddr,
    store: Arc<Store>,
    runtime: Option<Runtime>,
}

#[derive(Default)]
struct Store {
    /// Whether spans and request bodies are kept, or only counted.
    counting_only: bool,
    received: Mutex<Received>,
    changed: Condvar,
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    requests: Vec<RawRequest>,
    span_count: usize,
}

impl OtlpReceiver {
    /// Binds both servers on ephemeral loopback ports and starts them.
    pub fn start() -> std::io::Result<OtlpReceiver> {
        OtlpReceiver::start_with(false)
    }

    /// A receiver that keeps neither spans nor bodies, only
    /// [`OtlpReceiver::span_count`]: for benchmarks, where the collector
    /// should cost the machine as little as it can. gRPC and HTTP protobuf
    /// exports are decoded only down to their spans' framing (each span
    /// is counted, not decoded); JSON exports are decoded whole.
    pub fn start_counting() -> std::io::Result<OtlpReceiver> {
        OtlpReceiver::start_with(true)
    }

    fn start_with(counting_only: bool) -> std::io::Result<OtlpReceiver> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-receiver")
            .enable_all()
            .build()?;
        let store = Arc::new(Store {
            counting_only,
            ..Store::default()
        });
        let grpc_routes = if counting_only {
            let counted = store.clone();
            tonic::service::Routes::new(CountingTraceService::new(move |spans| {
                counted.count(spans);
            }))
        } else {
            tonic::service::Routes::new(TraceServiceServer::new(GrpcTraces(store.clone())))
        };
        let grpc_router = grpc_routes.into_axum_router();
        let http_router = axum::Router::new()
            .route("/v1/traces", axum::routing::post(http_traces))
            .with_state(store.clone());
        let grpc = serve(&runtime, grpc_router, store.clone())?;
        let http = serve(&runtime, http_router, store.clone())?;
        Ok(OtlpReceiver {
            grpc,
            http,
            store,
            runtime: Some(runtime),
        })
    }

    /// The gRPC endpoint, e.g. `http://127.0.0.1:40123`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// The HTTP base endpoint (what `OTEL_EXPORTER_OTLP_ENDPOINT` takes).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The full HTTP traces URL (what `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// takes).
    pub fn http_traces_url(&self) -> String {
        format!("http://{}/v1/traces", self.http)
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.store.lock().spans.clone()
    }

    /// How many spans were received so far (kept or only counted).
    pub fn span_count(&self) -> usize {
        self.store.lock().span_count
    }

    /// The request bodies received so far.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.store.lock().requests.clone()
    }

    /// Whether `needle` appears in any request body received so far.
    pub fn raw_bytes_contain(&self, needle: &[u8]) -> bool {
        !needle.is_empty()
            && self.store.lock().requests.iter().any(|request| {
                request
                    .body
                    .windows(needle.len())
                    .any(|window| window == needle)
            })
    }

    /// Waits until at least `count` spans were received (kept or only
    /// counted) or `timeout` passed, and returns how many were.
    pub fn wait_for_span_count(&self, count: usize, timeout: Duration) -> usize {
        self.wait_until(timeout, |received| received.span_count >= count)
            .span_count
    }

    /// Waits until at least `count` spans were received or `timeout`
    /// passed, and returns the spans received (fewer than `count` on
    /// timeout).
    pub fn wait_for_spans(&self, count: usize, timeout: Duration) -> Vec<ReceivedSpan> {
        self.wait_until(timeout, |received| received.spans.len() >= count)
            .spans
            .clone()
    }

    /// Waits until at least `count` requests were received or `timeout`
    /// passed, and returns the requests received.
    pub fn wait_for_requests(&self, count: usize, timeout: Duration) -> Vec<RawRequest> {
        self.wait_until(timeout, |received| received.requests.len() >= count)
            .requests
            .clone()
    }

    fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&Received) -> bool,
    ) -> MutexGuard<'_, Received> {
        let deadline = Instant::now() + timeout;
        let mut received = self.store.lock();
        while !done(&received) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            received = self
                .store
                .changed
                .wait_timeout(received, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        received
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, Received> {
        self.received.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn keep_request(&self, request: RawRequest) {
        self.lock().requests.push(request);
        self.changed.notify_all();
    }

    fn count(&self, spans: usize) {
        self.lock().span_count += spans;
        self.changed.notify_all();
    }

    fn keep_spans(&self, transport: Transport, export: ExportTraceServiceRequest) {
        let mut received = self.lock();
        received.span_count += span_count_of(&export);
        for resource_spans in export.resource_spans {
            let service_name = resource_spans
                .resource
                .as_ref()
                .and_then(|resource| {
                    resource
                        .attributes
                        .iter()
                        .find(|kv| kv.key == "service.name")
                })
                .and_then(|kv| kv.value.as_ref())
                .and_then(string_value);
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    received.spans.push(ReceivedSpan {
                        service_name: service_name.clone(),
                        transport,
                        span,
                    });
                }
            }
        }
        drop(received);
        self.changed.notify_all();
    }
}

/// How many spans `export` carries, over all its resources and scopes.
pub fn span_count_of(export: &ExportTraceServiceRequest) -> usize {
    export
        .resource_spans
        .iter()
        .flat_map(|resource_spans| &resource_spans.scope_spans)
        .map(|scope_spans| scope_spans.spans.len())
        .sum()
}

fn serve(
    runtime: &Runtime,
    router: axum::Router,
    store: Arc<Store>,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let router = if store.counting_only {
        router
    } else {
        router.layer(middleware::from_fn_with_state(store, keep_raw_body))
    };
    runtime.spawn(async move { axum::serve(listener, router).await });
    Ok(address)
}

/// Keeps the raw body of every request, then passes it on.
async fn keep_raw_body(State(store): State<Arc<Store>>, request: Request, next: Next) -> Response {
    let transport = transport_of(request.headers());
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    store.keep_request(RawRequest {
        transport,
        body: body.clone(),
    });
    next.run(Request::from_parts(parts, Body::from(body))).await
}

fn transport_of(headers: &HeaderMap) -> Transport {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/grpc") {
        Transport::Grpc
    } else if content_type.starts_with("application/json") {
        Transport::HttpJson
    } else {
        Transport::HttpProtobuf
    }
}

struct GrpcTraces(Arc<Store>);

#[tonic::async_trait]
impl TraceService for GrpcTraces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.keep_spans(Transport::Grpc, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn http_traces(State(store): State<Arc<Store>>, headers: HeaderMap, body: Bytes) -> Response {
    let transport = transport_of(&headers);
    if store.counting_only && transport == Transport::HttpProtobuf {
        match ExportSkeleton::decode(body) {
            Ok(skeleton) => store.count(skeleton.span_count()),
            Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
        }
        return answer(transport);
    }
    let decoded = match transport {
        Transport::HttpJson => serde_json::from_slice::<ExportTraceServiceRequest>(&body)
            .map_err(|error| error.to_string()),
        _ => ExportTraceServiceRequest::decode(body).map_err(|error| error.to_string()),
    };
    let export = match decoded {
        Ok(export) => export,
        Err(error) => return (StatusCode::BAD_REQUEST, error).into_response(),
    };
    if store.counting_only {
        store.count(span_count_of(&export));
    } else {
        store.keep_spans(transport, export);
    }
    answer(transport)
}

/// The success answer to an OTLP/HTTP export, in the request's encoding.
fn answer(transport: Transport) -> Response {
    let answer = ExportTraceServiceResponse::default();
    match transport {
        Transport::HttpJson => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&answer).unwrap_or_else(|_| b"{}".to_vec()),
        )
            .into_response(),
        _ => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            answer.encode_to_vec(),
        )
            .into_response(),
    }
}

fn string_value(value: &AnyValue) -> Option<String> {
    match &value.value {
        Some(any_value::Value::StringValue(text)) => Some(text.clone()),
        _ => None,
    }
}

impl ReceivedSpan {
    /// The span's name.
    pub fn name(&self) -> &str {
        &self.span.name
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent span id as hex digits (empty for a root span).
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// The value of attribute `key`, if set.
    pub fn attribute(&self, key: &str) -> Option<&any_value::Value> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|value| value.value.as_ref())
    }

    /// The value of string attribute `key`, if set.
    pub fn string_attribute(&self, key: &str) -> Option<&str> {
        match self.attribute(key) {
            Some(any_value::Value::StringValue(text)) => Some(text),
            _ => None,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
