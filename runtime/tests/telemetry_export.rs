//! `telemetry::init_with` end to end: real OTLP export over gRPC and HTTP
//! (protobuf and JSON), plain and gzip-compressed, to a real receiver, dead
//! and black-holed collectors, shutdown inside a current-thread runtime,
//! and `OTEL_SDK_DISABLED`.
//!
//! Telemetry is process-wide, so these tests run one at a time.

use llmd_runtime::span::{self, SpanMeta, Started};
use llmd_runtime::state;
use llmd_runtime::telemetry::{self, TelemetryConfig, TelemetryError};
use llmd_runtime::testing::otlp_receiver::{OtlpReceiver, ReceivedSpan, Transport};
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, TraceContextExt};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Mutex, MutexGuard, PoisonError, mpsc};
use std::time::Duration;

static PARENT: SpanMeta = SpanMeta::new("llm_d.test.export.parent", SpanKind::Server);
static CHILD: SpanMeta = SpanMeta::new("llm_d.test.export.child", SpanKind::Internal);

/// A generous bound for waits; never an assertion about speed.
const PATIENCE: Duration = Duration::from_secs(60);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

fn config(pairs: &[(&str, &str)]) -> TelemetryConfig {
    let env: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config =
        TelemetryConfig::from_lookup("llmd-export-test", move |name| env.get(name).cloned());
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    config
}

/// Ends a parent span with a child; returns their (trace id, parent span
/// id, child span id) as hex.
fn parent_and_child() -> (String, String, String) {
    let parent = span::start(&PARENT, None, || {
        [KeyValue::new("gen_ai.request.model", "test-model")]
    });
    assert!(parent.is_recording());
    let parent_cx = parent
        .context()
        .cloned()
        .expect("a recorded span has a context");
    let parent_span = parent_cx.span().span_context().clone();
    let _entered = parent.enter();
    let child = span::start(&CHILD, None, || {
        [KeyValue::new("llm_d.kv_cache.pod_count", 3_i64)]
    });
    let child_id = child
        .context()
        .map(|cx| cx.span().span_context().span_id())
        .expect("a recorded child has a context");
    child.end();
    (
        parent_span.trace_id().to_string(),
        parent_span.span_id().to_string(),
        child_id.to_string(),
    )
}

fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found: Vec<_> = spans.iter().filter(|s| s.name() == name).collect();
    assert_eq!(found.len(), 1, "spans named {name} in {spans:?}");
    found[0]
}

/// Exports a parent and a child through `pairs` and checks what arrived.
fn exports_through(receiver: &OtlpReceiver, pairs: &[(&str, &str)], transport: Transport) {
    let guard = telemetry::init_with(config(pairs));
    assert!(guard.is_enabled());
    let (trace_id, parent_id, child_id) = parent_and_child();
    guard.force_flush().expect("flush");
    let spans = receiver.wait_for_spans(2, PATIENCE);
    assert_eq!(spans.len(), 2, "{spans:?}");

    let parent = one(&spans, "llm_d.test.export.parent");
    let child = one(&spans, "llm_d.test.export.child");
    for span in [parent, child] {
        assert_eq!(span.transport, transport);
        assert_eq!(span.service_name.as_deref(), Some("svc-under-test"));
        assert_eq!(span.trace_id(), trace_id);
    }
    assert_eq!(parent.span_id(), parent_id);
    assert_eq!(parent.parent_span_id(), "");
    assert_eq!(child.span_id(), child_id);
    assert_eq!(child.parent_span_id(), parent_id);
    assert_eq!(
        parent.string_attribute("gen_ai.request.model"),
        Some("test-model")
    );
    assert_eq!(
        child.attribute("llm_d.kv_cache.pod_count"),
        Some(&Value::IntValue(3))
    );
    assert!(receiver.raw_bytes_contain(b"llm_d.test.export.child"));
    assert!(!receiver.raw_bytes_contain(b"never-sent-marker"));

    let stats = guard.stats();
    assert_eq!((stats.exported, stats.dropped, stats.failed), (2, 0, 0));
    assert_eq!(telemetry::stats(), stats);
    guard.shutdown().expect("clean shutdown");
    assert!(!state::enabled());
}

