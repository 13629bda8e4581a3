//! The encoders against the reference: `opentelemetry-proto`'s own
//! conversion of the same span data, compared after decoding.

use super::{Encoding, ScopeGroups};
use crate::telemetry::exporter::{Compression, OtlpSettings, Protocol};
use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prost::Message;
use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

fn context(trace: u128, span: u64, sampled: bool, remote: bool) -> SpanContext {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let state = TraceState::from_key_value([("vendor", "opaque")]).unwrap_or_default();
    SpanContext::new(
        TraceId::from(trace),
        SpanId::from(span),
        flags,
        remote,
        state,
    )
}

fn every_value_kind() -> Vec<KeyValue> {
    vec![
        KeyValue::new("gen_ai.request.model", "llama \"3\" \\ é\n"),
        KeyValue::new("llm_d.flag", false),
        KeyValue::new("gen_ai.usage.input_tokens", -7_i64),
        KeyValue::new("big", i64::MAX),
        KeyValue::new("llm_d.score", 0.0_f64),
        KeyValue::new("ratio", 1e-300_f64),
        KeyValue::new("empty", ""),
        // Lengths that take two-byte prefixes, in the value and around it.
        KeyValue::new("long", "x".repeat(200)),
        KeyValue::new("", "an empty key"),
        KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
        KeyValue::new("ints", Value::Array(Array::I64(vec![0, 1, -1]))),
        KeyValue::new("floats", Value::Array(Array::F64(vec![0.5, -2.0]))),
        KeyValue::new(
            "strings",
            Value::Array(Array::String(vec![
                StringValue::from("a"),
                StringValue::from(""),
            ])),
        ),
    ]
}

fn events(list: Vec<Event>, dropped: u32) -> SpanEvents {
    let mut events = SpanEvents::default();
    events.events = list;
    events.dropped_count = dropped;
    events
}

fn links(list: Vec<Link>, dropped: u32) -> SpanLinks {
    let mut links = SpanLinks::default();
    links.links = list;
    links.dropped_count = dropped;
    links
}

/// Spans covering every field: root and child, local and remote parents,
/// every kind and status, events, links, dropped counts, long names (for
/// multi-byte length prefixes) and two instrumentation scopes.
fn spans() -> Vec<SpanData> {
    let gateway = InstrumentationScope::builder("llmd-scheduler")
        .with_version("0.1.0")
        .with_schema_url("https://opentelemetry.io/schemas/1.37.0")
        .with_attributes([KeyValue::new("scope.attr", 1_i64)])
        .build();
    let proxy = InstrumentationScope::builder("llmd-pd-proxy").build();
    let start = UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789);
    let kinds = [
        SpanKind::Server,
        SpanKind::Internal,
        SpanKind::Client,
        SpanKind::Producer,
        SpanKind::Consumer,
    ];
    let statuses = [
        Status::Unset,
        Status::Ok,
        Status::error("upstream unreachable"),
    ];
    (0..10_u64)
        .map(|index| {
            let mut attributes = every_value_kind();
            attributes.push(KeyValue::new("llm_d.index", index as i64));
            SpanData {
                span_context: context(0xabc + u128::from(index % 2), 1 + index, index != 3, false),
                parent_span_id: if index == 0 {
                    SpanId::INVALID
                } else {
                    SpanId::from(index)
                },
                parent_span_is_remote: index == 1,
                span_kind: kinds[index as usize % kinds.len()].clone(),
                name: if index == 4 {
                    Cow::Owned("llm_d.".repeat(40))
                } else {
                    Cow::Borrowed("llm_d.gateway.request")
                },
                start_time: start + Duration::from_micros(index),
                end_time: start + Duration::from_millis(1 + index),
                attributes,
                dropped_attributes_count: (index % 3) as u32,
                events: events(
                    if index % 2 == 0 {
                        vec![Event::new(
                            "llm_d.kv_cache.lookup",
                            start,
                            vec![KeyValue::new("llm_d.kv_cache.blocks", 12_i64)],
                            1,
                        )]
                    } else {
                        Vec::new()
                    },
                    (index % 2) as u32,
                ),
                links: links(
                    if index == 5 {
                        vec![Link::new(
                            context(0xdef, 77, true, true),
                            vec![KeyValue::new("link.kind", "follows")],
                            2,
                        )]
                    } else {
                        Vec::new()
                    },
                    u32::from(index == 6),
                ),
                status: statuses[index as usize % statuses.len()].clone(),
                instrumentation_scope: if index % 4 == 2 {
                    proxy.clone()
                } else {
                    gateway.clone()
                },
            }
        })
        .collect()
}

fn resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("llm-d-gateway")
        .with_attributes([
            KeyValue::new("deployment.environment", "test"),
            KeyValue::new("host.cores", 2_i64),
        ])
        .with_schema_url(
            [KeyValue::new("k8s.pod.name", "decode-0")],
            "https://opentelemetry.io/schemas/1.36.0",
        )
        .build()
}

/// What `opentelemetry-proto` itself makes of the same spans.
fn reference(resource: &Resource, spans: Vec<SpanData>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(
            spans,
            &ResourceAttributesWithSchema::from(resource),
        ),
    }
}

