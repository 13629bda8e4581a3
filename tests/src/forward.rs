//! Forwarding to the user's own collector: when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, every export request
//! the embedded receiver got from the children is sent on to that
//! collector by the runtime's OTLP exporter, with the protocol, headers,
//! compression, timeout and retries of the standard `OTEL_EXPORTER_OTLP_*`
//! variables, over one connection. A request whose encoding the collector's
//! protocol shares (protobuf for gRPC and `http/protobuf`, JSON for
//! `http/json`) is sent on byte for byte; only one between protobuf and
//! JSON is decoded and encoded again. The children keep exporting to the
//! embedded receiver only, so the stack prints its traces whatever the
//! user's collector does; a request the collector refuses after the
//! exporter's retries is counted, and the first such failure kept.
//!
//! A slow or black-holed collector costs bounded memory and a bounded
//! stop: requests are taken from the receiver as they arrive, whatever the
//! send under way, and held up to [`MAX_BACKLOG_BYTES`] (beyond, the oldest
//! are dropped and counted); at stop, what is still held gets the
//! exporter's timeout once to go, and the rest is counted as dropped.

use llmd_runtime::telemetry::otlp::Encoding;
use llmd_runtime::telemetry::{ExporterSetting, OtlpExporter, OtlpSettings, TelemetryConfig};
use llmd_runtime::testing::otlp_receiver::{OtlpReceiver, RawRequest, Transport};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How often new requests are looked for.
const POLL_PERIOD: Duration = Duration::from_millis(200);

/// The most request bytes held for a collector that is not keeping up.
pub const MAX_BACKLOG_BYTES: usize = 32 * 1024 * 1024;

/// The user's collector, from the standard variables.
#[derive(Clone, Debug, PartialEq)]
pub struct Destination {
    /// Protocol, URL, headers and timeout.
    pub settings: OtlpSettings,
}

impl Destination {
    /// The collector named by `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` as
    /// read by `lookup`; `None` when neither is set.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<Destination> {
        let named = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .any(|name| lookup(name).is_some_and(|v| !v.trim().is_empty()));
        if !named {
            return None;
        }
        let config = TelemetryConfig::from_lookup("llmd-stack", |name| match name {
            // The user's collector is wanted even if their SDK settings
            // would turn their own exporter off.
            "OTEL_TRACES_EXPORTER" | "OTEL_SDK_DISABLED" => None,
            other => lookup(other),
        });
        match config.exporter {
            ExporterSetting::Otlp(settings) => Some(Destination { settings }),
            ExporterSetting::Console | ExporterSetting::None => None,
        }
    }
}

/// Counts of forwarded export requests.
#[derive(Debug, Default)]
pub struct ForwardStats {
    forwarded: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

impl ForwardStats {
    /// Requests the collector accepted.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }

    /// Requests that could not be decoded or were refused or lost.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Requests never sent: dropped from a full backlog, or still held
    /// when the forwarder stopped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Why the first failed or dropped request was.
    pub fn first_failure(&self) -> Option<String> {
        self.first_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn count(&self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.forwarded.fetch_add(1, Ordering::Relaxed);
            }
            Err(reason) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.keep_reason(|| reason);
            }
        }
    }

    fn count_dropped(&self, requests: usize, reason: impl FnOnce() -> String) {
        if requests > 0 {
            self.dropped.fetch_add(requests as u64, Ordering::Relaxed);
            self.keep_reason(reason);
        }
    }

    fn keep_reason(&self, reason: impl FnOnce() -> String) {
        self.first_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(reason);
    }
}

/// How much a forwarder holds and how long its stop may take.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The most request bytes held while the collector is not keeping up.
    pub backlog_bytes: usize,
    /// How long requests still held at stop may take to go.
    pub drain: Duration,
}

/// Received requests waiting to be sent, oldest first, within a byte limit.
#[derive(Debug)]
struct Backlog {
    requests: VecDeque<RawRequest>,
    bytes: usize,
    limit: usize,
}

impl Backlog {
    fn new(limit: usize) -> Backlog {
        Backlog {
            requests: VecDeque::new(),
            bytes: 0,
            limit,
        }
    }