#[test]
fn exports_over_grpc() {
    let _serial = serial();
    let receiver = OtlpReceiver::start().expect("receiver");
    let endpoint = receiver.grpc_endpoint();
    exports_through(
        &receiver,
        &[
            ("OTEL_SERVICE_NAME", "svc-under-test"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ],
        Transport::Grpc,
    );
}

#[test]
fn exports_over_http_protobuf_to_the_generic_endpoint() {
    let _serial = serial();
    let receiver = OtlpReceiver::start().expect("receiver");
    let endpoint = receiver.http_endpoint();
    exports_through(
        &receiver,
        &[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=svc-under-test"),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-test=1"),
        ],
        Transport::HttpProtobuf,
    );
}

#[test]
fn exports_over_http_json_to_the_traces_endpoint() {
    let _serial = serial();
    let receiver = OtlpReceiver::start().expect("receiver");
    let endpoint = receiver.http_traces_url();
    exports_through(
        &receiver,
        &[
            ("OTEL_SERVICE_NAME", "svc-under-test"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
        ],
        Transport::HttpJson,
    );
}

#[test]
fn gzip_exports_over_every_transport_arrive_decoded() {
    let _serial = serial();
    for (protocol, transport) in [
        ("grpc", Transport::Grpc),
        ("http/protobuf", Transport::HttpProtobuf),
        ("http/json", Transport::HttpJson),
    ] {
        let receiver = OtlpReceiver::start().expect("receiver");
        let endpoint = match transport {
            Transport::Grpc => receiver.grpc_endpoint(),
            Transport::HttpProtobuf | Transport::HttpJson => receiver.http_endpoint(),
        };
        exports_through(
            &receiver,
            &[
                ("OTEL_SERVICE_NAME", "svc-under-test"),
                ("OTEL_TRACES_SAMPLER", "always_on"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ],
            transport,
        );
        let requests = receiver.requests();
        assert!(!requests.is_empty(), "{protocol}");
        for request in requests {
            assert_eq!(request.encoding.as_deref(), Some("gzip"), "{protocol}");
        }
    }
}

#[test]
fn a_counting_receiver_counts_every_transport_without_keeping_spans() {
    let _serial = serial();
    let receiver = OtlpReceiver::start_counting().expect("receiver");
    let (grpc, http, traces) = (
        receiver.grpc_endpoint(),
        receiver.http_endpoint(),
        receiver.http_traces_url(),
    );
    let transports: [&[(&str, &str)]; 3] = [
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &grpc)],
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &http),
        ],
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces),
        ],
    ];
    for (round, transport) in transports.into_iter().enumerate() {
        let mut pairs = vec![("OTEL_TRACES_SAMPLER", "always_on")];
        pairs.extend_from_slice(transport);
        let guard = telemetry::init_with(config(&pairs));
        parent_and_child();
        guard.force_flush().expect("flush");
        let expected = 2 * (round + 1);
        assert_eq!(receiver.wait_for_span_count(expected, PATIENCE), expected);
        let stats = guard.stats();
        assert_eq!((stats.exported, stats.dropped, stats.failed), (2, 0, 0));
        guard.shutdown().expect("clean shutdown");
    }
    assert!(receiver.spans().is_empty());
    assert!(receiver.requests().is_empty());
}

#[test]
fn sdk_disabled_installs_nothing() {
    let _serial = serial();
    state::uninstall();
    let guard = telemetry::init_with(config(&[
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_TRACES_SAMPLER", "always_on"),
    ]));
    assert!(!guard.is_enabled());
    assert!(!state::enabled());
    let started = span::start(&PARENT, None, || -> [KeyValue; 0] {
        panic!("attributes must not be evaluated when telemetry is disabled")
    });
    assert!(matches!(started, Started::Skipped));
    assert_eq!(guard.stats(), telemetry::ExportStats::default());
    guard.shutdown().expect("nothing to shut down");
}

