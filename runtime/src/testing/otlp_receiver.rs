//! A real OTLP trace receiver for tests: a tonic gRPC `TraceService` and an
//! HTTP `/v1/traces` endpoint (protobuf and JSON), both on `127.0.0.1:0`,
//! running on their own runtime so any test (sync or async, any runtime
//! flavour) can wait on them.
//!
//! Both accept gzip-compressed requests: gRPC messages with
//! `grpc-encoding: gzip` (and gzip answers go to clients that accept them),
//! HTTP bodies with `Content-Encoding: gzip`.
//!
//! It keeps every decoded span with its resource's `service.name`, and
//! every request body, decompressed, so a test can assert that a string
//! never left the process whether the exporter compressed or not.

use super::span_count::{CountingTraceService, ExportSkeleton};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use flate2::read::MultiGzDecoder;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tonic::codec::CompressionEncoding;

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

/// The gRPC header naming the compression of a call's messages.
const GRPC_ENCODING: &str = "grpc-encoding";

/// One request body as received, decompressed (for gRPC, including each
/// message's 5-byte frame header).
#[derive(Clone, Debug)]
pub struct RawRequest {
    /// How the request arrived.
    pub transport: Transport,
    /// The body bytes as the sender encoded them before compressing: an
    /// HTTP body sent with `Content-Encoding: gzip` is kept gunzipped, and
    /// so is a gzip-compressed gRPC message (its frame header then says
    /// uncompressed, with the gunzipped length).
    pub body: Bytes,
    /// The compression the request declared (`Content-Encoding` for HTTP,
    /// `grpc-encoding` for gRPC), e.g. `gzip`; `None` when it declared
    /// none.
    pub encoding: Option<String>,
    /// The length of the body as it came over the wire: shorter than
    /// [`RawRequest::body`] when compression shrank it.
    pub wire_len: usize,
}

/// A running receiver; stops when dropped.
pub struct OtlpReceiver {
    grpc: SocketAddr,
    http: SocketAddr,
    /// `https` when both servers speak TLS, else `http`.
    scheme: &'static str,
    store: Arc<Store>,
    runtime: Option<Runtime>,
}

/// What a receiver keeps of what it gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Keep {
    /// Every decoded span and every request body.
    #[default]
    Everything,
    /// Decoded spans, not request bodies.
    Spans,
    /// Only the number of spans.
    Count,
}

