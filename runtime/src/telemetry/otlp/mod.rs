//! The OTLP span exporter: encodes each batch once, straight from the
//! SDK's span data into the request bytes (protobuf or JSON, no
//! intermediate message structs and no copy of the batch), optionally
//! gzip-compresses it, and sends it over gRPC or HTTP, retrying transient
//! failures with backoff as the OTLP specification asks.

mod grpc;
mod http;
mod json;
mod protobuf;
mod response;
mod wire;

use super::exporter::{OtlpSettings, Protocol};
use bytes::Bytes;
use opentelemetry::InstrumentationScope;
use opentelemetry::trace::{SpanContext, SpanKind, Status};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `User-Agent` of export requests.
const USER_AGENT: &str = concat!("llmd-rs-otlp-exporter/", env!("CARGO_PKG_VERSION"));

/// Tries after the first one for a transient failure.
const MAX_RETRIES: u32 = 3;
/// The pause before the first retry; it doubles for each later one.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between two tries (unless the collector asks for
/// longer with `Retry-After`).
const MAX_BACKOFF: Duration = Duration::from_millis(1600);
/// Up to this much is added to each pause, so exporters that failed
/// together do not retry in lockstep.
const MAX_JITTER: Duration = Duration::from_millis(100);

/// How a request body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Binary protobuf (OTLP/gRPC and OTLP/HTTP `application/x-protobuf`).
    Protobuf,
    /// OTLP/JSON (`application/json`).
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }

    /// Appends the `ExportTraceServiceRequest` carrying `spans` under
    /// `resource` to `buf`, spans grouped by instrumentation scope.
    pub fn encode(self, resource: &Resource, spans: &[SpanData], buf: &mut Vec<u8>) {
        match self {
            Encoding::Protobuf => protobuf::encode_request(resource, spans, buf),
            Encoding::Json => json::encode_request(resource, spans, buf),
        }
    }
}

enum Transport {
    Grpc(grpc::GrpcTransport),
    Http(http::HttpTransport),
}

/// Exports spans to an OpenTelemetry collector over OTLP/gRPC,
/// OTLP/HTTP protobuf or OTLP/HTTP JSON, as [`OtlpSettings`] say.
pub struct OtlpExporter {
    transport: Transport,
    endpoint: String,
    resource: Resource,
    /// The size of the last request, to allocate the next one in one go.
    last_request_len: AtomicUsize,
    /// Whether a partial success has been logged (it is logged once).
    partial_success_logged: AtomicBool,
}

impl OtlpExporter {
    /// An exporter for `settings`. For gRPC it must be built inside a
    /// tokio runtime, which then drives its connection; it connects on
    /// first use, so a collector that is not up yet is not an error.
    pub fn new(settings: &OtlpSettings) -> Result<OtlpExporter, String> {
        let transport = match settings.protocol {
            Protocol::Grpc => Transport::Grpc(grpc::GrpcTransport::new(settings)?),
            Protocol::HttpProtobuf => {
                Transport::Http(http::HttpTransport::new(settings, Encoding::Protobuf)?)
            }
            Protocol::HttpJson => {
                Transport::Http(http::HttpTransport::new(settings, Encoding::Json)?)
            }
        };
        Ok(OtlpExporter {
            transport,
            endpoint: settings.endpoint.clone(),
            resource: Resource::builder_empty().build(),
            last_request_len: AtomicUsize::new(0),
            partial_success_logged: AtomicBool::new(false),
        })
    }

    /// How request bodies are encoded: protobuf for gRPC, the transport's
    /// choice for HTTP.
    pub fn encoding(&self) -> Encoding {
        match &self.transport {
            Transport::Grpc(_) => Encoding::Protobuf,
            Transport::Http(http) => http.encoding(),
        }
    }

    /// Sends one `ExportTraceServiceRequest` already encoded as
    /// [`OtlpExporter::encoding`] says (the protobuf message itself,
    /// without gRPC framing, or OTLP/JSON), compressed as configured and
    /// retried as a batch of spans is. For requests that were encoded
    /// elsewhere, such as those a collector forwards. The error describes
    /// the last failure.
    pub async fn send_encoded(&self, encoded: Vec<u8>) -> Result<(), String> {
        let body = match &self.transport {
            // tonic compresses gRPC messages itself.
            Transport::Grpc(_) => Bytes::from(encoded),
            Transport::Http(http) => http
                .body(encoded)
                .map_err(|error| format!("cannot compress the request: {error}"))?,
        };
        let mut retries = 0;
        loop {
            match self.send_once(body.clone()).await {
                Ok(()) => return Ok(()),
                Err(error) if error.retryable && retries < MAX_RETRIES => {
                    tokio::time::sleep(backoff(retries, error.after)).await;
                    retries += 1;
                }
                Err(error) => return Err(error.description),
            }
        }
    }