    /// Holds `request`, dropping the oldest held ones (counted in `stats`)
    /// while the bytes held exceed the limit; a request larger than the
    /// whole limit is held alone.
    fn push(&mut self, request: RawRequest, stats: &ForwardStats) {
        self.bytes += request.body.len();
        self.requests.push_back(request);
        let mut dropped = 0;
        while self.bytes > self.limit && self.requests.len() > 1 {
            if let Some(oldest) = self.requests.pop_front() {
                self.bytes -= oldest.body.len();
                dropped += 1;
            }
        }
        let limit = self.limit;
        stats.count_dropped(dropped, || {
            format!("the collector is not keeping up: requests beyond {limit} bytes waiting were dropped")
        });
    }

    fn pop(&mut self) -> Option<RawRequest> {
        let request = self.requests.pop_front()?;
        self.bytes -= request.body.len();
        Some(request)
    }
}

/// A running forwarder; stops (after one last pass, within its drain
/// time) when dropped.
pub struct Forwarder {
    stop: watch::Sender<bool>,
    stats: Arc<ForwardStats>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Starts forwarding what `receiver` gets to `destination`, on a thread
    /// of its own, taking request bodies from the receiver as they arrive;
    /// holds at most [`MAX_BACKLOG_BYTES`], and gives what is held at stop
    /// the exporter's timeout to go. An endpoint the exporter cannot use is
    /// an error here.
    pub fn start(
        receiver: Arc<OtlpReceiver>,
        destination: Destination,
    ) -> std::io::Result<Forwarder> {
        let limits = Limits {
            backlog_bytes: MAX_BACKLOG_BYTES,
            drain: destination.settings.timeout,
        };
        Forwarder::start_with(receiver, destination, limits)
    }