#[derive(Default)]
struct Store {
    /// What is kept of each request.
    keep: Keep,
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
        OtlpReceiver::start_with(Keep::Everything, None)
    }

    /// A receiver that keeps the decoded spans but not the request bodies,
    /// for a long-running consumer that takes the spans as they come
    /// ([`OtlpReceiver::take_spans`]) so that nothing piles up.
    pub fn start_keeping_spans() -> std::io::Result<OtlpReceiver> {
        OtlpReceiver::start_with(Keep::Spans, None)
    }

    /// A receiver whose two servers speak TLS with `tls` (e.g. from
    /// [`crate::testing::pki::TestPki::server_config`]); its endpoints are
    /// `https` URLs. A client that fails the handshake gets no answer.
    pub fn start_tls(tls: Arc<rustls::ServerConfig>) -> std::io::Result<OtlpReceiver> {
        OtlpReceiver::start_with(Keep::Everything, Some(tls))
    }

    /// A receiver that keeps neither spans nor bodies, only
    /// [`OtlpReceiver::span_count`]: for benchmarks, where the collector
    /// should cost the machine as little as it can. gRPC and HTTP protobuf
    /// exports are decoded only down to their spans' framing (each span
    /// is counted, not decoded); JSON exports are decoded whole.
    pub fn start_counting() -> std::io::Result<OtlpReceiver> {
        OtlpReceiver::start_with(Keep::Count, None)
    }

    fn start_with(
        keep: Keep,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<OtlpReceiver> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-receiver")
            .enable_all()
            .build()?;
        let store = Arc::new(Store {
            keep,
            ..Store::default()
        });
        let grpc_routes = if keep == Keep::Count {
            let counted = store.clone();
            tonic::service::Routes::new(CountingTraceService::new(move |spans| {
                counted.count(spans);
            }))
        } else {
            let traces = TraceServiceServer::new(GrpcTraces(store.clone()))
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip);
            tonic::service::Routes::new(traces)
        };
        let grpc_router = keeping_bodies(grpc_routes.into_axum_router(), &store);
        let http_router = axum::Router::new()
            .route("/v1/traces", axum::routing::post(http_traces))
            .with_state(store.clone());
        // Outermost, so that the kept body is the decompressed one.
        let http_router =
            keeping_bodies(http_router, &store).layer(middleware::from_fn(gunzip_request));
        let grpc = serve(&runtime, grpc_router, tls.clone())?;
        let http = serve(&runtime, http_router, tls.clone())?;
        Ok(OtlpReceiver {
            grpc,
            http,
            scheme: if tls.is_some() { "https" } else { "http" },
            store,
            runtime: Some(runtime),
        })
    }

    /// The gRPC endpoint, e.g. `http://127.0.0.1:40123`.
    pub fn grpc_endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.grpc)
    }

    /// The HTTP base endpoint (what `OTEL_EXPORTER_OTLP_ENDPOINT` takes).
    pub fn http_endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.http)
    }

    /// The full HTTP traces URL (what `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// takes).
    pub fn http_traces_url(&self) -> String {
        format!("{}://{}/v1/traces", self.scheme, self.http)
    }

    /// Where an exporter speaking `protocol` sends its spans: the gRPC
    /// endpoint, or the HTTP traces URL.
    pub fn traces_endpoint(&self, protocol: crate::telemetry::Protocol) -> String {
        match protocol {
            crate::telemetry::Protocol::Grpc => self.grpc_endpoint(),
            crate::telemetry::Protocol::HttpProtobuf | crate::telemetry::Protocol::HttpJson => {
                self.http_traces_url()
            }
        }
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.store.lock().spans.clone()
    }

    /// How many spans were received so far (kept or only counted).
    pub fn span_count(&self) -> usize {
        self.store.lock().span_count
    }

    /// The request bodies received so far, decompressed.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.store.lock().requests.clone()
    }

    /// Whether `needle` appears in any request body received so far, as
    /// the sender encoded it (decompressed, so a compressed export cannot
    /// hide a string from this check).
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

    /// Waits until a span was received or `timeout` passed, then takes
    /// every span received since the last take: the receiver keeps them no
    /// longer ([`OtlpReceiver::span_count`] still counts them).
    pub fn take_spans(&self, timeout: Duration) -> Vec<ReceivedSpan> {
        std::mem::take(
            &mut self
                .wait_until(timeout, |received| !received.spans.is_empty())
                .spans,
        )
    }

    /// Takes every request body received since the last take: the
    /// receiver keeps them no longer.
    pub fn take_requests(&self) -> Vec<RawRequest> {
        std::mem::take(&mut self.store.lock().requests)
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
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    match tls {
        None => drop(runtime.spawn(async move { axum::serve(listener, router).await })),
        Some(tls) => drop(runtime.spawn(serve_tls(listener, router, tls))),
    }
    Ok(address)
}

/// Serves `router` over TLS: a handshake per connection, then HTTP/1 or
/// HTTP/2 as ALPN chose.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Arc<rustls::ServerConfig>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            // A client that refuses the certificate, or is refused, ends
            // its connection in the handshake.
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let _ = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `router` keeping every request body, unless the receiver only counts.
fn keeping_bodies(router: axum::Router, store: &Arc<Store>) -> axum::Router {
    match store.keep {
        Keep::Everything => {
            router.layer(middleware::from_fn_with_state(store.clone(), keep_raw_body))
        }
        Keep::Spans | Keep::Count => router,
    }
}

/// What an HTTP request body was on the wire, before [`gunzip_request`]
/// decompressed it.
#[derive(Clone)]
struct WireBody {
    /// The `Content-Encoding` it was sent with.
    encoding: String,
    /// Its compressed length.
    len: usize,
}

