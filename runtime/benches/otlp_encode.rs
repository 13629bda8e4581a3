//! Encoding one export batch of 512 spans (the `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`
//! default) shaped like the stack's: our encoder, straight from the span
//! data, against `opentelemetry-proto`'s conversion to message structs
//! followed by prost's encoding, with and without the copy of the batch
//! that `opentelemetry-otlp` 0.33 makes before converting.
//!
//! ```text
//! cargo bench -p llmd-runtime --bench otlp_encode -- --warm-up-time 1 --measurement-time 3
//! ```

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use llmd_runtime::telemetry::otlp::Encoding;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prost::Message;
use std::borrow::Cow;
use std::hint::black_box;
use std::time::{Duration, SystemTime};

const BATCH: usize = 512;

fn batch() -> Vec<SpanData> {
    let scope = InstrumentationScope::builder("llmd-scheduler")
        .with_version("0.1.0")
        .build();
    let now = SystemTime::now();
    (0..BATCH as u64)
        .map(|index| SpanData {
            span_context: SpanContext::new(
                TraceId::from(u128::from(index) << 64 | 0xfeed),
                SpanId::from(index + 1),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::from(index + 1_000),
            parent_span_is_remote: index % 3 == 0,
            span_kind: SpanKind::Server,
            name: Cow::Borrowed("llm_d.scheduler.schedule"),
            start_time: now,
            end_time: now + Duration::from_micros(250),
            attributes: vec![
                KeyValue::new("gen_ai.request.model", "meta-llama/Llama-3.1-8B-Instruct"),
                KeyValue::new("llm_d.scheduler.decision", "decode_only"),
                KeyValue::new("llm_d.kv_cache.pod_count", 3_i64),
                KeyValue::new("llm_d.kv_cache.block_hit_ratio", 0.5),
                KeyValue::new("http.response.status_code", 200_i64),
            ],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope.clone(),
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let resource = Resource::builder()
        .with_service_name("llm-d-inference-scheduler")
        .build();
    let spans = batch();
    let mut group = c.benchmark_group("otlp_encode_512_spans");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("llmd_protobuf", |b| {
        let mut last_len = 0;
        b.iter(|| {
            let mut buf = Vec::with_capacity(last_len);
            Encoding::Protobuf.encode(&resource, black_box(&spans), &mut buf);
            last_len = buf.len();
            buf
        })
    });
    group.bench_function("llmd_json", |b| {
        b.iter(|| {
            let mut buf = Vec::new();
            Encoding::Json.encode(&resource, black_box(&spans), &mut buf);
            buf
        })
    });
    let attributes = ResourceAttributesWithSchema::from(&resource);
    group.bench_function("proto_structs_then_prost", |b| {
        b.iter_batched(
            || spans.clone(),
            |owned| {
                ExportTraceServiceRequest {
                    resource_spans: group_spans_by_resource_and_scope(owned, &attributes),
                }
                .encode_to_vec()
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("batch_copy_proto_structs_then_prost", |b| {
        b.iter(|| {
            ExportTraceServiceRequest {
                resource_spans: group_spans_by_resource_and_scope(
                    black_box(&spans).clone(),
                    &attributes,
                ),
            }
            .encode_to_vec()
        })
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