#[test]
fn exporter_none_samples_but_exports_nothing() {
    let _serial = serial();
    let guard = telemetry::init_with(config(&[
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_TRACES_SAMPLER", "always_on"),
    ]));
    assert!(guard.is_enabled());
    let started = span::start(&PARENT, None, || [KeyValue::new("k", 1_i64)]);
    assert!(started.is_recording());
    started.end();
    guard.force_flush().expect("nothing to flush");
    assert_eq!(guard.stats(), telemetry::ExportStats::default());
    guard.shutdown().expect("clean shutdown");
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

#[test]
fn unreachable_collector_fails_batches_and_warns_once() {
    let _serial = serial();
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let guard = telemetry::init_with(config(&[
        ("OTEL_TRACES_SAMPLER", "always_on"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1"),
    ]));
    for _ in 0..3 {
        span::start(&PARENT, None, || [KeyValue::new("k", 1_i64)]).end();
        guard
            .force_flush()
            .expect("flush returns even when export fails");
    }
    let stats = guard.stats();
    assert_eq!((stats.exported, stats.failed), (0, 3), "{stats:?}");
    let export_warnings: Vec<_> = guard
        .warnings()
        .into_iter()
        .filter(|w| w.subject == telemetry::EXPORT_WARNING)
        .collect();
    assert_eq!(export_warnings.len(), 1, "{export_warnings:?}");
    assert_eq!(export_warnings[0].value, endpoint);
    guard.shutdown().expect("shutdown after failures");
}

/// Accepts connections and never answers (a black-holed collector).
fn black_hole() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in listener.incoming().flatten() {
            let mut first = [0_u8; 1];
            let _ = stream.read(&mut first);
            held.push(stream);
        }
    });
    port
}

#[test]
fn black_holed_collector_drops_and_counts_instead_of_blocking() {
    let _serial = serial();
    const QUEUE: u64 = 16;
    const BATCH: u64 = 4;
    const SPANS: u64 = 2000;
    let endpoint = format!("http://127.0.0.1:{}", black_hole());
    let guard = telemetry::init_with(config(&[
        ("OTEL_TRACES_SAMPLER", "always_on"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "600000"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "600000"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", &QUEUE.to_string()),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &BATCH.to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "1"),
    ]));
    for _ in 0..SPANS {
        span::start(&PARENT, None, || [KeyValue::new("k", 1_i64)]).end();
    }
    // The first batch is stuck in an export that never ends: at most the
    // queue and that batch hold spans, the rest were dropped and counted.
    let stats = guard.stats();
    assert!(
        stats.dropped >= SPANS - QUEUE - BATCH,
        "only {} of {SPANS} spans dropped: the queue is not bounded ({stats:?})",
        stats.dropped
    );
    assert_eq!(stats.exported, 0);
    let shutdown = guard.shutdown_with_timeout(Duration::from_millis(200));
    assert_eq!(
        shutdown,
        Err(TelemetryError::Timeout(Duration::from_millis(200)))
    );
}

#[test]
fn dropping_the_guard_inside_a_current_thread_runtime_flushes_without_deadlock() {
    let _serial = serial();
    let receiver = OtlpReceiver::start().expect("receiver");
    let endpoint = receiver.grpc_endpoint();
    let config = config(&[
        ("OTEL_SERVICE_NAME", "svc-under-test"),
        ("OTEL_TRACES_SAMPLER", "always_on"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
    ]);
    on_current_thread_runtime("dropping the guard", async {
        let guard = telemetry::init_with(config);
        let started = span::start(&PARENT, None, || [KeyValue::new("k", 1_i64)]);
        started.instrument(tokio::task::yield_now()).await;
        drop(guard);
    });
    let spans = receiver.wait_for_spans(1, PATIENCE);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name(), "llm_d.test.export.parent");
}

#[test]
fn shutdown_inside_a_current_thread_runtime_returns() {
    let _serial = serial();
    let receiver = OtlpReceiver::start().expect("receiver");
    let endpoint = receiver.http_endpoint();
    let config = config(&[
        ("OTEL_TRACES_SAMPLER", "always_on"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
    ]);
    let result = on_current_thread_runtime("shutdown", async {
        let guard = telemetry::init_with(config);
        span::start(&PARENT, None, || [KeyValue::new("k", 1_i64)]).end();
        guard.shutdown()
    });
    assert_eq!(result, Ok(()));
    assert_eq!(receiver.wait_for_spans(1, PATIENCE).len(), 1);
}

#[test]
fn otel_propagators_drive_our_headers_and_the_global_propagator() {
    let _serial = serial();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "traceparent",
        http::HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    );
    headers.insert("baggage", http::HeaderValue::from_static("tenant=a"));
    let global_fields = || {
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.fields().map(str::to_owned).collect::<Vec<_>>()
        })
    };

    let guard = telemetry::init_with(config(&[("OTEL_PROPAGATORS", "baggage")]));
    let extracted = llmd_runtime::propagation::extract(&headers);
    assert!(!extracted.span().span_context().is_valid());
    assert_eq!(global_fields(), ["baggage"]);
    guard.shutdown().expect("clean shutdown");

    let guard = telemetry::init_with(config(&[]));
    let extracted = llmd_runtime::propagation::extract(&headers);
    assert_eq!(
        extracted.span().span_context().trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    let fields = global_fields();
    assert!(fields.iter().any(|f| f == "traceparent"), "{fields:?}");
    assert!(fields.iter().any(|f| f == "baggage"), "{fields:?}");
    guard.shutdown().expect("clean shutdown");
}