fn encoded(encoding: Encoding, resource: &Resource, spans: &[SpanData]) -> Vec<u8> {
    let mut buf = Vec::new();
    encoding.encode(resource, spans, &mut buf);
    buf
}

#[test]
fn protobuf_decodes_to_the_reference_conversion() {
    let resource = resource();
    let spans = spans();
    let ours = encoded(Encoding::Protobuf, &resource, &spans);
    let decoded = ExportTraceServiceRequest::decode(ours.as_slice());
    assert_eq!(decoded.ok(), Some(reference(&resource, spans)));
}

#[test]
fn protobuf_bytes_equal_the_reference_encoding() {
    // Same field order and the same defaults left out: byte for byte what
    // prost writes for the reference messages.
    let resource = Resource::builder_empty()
        .with_service_name("llm-d-pd-proxy")
        .build();
    let spans = spans();
    let ours = encoded(Encoding::Protobuf, &resource, &spans);
    assert_eq!(ours, reference(&resource, spans).encode_to_vec());
}

#[test]
fn json_decodes_to_the_reference_conversion() {
    let resource = resource();
    let spans = spans();
    let ours = encoded(Encoding::Json, &resource, &spans);
    let decoded: Result<ExportTraceServiceRequest, _> = serde_json::from_slice(&ours);
    assert_eq!(
        decoded.map_err(|error| error.to_string()),
        Ok(reference(&resource, spans)),
        "{}",
        String::from_utf8_lossy(&ours)
    );
}