/// Decompresses an HTTP request body sent with `Content-Encoding: gzip`
/// before the rest of the router sees it (which then finds the plain body,
/// with a [`WireBody`] saying what came over the wire). A body that is not
/// valid gzip is answered 400, any other content coding than gzip or
/// identity 415.
async fn gunzip_request(request: Request, next: Next) -> Response {
    let Some(encoding) = header_text(request.headers(), header::CONTENT_ENCODING.as_str()) else {
        return next.run(request).await;
    };
    if encoding.eq_ignore_ascii_case("identity") {
        return next.run(request).await;
    }
    if !encoding.eq_ignore_ascii_case("gzip") {
        let message = format!("unsupported Content-Encoding {encoding:?}: only gzip is accepted");
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response();
    }
    let (mut parts, body) = request.into_parts();
    let Ok(compressed) = axum::body::to_bytes(body, MAX_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let mut body = Vec::new();
    if let Err(error) = gunzip(&compressed, &mut body) {
        return error.into_response();
    }
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.extensions.insert(WireBody {
        encoding,
        len: compressed.len(),
    });
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// Keeps the body of every request (decompressed), then passes it on as
/// it came.
async fn keep_raw_body(State(store): State<Arc<Store>>, request: Request, next: Next) -> Response {
    let transport = transport_of(request.headers());
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let kept = match parts.extensions.get::<WireBody>() {
        // Gunzipped already by `gunzip_request`.
        Some(wire) => RawRequest {
            transport,
            body: body.clone(),
            encoding: Some(wire.encoding.clone()),
            wire_len: wire.len,
        },
        None if transport == Transport::Grpc => {
            let encoding = header_text(&parts.headers, GRPC_ENCODING);
            let gzip = encoding
                .as_deref()
                .is_some_and(|encoding| encoding.eq_ignore_ascii_case("gzip"));
            // A malformed call is kept as it came; tonic refuses it.
            let messages = gzip
                .then(|| gunzip_frames(&body))
                .flatten()
                .map_or_else(|| body.clone(), Bytes::from);
            RawRequest {
                transport,
                body: messages,
                encoding,
                wire_len: body.len(),
            }
        }
        None => RawRequest {
            transport,
            body: body.clone(),
            encoding: header_text(&parts.headers, header::CONTENT_ENCODING.as_str()),
            wire_len: body.len(),
        },
    };
    store.keep_request(kept);
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// The value of header `name`, trimmed, if it is set and text.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim().to_owned())
}

/// Why a gzip body could not be decompressed.
#[derive(Debug)]
enum GunzipError {
    /// It is not a valid gzip stream.
    Corrupt(std::io::Error),
    /// It is larger than [`MAX_BODY`] once decompressed.
    TooLarge,
}

impl IntoResponse for GunzipError {
    fn into_response(self) -> Response {
        match self {
            GunzipError::Corrupt(error) => (
                StatusCode::BAD_REQUEST,
                format!("the body is not valid gzip (sent with Content-Encoding: gzip): {error}"),
            )
                .into_response(),
            GunzipError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_BODY} bytes once decompressed"),
            )
                .into_response(),
        }
    }
}

/// Appends the decompressed `compressed` (one gzip member or more) to
/// `out`, at most [`MAX_BODY`] bytes of it.
fn gunzip(compressed: &[u8], out: &mut Vec<u8>) -> Result<(), GunzipError> {
    let start = out.len();
    MultiGzDecoder::new(compressed)
        .take(MAX_BODY as u64 + 1)
        .read_to_end(out)
        .map_err(GunzipError::Corrupt)?;
    if out.len() - start > MAX_BODY {
        return Err(GunzipError::TooLarge);
    }
    Ok(())
}