/// Runs `work` on a current-thread tokio runtime in its own thread and
/// returns its output; fails the test if it has not returned within
/// `PATIENCE` (a deadlock).
fn on_current_thread_runtime<T: Send + 'static>(
    what: &str,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _ = done.send(runtime.block_on(work));
    });
    finished
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("{what} inside a current-thread runtime did not return"))
}

/// An OTLP/HTTP collector that answers the first request with 503 and a
/// `Retry-After` of 0 s, then accepts; returns its traces URL and the
/// span count of every request it saw, in order.
fn unavailable_once() -> (String, std::sync::Arc<Mutex<Vec<usize>>>) {
    use llmd_runtime::testing::otlp_receiver::span_count_of;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let url = format!(
        "http://{}/v1/traces",
        listener.local_addr().expect("address")
    );
    let handler_seen = seen.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/traces",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let seen = handler_seen.clone();
                    async move {
                        let spans = ExportTraceServiceRequest::decode(body)
                            .map(|request| span_count_of(&request))
                            .unwrap_or(0);
                        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                        seen.push(spans);
                        if seen.len() == 1 {
                            (
                                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                [("retry-after", "0")],
                            )
                        } else {
                            (axum::http::StatusCode::OK, [("retry-after", "0")])
                        }
                    }
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = axum::serve(listener, app).await;
        });
    });
    (url, seen)
}

#[test]
fn a_transient_collector_failure_is_retried_and_nothing_is_lost() {
    let _serial = serial();
    let (url, seen) = unavailable_once();
    let guard = telemetry::init_with(config(&[
        ("OTEL_TRACES_SAMPLER", "always_on"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &url),
    ]));
    parent_and_child();
    guard.force_flush().expect("flush");
    let stats = guard.stats();
    assert_eq!((stats.exported, stats.failed), (2, 0), "{stats:?}");
    assert_eq!(
        *seen.lock().unwrap_or_else(PoisonError::into_inner),
        [2, 2],
        "the same two spans, sent again after the 503"
    );
    guard.shutdown().expect("clean shutdown");
}
