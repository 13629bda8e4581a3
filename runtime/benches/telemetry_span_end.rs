//! What ending a sampled span costs on the request path with the export
//! pipeline `telemetry::init_with` builds: no exporter (the SDK's own
//! recording cost), our bounded batch processor exporting over gRPC to a
//! real receiver, the same processor with its queue full (every span
//! dropped and counted), and the SDK's BatchSpanProcessor to the same
//! receiver for comparison.

use criterion::{Criterion, criterion_group, criterion_main};
use llmd_runtime::span::{self, SpanMeta};
use llmd_runtime::state::{self, UnsampledParent};
use llmd_runtime::telemetry::{
    self, Compression, OtlpExporter, OtlpSettings, Protocol, TelemetryConfig,
};
use llmd_runtime::testing::otlp_receiver::OtlpReceiver;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static SPAN: SpanMeta = SpanMeta::new("llm_d.bench.span", SpanKind::Internal);

fn start_and_end() {
    span::start(&SPAN, None, || {
        [
            KeyValue::new("gen_ai.request.model", "bench-model"),
            KeyValue::new("llm_d.kv_cache.pod_count", 3_i64),
            KeyValue::new("llm_d.kv_cache.block_hit_ratio", 0.5),
        ]
    })
    .end();
}

fn config(pairs: &[(&str, &str)]) -> TelemetryConfig {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TelemetryConfig::from_lookup("llmd-bench", move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
}

/// Accepts connections and never answers.
fn black_hole() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().flatten().collect();
        drop(held);
    });
    port
}

/// Counts what the SDK's processor exported, for comparison.
#[derive(Debug)]
struct Counting<E> {
    inner: E,
    exported: Arc<AtomicU64>,
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let count = batch.len() as u64;
        let result = self.inner.export(batch).await;
        if result.is_ok() {
            self.exported.fetch_add(count, Ordering::Relaxed);
        }
        result
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

fn span_end(c: &mut Criterion) {
    let receiver = OtlpReceiver::start().expect("receiver");
    let grpc = receiver.grpc_endpoint();
    let mut group = c.benchmark_group("span_end");

    let guard = telemetry::init_with(config(&[
        ("OTEL_TRACES_SAMPLER", "always_on"),
        ("OTEL_TRACES_EXPORTER", "none"),
    ]));
    group.bench_function("no_exporter", |b| b.iter(start_and_end));
    drop(guard);

    let guard = telemetry::init_with(config(&[
        ("OTEL_TRACES_SAMPLER", "always_on"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &grpc),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]));
    group.bench_function("bounded_batch_grpc_receiver", |b| b.iter(start_and_end));
    eprintln!("bounded_batch_grpc_receiver: {:?}", guard.stats());
    drop(guard);

    let black_hole = format!("http://127.0.0.1:{}", black_hole());
    let guard = telemetry::init_with(config(&[
        ("OTEL_TRACES_SAMPLER", "always_on"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &black_hole),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "600000"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "600000"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "8"),
    ]));
    group.bench_function("bounded_batch_full_queue", |b| b.iter(start_and_end));
    eprintln!("bounded_batch_full_queue: {:?}", guard.stats());
    let _ = guard.shutdown_with_timeout(Duration::from_millis(100));

    let exporter = {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let _entered = runtime.enter();
        let exporter = OtlpExporter::new(&OtlpSettings {
            protocol: Protocol::Grpc,
            endpoint: grpc,
            headers: Vec::new(),
            timeout: telemetry::DEFAULT_OTLP_TIMEOUT,
            compression: Compression::None,
            tls: Default::default(),
        })
        .expect("exporter");
        std::mem::forget(runtime);
        exporter
    };
    let exported = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: exporter,
        exported: exported.clone(),
    };
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOn)
        .with_span_processor(BatchSpanProcessor::builder(counting).build())
        .build();
    state::install(provider.tracer("bench"), UnsampledParent::Ignored);
    group.bench_function("sdk_batch_grpc_receiver", |b| b.iter(start_and_end));
    state::uninstall();
    let _ = provider.shutdown();
    eprintln!(
        "sdk_batch_grpc_receiver: exported {}",
        exported.load(Ordering::Relaxed)
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = span_end
}
criterion_main!(benches);