    /// [`Forwarder::start`] with other limits.
    pub fn start_with(
        receiver: Arc<OtlpReceiver>,
        destination: Destination,
        limits: Limits,
    ) -> std::io::Result<Forwarder> {
        let (stop, stopped) = watch::channel(false);
        let stats = Arc::new(ForwardStats::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // A gRPC exporter's channel is built inside the runtime that drives it.
        let exporter = {
            let _entered = runtime.enter();
            OtlpExporter::new(&destination.settings).map_err(std::io::Error::other)?
        };
        let thread = {
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("otlp-forward".to_owned())
                .spawn(move || {
                    runtime.block_on(forward(&receiver, &exporter, &stats, stopped, limits));
                })?
        };
        Ok(Forwarder {
            stop,
            stats,
            thread: Some(thread),
        })
    }

    /// The counts (still counting until the forwarder is dropped).
    pub fn stats(&self) -> Arc<ForwardStats> {
        self.stats.clone()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Takes requests from `receiver` every [`POLL_PERIOD`] into a backlog
/// while another part of the same task sends them one at a time, until
/// `stop` says so; then takes one last time and sends what is held for at
/// most `limits.drain`, counting the rest as dropped.
async fn forward(
    receiver: &OtlpReceiver,
    exporter: &OtlpExporter,
    stats: &ForwardStats,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
) {
    let backlog = RefCell::new(Backlog::new(limits.backlog_bytes));
    let arrived = Notify::new();
    let last_taken = Cell::new(false);
    let in_flight = Cell::new(false);
    let taking = async {
        loop {
            // A forwarder gone without saying stop also means stop.
            let stopping = *stop.borrow_and_update() || stop.has_changed().is_err();
            for request in receiver.take_requests() {
                backlog.borrow_mut().push(request, stats);
            }
            last_taken.set(stopping);
            arrived.notify_one();
            if stopping {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL_PERIOD) => {}
                _ = stop.changed() => {}
            }
        }
    };
    let sending = async {
        loop {
            let next = backlog.borrow_mut().pop();
            match next {
                Some(request) => {
                    in_flight.set(true);
                    let outcome = match encoded_as(exporter.encoding(), &request) {
                        Some(body) => exporter.send_encoded(body).await,
                        None => Err(format!(
                            "a {:?} export request that does not decode",
                            request.transport
                        )),
                    };
                    in_flight.set(false);
                    stats.count(outcome);
                }
                None if last_taken.get() => return,
                None => arrived.notified().await,
            }
        }
    };
    let draining = async {
        taking.await;
        tokio::time::sleep(limits.drain).await;
    };
    tokio::select! {
        () = sending => {}
        () = draining => {}
    }
    let left = backlog.borrow().requests.len() + usize::from(in_flight.get());
    stats.count_dropped(left, || {
        "the stack stopped before the collector took every request".to_owned()
    });
}

/// The export request in a raw request body (kept decompressed by the
/// receiver); `None` for a malformed body, or a compressed message the
/// receiver could not gunzip.
pub fn decode(request: &RawRequest) -> Option<ExportTraceServiceRequest> {
    match request.transport {
        Transport::Grpc => ExportTraceServiceRequest::decode(grpc_message(&request.body)?).ok(),
        Transport::HttpProtobuf => ExportTraceServiceRequest::decode(request.body.clone()).ok(),
        Transport::HttpJson => serde_json::from_slice(&request.body).ok(),
    }
}

/// The received `request` encoded as `encoding` says: its own bytes when
/// it already is (a gRPC message without its frame), otherwise decoded and
/// encoded again; `None` when it does not decode.
fn encoded_as(encoding: Encoding, request: &RawRequest) -> Option<Vec<u8>> {
    match (encoding, request.transport) {
        (Encoding::Protobuf, Transport::Grpc) => grpc_message(&request.body).map(<[u8]>::to_vec),
        (Encoding::Protobuf, Transport::HttpProtobuf) | (Encoding::Json, Transport::HttpJson) => {
            Some(request.body.to_vec())
        }
        (Encoding::Protobuf, Transport::HttpJson) => decode(request).map(|m| m.encode_to_vec()),
        (Encoding::Json, Transport::Grpc | Transport::HttpProtobuf) => {
            decode(request).and_then(|export| serde_json::to_vec(&export).ok())
        }
    }
}

/// The one uncompressed message of a gRPC request body (compression flag,
/// 4-byte length, message); `None` when the body is short or says
/// compressed.
fn grpc_message(body: &[u8]) -> Option<&[u8]> {
    let (&[flag, a, b, c, d], message) = body.split_first_chunk::<5>()?;
    let length = usize::try_from(u32::from_be_bytes([a, b, c, d])).ok()?;
    if flag != 0 {
        return None;
    }
    message.get(..length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use llmd_runtime::telemetry::Protocol;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use std::time::Duration;

    /// An export request with 20 spans named `span_name` under a named
    /// service (enough for gzip to shrink it).
    fn export_of(span_name: &str) -> ExportTraceServiceRequest {
        let service = KeyValue {
            key: "service.name".to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(
                    "forwarded-service".to_owned(),
                )),
            }),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![service],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: (1..=20)
                        .map(|n| Span {
                            trace_id: vec![0x4b; 16],
                            span_id: vec![n; 8],
                            name: span_name.to_owned(),
                            start_time_unix_nano: 1_700_000_000_000_000_000,
                            end_time_unix_nano: 1_700_000_000_000_500_000,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn raw(transport: Transport, body: Vec<u8>) -> RawRequest {
        RawRequest {
            transport,
            wire_len: body.len(),
            body: Bytes::from(body),
            encoding: None,
        }
    }

    fn grpc_frame(message: &[u8]) -> Vec<u8> {
        let mut body = vec![0];
        body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        body.extend_from_slice(message);
        body
    }

    /// The settings the standard variables give for a collector at
    /// `endpoint` (used as it is, as a signal-specific endpoint is).
    fn settings(protocol: &str, endpoint: String, compression: &str) -> OtlpSettings {
        Destination::from_lookup(|name| match name {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => Some(endpoint.clone()),
            "OTEL_EXPORTER_OTLP_PROTOCOL" => Some(protocol.to_owned()),
            "OTEL_EXPORTER_OTLP_COMPRESSION" => Some(compression.to_owned()),
            _ => None,
        })
        .expect("the variables name a collector")
        .settings
    }

    /// Sends `export` to `receiver` over `transport`, as a child would.
    fn send_into(
        receiver: &OtlpReceiver,
        transport: Transport,
        export: &ExportTraceServiceRequest,
    ) {
        let (protocol, body) = match transport {
            Transport::Grpc => (Protocol::Grpc, export.encode_to_vec()),
            Transport::HttpProtobuf => (Protocol::HttpProtobuf, export.encode_to_vec()),
            Transport::HttpJson => (Protocol::HttpJson, serde_json::to_vec(export).unwrap()),
        };
        let endpoint = receiver.traces_endpoint(protocol);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sender = {
            let _entered = runtime.enter();
            OtlpExporter::new(&settings(&protocol.to_string(), endpoint, "none")).unwrap()
        };
        runtime.block_on(sender.send_encoded(body)).unwrap();
    }

    /// Forwards `export`, received over `transport`, to `collector` with
    /// `settings`; gives what the collector got and the counts.
    fn forward_one(
        transport: Transport,
        export: &ExportTraceServiceRequest,
        settings: OtlpSettings,
        collector: &OtlpReceiver,
    ) -> (RawRequest, Arc<ForwardStats>) {
        let source = Arc::new(OtlpReceiver::start().unwrap());
        let forwarder = Forwarder::start(source.clone(), Destination { settings }).unwrap();
        send_into(&source, transport, export);
        let received = collector.wait_for_requests(1, Duration::from_secs(20));
        let stats = forwarder.stats();
        drop(forwarder);
        assert_eq!(received.len(), 1, "one request forwarded");
        (received[0].clone(), stats)
    }

    #[test]
    fn a_grpc_request_goes_on_byte_for_byte_and_gzip_compressed_when_asked() {
        let export = export_of("grpc-to-grpc");
        let collector = OtlpReceiver::start().unwrap();
        let settings = settings("grpc", collector.grpc_endpoint(), "gzip");
        let (received, stats) = forward_one(Transport::Grpc, &export, settings, &collector);
        assert_eq!(received.transport, Transport::Grpc);
        assert_eq!(received.encoding.as_deref(), Some("gzip"));
        assert!(received.wire_len < received.body.len(), "{received:?}");
        assert_eq!(&received.body[..], &grpc_frame(&export.encode_to_vec())[..]);
        assert_eq!((stats.forwarded(), stats.failed()), (1, 0));
        assert_eq!(collector.spans()[0].name(), "grpc-to-grpc");
    }

    #[test]
    fn a_json_request_goes_to_an_http_protobuf_collector_as_protobuf() {
        let export = export_of("json-to-protobuf");
        let collector = OtlpReceiver::start().unwrap();
        let settings = settings("http/protobuf", collector.http_traces_url(), "gzip");
        let (received, _) = forward_one(Transport::HttpJson, &export, settings, &collector);
        assert_eq!(received.transport, Transport::HttpProtobuf);
        assert_eq!(received.encoding.as_deref(), Some("gzip"));
        assert_eq!(decode(&received), Some(export));
    }

    #[test]
    fn a_protobuf_request_goes_to_an_http_json_collector_as_json() {
        let export = export_of("protobuf-to-json");
        let collector = OtlpReceiver::start().unwrap();
        let settings = settings("http/json", collector.http_traces_url(), "none");
        let (received, _) = forward_one(Transport::HttpProtobuf, &export, settings, &collector);
        assert_eq!(received.transport, Transport::HttpJson);
        assert_eq!(received.encoding, None);
        assert_eq!(decode(&received), Some(export));
    }

    #[test]
    fn a_collector_that_refuses_connections_is_a_counted_failure_with_its_reason() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/v1/traces", listener.local_addr().unwrap())
        };
        let source = Arc::new(OtlpReceiver::start().unwrap());
        let settings = settings("http/protobuf", closed, "none");
        let forwarder = Forwarder::start(source.clone(), Destination { settings }).unwrap();
        send_into(&source, Transport::HttpProtobuf, &export_of("refused"));
        let stats = forwarder.stats();
        // The exporter's retries end within a few seconds; dropping the
        // forwarder waits for its last pass.
        while source.requests().is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(forwarder);
        assert_eq!((stats.forwarded(), stats.failed()), (0, 1));
        let reason = stats.first_failure().unwrap_or_default();
        assert!(reason.contains("cannot reach the collector"), "{reason}");
    }

    #[test]
    fn a_collector_that_never_answers_holds_a_bounded_backlog_and_stops_at_once() {
        let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}/v1/traces", black_hole.local_addr().unwrap());
        let mut settings = settings("http/protobuf", endpoint, "none");
        settings.timeout = Duration::from_secs(600);
        let export = export_of("black-holed");
        let size = export.encode_to_vec().len();
        let limits = Limits {
            backlog_bytes: size * 5 / 2,
            drain: Duration::ZERO,
        };
        let source = Arc::new(OtlpReceiver::start().unwrap());
        let forwarder =
            Forwarder::start_with(source.clone(), Destination { settings }, limits).unwrap();
        for _ in 0..6 {
            send_into(&source, Transport::HttpProtobuf, &export);
        }
        let stats = forwarder.stats();
        // One request is in flight for good and two fit in the backlog:
        // the others are dropped as they are taken from the receiver.
        while stats.dropped() < 3 {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(source.requests().is_empty(), "taken while a send hangs");
        drop(forwarder);
        assert_eq!(
            (stats.forwarded(), stats.failed(), stats.dropped()),
            (0, 0, 6)
        );
        let reason = stats.first_failure().unwrap_or_default();
        assert!(reason.contains("not keeping up"), "{reason}");
    }

    #[test]
    fn the_backlog_drops_its_oldest_requests_beyond_its_bytes() {
        let stats = ForwardStats::default();
        let mut backlog = Backlog::new(10);
        for (n, len) in [(1, 4), (2, 4), (3, 4), (4, 20), (5, 3)] {
            backlog.push(raw(Transport::HttpJson, vec![n; len]), &stats);
        }
        assert_eq!(
            stats.dropped(),
            4,
            "one before the large request, two for it, then it"
        );
        assert_eq!(backlog.bytes, 3);
        assert_eq!(backlog.pop().map(|r| r.body[0]), Some(5));
        assert!(backlog.pop().is_none());
        assert_eq!(backlog.bytes, 0);
    }

    #[test]
    fn re_encoding_is_only_for_a_protocol_of_another_encoding() {
        let export = export_of("encodings");
        let message = export.encode_to_vec();
        let json = serde_json::to_vec(&export).unwrap();
        let grpc = raw(Transport::Grpc, grpc_frame(&message));
        let protobuf = raw(Transport::HttpProtobuf, message.clone());
        let as_json = raw(Transport::HttpJson, json.clone());
        assert_eq!(encoded_as(Encoding::Protobuf, &grpc), Some(message.clone()));
        assert_eq!(
            encoded_as(Encoding::Protobuf, &protobuf),
            Some(message.clone())
        );
        assert_eq!(encoded_as(Encoding::Json, &as_json), Some(json.clone()));
        assert_eq!(encoded_as(Encoding::Protobuf, &as_json), Some(message));
        for from in [&grpc, &protobuf] {
            let converted = encoded_as(Encoding::Json, from).unwrap();
            let decoded: ExportTraceServiceRequest = serde_json::from_slice(&converted).unwrap();
            assert_eq!(decoded, export);
        }
        let mut compressed = grpc_frame(b"");
        compressed[0] = 1;
        assert_eq!(
            encoded_as(Encoding::Protobuf, &raw(Transport::Grpc, compressed)),
            None
        );
        let not_json = raw(Transport::HttpJson, b"{".to_vec());
        assert_eq!(encoded_as(Encoding::Protobuf, &not_json), None);
    }

    #[test]
    fn the_destination_follows_the_standard_variables() {
        assert_eq!(Destination::from_lookup(|_| None), None);
        let grpc = Destination::from_lookup(|name| {
            (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://collector:4317".to_owned())
        })
        .unwrap();
        assert_eq!(grpc.settings.protocol, Protocol::Grpc);
        assert_eq!(grpc.settings.endpoint, "http://collector:4317");
        let http = Destination::from_lookup(|name| match name {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:4318".to_owned()),
            "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("http/protobuf".to_owned()),
            "OTEL_TRACES_EXPORTER" => Some("none".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(http.settings.endpoint, "http://collector:4318/v1/traces");
    }

    #[test]
    fn grpc_frames_decode_and_compressed_or_short_ones_do_not() {
        let export = ExportTraceServiceRequest::default();
        let message = export.encode_to_vec();
        let frame = |flag: u8, declared: usize| {
            let mut body = vec![flag];
            body.extend_from_slice(&u32::try_from(declared).unwrap().to_be_bytes());
            body.extend_from_slice(&message);
            RawRequest {
                transport: Transport::Grpc,
                wire_len: body.len(),
                body: Bytes::from(body),
                encoding: None,
            }
        };
        assert_eq!(decode(&frame(0, message.len())), Some(export));
        assert_eq!(decode(&frame(1, message.len())), None);
        assert_eq!(decode(&frame(0, message.len() + 1)), None);
        let short = RawRequest {
            transport: Transport::Grpc,
            body: Bytes::from_static(b"\0\0"),
            encoding: None,
            wire_len: 2,
        };
        assert_eq!(decode(&short), None);
    }
}