    async fn send_once(&self, body: Bytes) -> Result<(), SendError> {
        let response = match &self.transport {
            Transport::Grpc(grpc) => grpc.send(body).await?,
            Transport::Http(http) => http.send(body).await?,
        };
        if let Some(rejected) = response.rejected()
            && !self.partial_success_logged.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                endpoint = %self.endpoint,
                rejected_spans = rejected.rejected_spans,
                reason = %rejected.error_message,
                "the collector rejected part of an export (logged once)"
            );
        }
        Ok(())
    }
}

impl fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("endpoint", &self.endpoint)
            .field("encoding", &self.encoding())
            .finish()
    }
}

impl SpanExporter for OtlpExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut body = Vec::with_capacity(self.last_request_len.load(Ordering::Relaxed));
        self.encoding().encode(&self.resource, &batch, &mut body);
        drop(batch);
        self.last_request_len.store(body.len(), Ordering::Relaxed);
        self.send_encoded(body)
            .await
            .map_err(OTelSdkError::InternalFailure)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.clone();
    }
}

/// Why one try failed, and whether (and when) to try again.
#[derive(Debug)]
struct SendError {
    description: String,
    retryable: bool,
    /// The pause the collector asked for.
    after: Option<Duration>,
}

impl SendError {
    fn retryable(description: String) -> SendError {
        SendError {
            description,
            retryable: true,
            after: None,
        }
    }

    fn permanent(description: String) -> SendError {
        SendError {
            description,
            retryable: false,
            after: None,
        }
    }

    fn after(self, after: Option<Duration>) -> SendError {
        SendError { after, ..self }
    }
}

/// The pause before retry number `retries` (from 0): exponential with
/// jitter, or what the collector asked for.
fn backoff(retries: u32, requested: Option<Duration>) -> Duration {
    if let Some(requested) = requested {
        return requested;
    }
    let exponential = FIRST_BACKOFF
        .saturating_mul(1 << retries.min(16))
        .min(MAX_BACKOFF);
    let random = std::collections::hash_map::RandomState::new().hash_one(retries);
    let jitter = MAX_JITTER.mul_f64((random % 1000) as f64 / 1000.0);
    exponential + jitter
}

/// The spans of a batch grouped by instrumentation scope, scopes in order
/// of first appearance and spans in batch order within each.
struct ScopeGroups<'a> {
    groups: Vec<(&'a InstrumentationScope, Vec<&'a SpanData>)>,
}

impl<'a> ScopeGroups<'a> {
    fn new(spans: &'a [SpanData]) -> ScopeGroups<'a> {
        let mut groups: Vec<(&InstrumentationScope, Vec<&SpanData>)> = Vec::new();
        for span in spans {
            let scope = &span.instrumentation_scope;
            match groups
                .iter_mut()
                .find(|(known, _)| same_scope(known, scope))
            {
                Some((_, members)) => members.push(span),
                None => groups.push((scope, vec![span])),
            }
        }
        ScopeGroups { groups }
    }
}

/// Whether two spans' scopes are equal. The spans of one tracer carry
/// copies of the same scope, whose names and versions are the same static
/// strings and whose attributes are usually none: those are told equal by
/// their addresses, without comparing the text; anything else is compared
/// in full.
fn same_scope(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    fn same_text(a: Option<&str>, b: Option<&str>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
    let copies = same_text(Some(a.name()), Some(b.name()))
        && same_text(a.version(), b.version())
        && same_text(a.schema_url(), b.schema_url())
        && a.attributes().next().is_none()
        && b.attributes().next().is_none();
    copies || a == b
}

impl<'a> IntoIterator for ScopeGroups<'a> {
    type Item = (&'a InstrumentationScope, Vec<&'a SpanData>);
    type IntoIter = std::vec::IntoIter<Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.groups.into_iter()
    }
}

/// `Span.flags`: the W3C trace flags, and whether the parent is remote
/// (with the bit saying that this is known).
fn span_flags(context: &SpanContext, parent_is_remote: bool) -> u32 {
    const CONTEXT_HAS_IS_REMOTE: u32 = 0x100;
    const CONTEXT_IS_REMOTE: u32 = 0x200;
    let remote = if parent_is_remote {
        CONTEXT_IS_REMOTE
    } else {
        0
    };
    u32::from(context.trace_flags().to_u8()) | CONTEXT_HAS_IS_REMOTE | remote
}

/// The `Span.SpanKind` enum number.
fn span_kind_number(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// The `Status.StatusCode` enum number.
fn status_code(status: &Status) -> u64 {
    match status {
        Status::Unset => 0,
        Status::Ok => 1,
        Status::Error { .. } => 2,
    }
}

/// Nanoseconds since the Unix epoch (0 for a time before it).
fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
