//! Forwarding to the user's own collector: when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, every export request
//! the embedded receiver got from the children is sent on, unchanged, to
//! that collector, with the protocol, headers and timeout of the standard
//! `OTEL_EXPORTER_OTLP_*` variables. The children keep exporting to the
//! embedded receiver only, so the stack prints its traces whatever the
//! user's collector does; a failed forward is counted, not retried.

use llmd_runtime::telemetry::{ExporterSetting, OtlpSettings, Protocol, TelemetryConfig};
use llmd_runtime::testing::otlp_receiver::{OtlpReceiver, RawRequest, Transport};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often new requests are looked for.
const POLL_PERIOD: Duration = Duration::from_millis(200);

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
}

/// A running forwarder; stops (after one last pass) when dropped.
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    stats: Arc<ForwardStats>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Starts forwarding what `receiver` gets to `destination`, on a thread
    /// of its own.
    pub fn start(
        receiver: Arc<OtlpReceiver>,
        destination: Destination,
    ) -> std::io::Result<Forwarder> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ForwardStats::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = {
            let stop = stop.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("otlp-forward".to_owned())
                .spawn(move || {
                    let sender = Sender::new(destination.settings);
                    let mut next = 0;
                    loop {
                        let stopping = stop.load(Ordering::Relaxed);
                        let requests = receiver.requests();
                        for request in requests.get(next..).unwrap_or_default() {
                            let sent = decode(request)
                                .map(|export| runtime.block_on(sender.send(export)))
                                .unwrap_or(false);
                            let counter = if sent {
                                &stats.forwarded
                            } else {
                                &stats.failed
                            };
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        next = requests.len();
                        if stopping {
                            break;
                        }
                        std::thread::park_timeout(POLL_PERIOD);
                    }
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
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// The export request in a raw request body (kept decompressed by the
/// receiver); `None` for a malformed body, or a compressed message the
/// receiver could not gunzip.
pub fn decode(request: &RawRequest) -> Option<ExportTraceServiceRequest> {
    match request.transport {
        Transport::Grpc => {
            // One length-prefixed message: compression flag, 4-byte length.
            let (&[flag, a, b, c, d], message) = request.body.split_first_chunk::<5>()?;
            let length = usize::try_from(u32::from_be_bytes([a, b, c, d])).ok()?;
            if flag != 0 || message.len() < length {
                return None;
            }
            ExportTraceServiceRequest::decode(&message[..length]).ok()
        }
        Transport::HttpProtobuf => ExportTraceServiceRequest::decode(request.body.clone()).ok(),
        Transport::HttpJson => serde_json::from_slice(&request.body).ok(),
    }
}

/// Sends export requests to the user's collector.
struct Sender {
    settings: OtlpSettings,
    http: Option<reqwest::Client>,
}

impl Sender {
    fn new(settings: OtlpSettings) -> Sender {
        let http = match settings.protocol {
            Protocol::Grpc => None,
            Protocol::HttpProtobuf | Protocol::HttpJson => crate::client::http_client().ok(),
        };
        Sender { settings, http }
    }

    async fn send(&self, export: ExportTraceServiceRequest) -> bool {
        match self.settings.protocol {
            Protocol::Grpc => self.send_grpc(export).await,
            Protocol::HttpProtobuf => {
                self.send_http("application/x-protobuf", export.encode_to_vec())
                    .await
            }
            Protocol::HttpJson => match serde_json::to_vec(&export) {
                Ok(body) => self.send_http("application/json", body).await,
                Err(_) => false,
            },
        }
    }

    async fn send_grpc(&self, export: ExportTraceServiceRequest) -> bool {
        let Ok(endpoint) = tonic::transport::Endpoint::from_shared(self.settings.endpoint.clone())
        else {
            return false;
        };
        let endpoint = endpoint.timeout(self.settings.timeout);
        let Ok(channel) = endpoint.connect().await else {
            return false;
        };
        let mut request = tonic::Request::new(export);
        for (name, value) in &self.settings.headers {
            let key = tonic::metadata::MetadataKey::from_bytes(name.as_bytes());
            if let (Ok(key), Ok(value)) = (key, value.parse()) {
                request.metadata_mut().insert(key, value);
            }
        }
        TraceServiceClient::new(channel)
            .export(request)
            .await
            .is_ok()
    }

    async fn send_http(&self, content_type: &str, body: Vec<u8>) -> bool {
        let Some(client) = &self.http else {
            return false;
        };
        let mut request = client
            .post(&self.settings.endpoint)
            .timeout(self.settings.timeout)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        for (name, value) in &self.settings.headers {
            request = request.header(name, value);
        }
        request
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

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