/// The gRPC messages of `body` with each compressed one gunzipped (its
/// frame header then says uncompressed, with the gunzipped length); `None`
/// when the framing or a message's gzip stream is malformed.
fn gunzip_frames(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    while let Some((&[flag, a, b, c, d], rest)) = body.split_first_chunk::<5>() {
        let length = usize::try_from(u32::from_be_bytes([a, b, c, d])).ok()?;
        let (message, rest) = rest.split_at_checked(length)?;
        let start = out.len();
        out.extend_from_slice(&[0; 5]);
        match flag {
            0 => out.extend_from_slice(message),
            1 => gunzip(message, &mut out).ok()?,
            _ => return None,
        }
        let gunzipped = u32::try_from(out.len() - start - 5).ok()?;
        out.get_mut(start + 1..start + 5)?
            .copy_from_slice(&gunzipped.to_be_bytes());
        body = rest;
    }
    body.is_empty().then_some(out)
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
    if store.keep == Keep::Count && transport == Transport::HttpProtobuf {
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
    if store.keep == Keep::Count {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{Compression, OtlpExporter, OtlpSettings, Protocol};
    use crate::testing::sampled_span;
    use flate2::write::GzEncoder;
    use opentelemetry_sdk::trace::SpanExporter as _;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("writing to a Vec");
        encoder.finish().expect("writing to a Vec")
    }

    /// An export of one span named `name`, as protobuf.
    fn export_named(name: &str) -> Vec<u8> {
        ExportTraceServiceRequest {
            resource_spans: vec![opentelemetry_proto::tonic::trace::v1::ResourceSpans {
                scope_spans: vec![opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                    spans: vec![Span {
                        name: name.to_owned(),
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        ..Span::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    /// Posts `body` to `url` as protobuf with `Content-Encoding:
    /// encoding`; the answer's status and text.
    fn post(url: &str, encoding: &str, body: Vec<u8>) -> (StatusCode, String) {
        crate::http::install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let response = reqwest::Client::new()
                .post(url)
                .header(header::CONTENT_TYPE, "application/x-protobuf")
                .header(header::CONTENT_ENCODING, encoding)
                .body(body)
                .send()
                .await
                .expect("an answer");
            let status = response.status();
            (status, response.text().await.unwrap_or_default())
        })
    }

    #[test]
    fn a_gzip_http_body_is_decoded_and_kept_decompressed() {
        let receiver = OtlpReceiver::start().expect("a receiver");
        let plain = export_named("llm_d.test.gzipped");
        let compressed = gzip(&plain);
        let (status, _) = post(&receiver.http_traces_url(), "GZIP", compressed.clone());
        assert_eq!(status, StatusCode::OK);
        let spans = receiver.spans();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].name(), "llm_d.test.gzipped");
        let requests = receiver.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].body, plain);
        assert_eq!(requests[0].encoding.as_deref(), Some("GZIP"));
        assert_eq!(requests[0].wire_len, compressed.len());
        assert!(receiver.raw_bytes_contain(b"llm_d.test.gzipped"));
    }

    #[test]
    fn a_corrupt_gzip_body_is_a_400_saying_so_and_other_codings_a_415() {
        let receiver = OtlpReceiver::start().expect("a receiver");
        let url = receiver.http_traces_url();
        let (status, text) = post(&url, "gzip", export_named("llm_d.test.plain"));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(text.contains("not valid gzip"), "{text}");
        let mut truncated = gzip(&export_named("llm_d.test.cut"));
        truncated.truncate(truncated.len() / 2);
        let (status, text) = post(&url, "gzip", truncated);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(text.contains("not valid gzip"), "{text}");
        let (status, text) = post(&url, "br", export_named("llm_d.test.brotli"));
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(text.contains("only gzip"), "{text}");
        assert!(receiver.spans().is_empty());
    }

    #[test]
    fn grpc_frames_are_gunzipped_and_malformed_ones_refused() {
        let frame = |flag: u8, message: &[u8]| {
            let mut frame = vec![flag];
            let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
            frame.extend_from_slice(&length.to_be_bytes());
            frame.extend_from_slice(message);
            frame
        };
        let first = export_named("llm_d.test.first");
        let second = export_named("llm_d.test.second");
        let mut body = frame(1, &gzip(&first));
        body.extend(frame(0, &second));
        let mut expected = frame(0, &first);
        expected.extend(frame(0, &second));
        assert_eq!(gunzip_frames(&body), Some(expected));
        assert_eq!(gunzip_frames(&frame(1, b"not gzip")), None);
        assert_eq!(gunzip_frames(&frame(2, &second)), None);
        let mut short = frame(0, &second);
        short.pop();
        assert_eq!(gunzip_frames(&short), None);
        assert_eq!(gunzip_frames(b"\0\0"), None);
        assert_eq!(gunzip_frames(b""), Some(Vec::new()));
    }

    #[test]
    fn a_counting_receiver_counts_gzip_exports_of_every_transport() {
        let receiver = OtlpReceiver::start_counting().expect("a receiver");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let _entered = runtime.enter();
        for (round, protocol) in [Protocol::Grpc, Protocol::HttpProtobuf, Protocol::HttpJson]
            .into_iter()
            .enumerate()
        {
            let exporter = OtlpExporter::new(&OtlpSettings {
                protocol,
                endpoint: receiver.traces_endpoint(protocol),
                headers: Vec::new(),
                timeout: Duration::from_secs(60),
                compression: Compression::Gzip,
                tls: Default::default(),
            })
            .expect("an exporter");
            let exported = runtime.block_on(exporter.export(vec![
                sampled_span("llm_d.test.counted"),
                sampled_span("llm_d.test.counted"),
            ]));
            assert!(exported.is_ok(), "{protocol}: {exported:?}");
            assert_eq!(receiver.span_count(), 2 * (round + 1), "{protocol}");
        }
        assert!(receiver.requests().is_empty());
    }

    #[test]
    fn taken_spans_and_requests_are_not_kept_and_taken_again() {
        let receiver = OtlpReceiver::start().expect("a receiver");
        assert!(receiver.take_spans(Duration::ZERO).is_empty());
        for name in ["llm_d.test.first", "llm_d.test.second"] {
            let (status, _) = post(&receiver.http_traces_url(), "identity", export_named(name));
            assert_eq!(status, StatusCode::OK);
        }
        let taken = receiver.take_spans(Duration::from_secs(10));
        let names: Vec<&str> = taken.iter().map(ReceivedSpan::name).collect();
        assert_eq!(names, ["llm_d.test.first", "llm_d.test.second"]);
        assert!(receiver.spans().is_empty());
        assert!(receiver.take_spans(Duration::ZERO).is_empty());
        assert_eq!(receiver.span_count(), 2, "taken spans still count");
        assert_eq!(receiver.take_requests().len(), 2);
        assert!(receiver.take_requests().is_empty());
        assert!(receiver.requests().is_empty());
    }

    #[test]
    fn a_receiver_keeping_spans_keeps_no_request_body() {
        let receiver = OtlpReceiver::start_keeping_spans().expect("a receiver");
        let (status, _) = post(
            &receiver.http_traces_url(),
            "identity",
            export_named("llm_d.test.kept"),
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(receiver.spans()[0].name(), "llm_d.test.kept");
        assert!(receiver.requests().is_empty());
    }
}