#[test]
fn json_uses_hex_ids_string_int64s_and_numeric_enums() {
    let resource = Resource::builder_empty().build();
    let spans = spans();
    let text = String::from_utf8(encoded(Encoding::Json, &resource, &spans[..1]));
    let text = text.unwrap_or_default();
    assert!(
        text.contains(r#""traceId":"00000000000000000000000000000abc""#),
        "{text}"
    );
    assert!(text.contains(r#""spanId":"0000000000000001""#), "{text}");
    assert!(
        text.contains(r#""startTimeUnixNano":"1764000000123456789""#),
        "{text}"
    );
    assert!(text.contains(r#""intValue":"-7""#), "{text}");
    assert!(text.contains(r#""kind":2"#), "{text}");
    assert!(
        !text.contains("parentSpanId"),
        "a root has no parent: {text}"
    );
}

#[test]
fn spans_are_grouped_by_scope_in_order_of_first_appearance() {
    let spans = spans();
    let groups: Vec<(String, usize)> = ScopeGroups::new(&spans)
        .into_iter()
        .map(|(scope, members)| (scope.name().to_owned(), members.len()))
        .collect();
    assert_eq!(
        groups,
        [
            ("llmd-scheduler".to_owned(), 8),
            ("llmd-pd-proxy".to_owned(), 2)
        ]
    );
}

#[test]
fn scopes_are_told_apart_by_content_whether_or_not_they_are_copies() {
    let scope = |name: String, version: &'static str, attributes: Vec<KeyValue>| {
        InstrumentationScope::builder(name)
            .with_version(version)
            .with_attributes(attributes)
            .build()
    };
    let tracers = InstrumentationScope::builder("llmd-runtime")
        .with_version("0.1.0")
        .build();
    // Copies of one tracer's scope: the same static text.
    assert!(super::same_scope(&tracers, &tracers.clone()));
    // Equal scopes made apart: compared in full.
    assert!(super::same_scope(
        &tracers,
        &scope("llmd-runtime".to_owned(), "0.1.0", Vec::new())
    ));
    let with_attribute = || vec![KeyValue::new("k", "v")];
    assert!(super::same_scope(
        &scope("a".to_owned(), "1", with_attribute()),
        &scope("a".to_owned(), "1", with_attribute())
    ));
    // Any difference separates them.
    assert!(!super::same_scope(
        &tracers,
        &scope("llmd-runtime".to_owned(), "0.2.0", Vec::new())
    ));
    assert!(!super::same_scope(
        &tracers,
        &scope("llmd-other".to_owned(), "0.1.0", Vec::new())
    ));
    let named = scope("a".to_owned(), "1", Vec::new());
    assert!(!super::same_scope(
        &named,
        &scope("a".to_owned(), "1", with_attribute())
    ));
    assert!(!super::same_scope(
        &scope("a".to_owned(), "1", with_attribute()),
        &named
    ));
}

#[test]
fn backoff_doubles_up_to_the_cap_plus_jitter_unless_the_collector_asks() {
    for (retries, base) in [(0, 100), (1, 200), (2, 400), (5, 1600), (40, 1600)] {
        let pause = super::backoff(retries, None);
        let base = Duration::from_millis(base);
        assert!(
            pause >= base && pause <= base + super::MAX_JITTER,
            "{retries}: {pause:?}"
        );
    }
    assert_eq!(
        super::backoff(0, Some(Duration::from_secs(7))),
        Duration::from_secs(7)
    );
}

#[test]
fn every_protocol_builds_an_exporter_including_grpc_over_tls() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _entered = runtime.enter();
    for (protocol, endpoint) in [
        (Protocol::Grpc, "http://127.0.0.1:4317"),
        (Protocol::Grpc, "https://collector.example:4317"),
        (
            Protocol::HttpProtobuf,
            "https://collector.example/v1/traces",
        ),
        (Protocol::HttpJson, "http://127.0.0.1:4318/v1/traces"),
    ] {
        let settings = OtlpSettings {
            protocol,
            endpoint: endpoint.to_owned(),
            headers: vec![("authorization".to_owned(), "Bearer t".to_owned())],
            timeout: Duration::from_secs(1),
            compression: Compression::None,
            tls: Default::default(),
        };
        let built = super::OtlpExporter::new(&settings);
        assert!(built.is_ok(), "{protocol} {endpoint}: {:?}", built.err());
    }
}

#[test]
fn configured_headers_become_request_headers() {
    let settings = OtlpSettings {
        protocol: Protocol::Grpc,
        endpoint: "http://127.0.0.1:4317".to_owned(),
        headers: vec![
            ("authorization".to_owned(), "Bearer t".to_owned()),
            ("x-tenant".to_owned(), "a".to_owned()),
        ],
        timeout: Duration::from_secs(1),
        compression: Compression::None,
        tls: Default::default(),
    };
    let headers = settings.header_map();
    assert_eq!(headers.len(), 2);
    assert_eq!(
        headers.get("authorization").map(|v| v.as_bytes()),
        Some(&b"Bearer t"[..])
    );
    assert_eq!(
        headers.get("x-tenant").map(|v| v.as_bytes()),
        Some(&b"a"[..])
    );
}

/// Exports `spans` under `resource` with an exporter built for
/// `settings` in a runtime of its own; why it failed, if it did.
pub(super) fn export_with(
    settings: &OtlpSettings,
    resource: &Resource,
    spans: Vec<SpanData>,
) -> Result<(), String> {
    use opentelemetry_sdk::trace::SpanExporter as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _entered = runtime.enter();
    let mut exporter = super::OtlpExporter::new(settings)?;
    exporter.set_resource(resource);
    runtime
        .block_on(exporter.export(spans))
        .map_err(|error| error.to_string())
}

/// Exports [`spans`] under [`resource`] over `protocol` with `compression`
/// to `receiver`, which must take it.
fn export_to(
    receiver: &crate::testing::otlp_receiver::OtlpReceiver,
    protocol: Protocol,
    compression: Compression,
) {
    let settings = OtlpSettings {
        protocol,
        endpoint: receiver.traces_endpoint(protocol),
        headers: Vec::new(),
        timeout: Duration::from_secs(60),
        compression,
        tls: Default::default(),
    };
    let exported = export_with(&settings, &resource(), spans());
    assert_eq!(exported, Ok(()), "{protocol}");
}

/// Exports [`spans`] over `protocol` with gzip compression to a test
/// receiver; checks that they arrive as the reference conversion and that
/// the request came compressed.
fn exports_gzipped(protocol: Protocol) {
    use crate::testing::otlp_receiver::{OtlpReceiver, Transport};
    let receiver = OtlpReceiver::start().expect("a receiver");
    let transport = match protocol {
        Protocol::Grpc => Transport::Grpc,
        Protocol::HttpProtobuf => Transport::HttpProtobuf,
        Protocol::HttpJson => Transport::HttpJson,
    };
    export_to(&receiver, protocol, Compression::Gzip);

    let expected: Vec<_> = reference(&resource(), spans())
        .resource_spans
        .into_iter()
        .flat_map(|resource_spans| resource_spans.scope_spans)
        .flat_map(|scope_spans| scope_spans.spans)
        .collect();
    let received = receiver.spans();
    assert!(received.iter().all(|span| span.transport == transport));
    let received: Vec<_> = received.into_iter().map(|span| span.span).collect();
    assert_eq!(received, expected, "{protocol}");

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{protocol}");
    let request = &requests[0];
    assert_eq!(request.encoding.as_deref(), Some("gzip"), "{protocol}");
    assert!(
        request.wire_len < request.body.len(),
        "{protocol}: {} bytes on the wire for {} decompressed",
        request.wire_len,
        request.body.len()
    );
    assert!(receiver.raw_bytes_contain(b"llm_d.kv_cache.lookup"));
}

#[test]
fn gzip_grpc_exports_arrive_compressed_and_decode_to_the_reference() {
    exports_gzipped(Protocol::Grpc);
}

#[test]
fn gzip_http_protobuf_exports_arrive_compressed_and_decode_to_the_reference() {
    exports_gzipped(Protocol::HttpProtobuf);
}

#[test]
fn gzip_http_json_exports_arrive_compressed_and_decode_to_the_reference() {
    exports_gzipped(Protocol::HttpJson);
}

#[test]
fn an_uncompressed_export_says_no_encoding() {
    let receiver = crate::testing::otlp_receiver::OtlpReceiver::start().expect("a receiver");
    export_to(&receiver, Protocol::HttpProtobuf, Compression::None);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].encoding, None);
    assert_eq!(requests[0].wire_len, requests[0].body.len());
}
