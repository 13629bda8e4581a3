//! Cost of one span with three attributes, in three cases, for
//! `#[traced_span]`, the equivalent hand-written OpenTelemetry SDK code,
//! `tracing` + `tracing-opentelemetry`, and fastrace:
//!
//! - `sampled`: the parent is sampled, so the span is recorded;
//! - `unsampled_parent`: the parent is valid but not sampled, under a
//!   parent-based sampler (the context still propagates);
//! - `disabled`: no telemetry installed.
//!
//! Spans are exported to a processor that drops them, so export costs
//! nothing. Run briefly:
//! `cargo bench -p llmd-macros --bench span_cost -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, criterion_group, criterion_main};
use llmd_runtime::state::{self, UnsampledParent};
use llmd_runtime::testing::DiscardSpans;
use llmd_runtime::{Context, traced_span};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, Tracer,
    TracerProvider as _,
};
use opentelemetry::{ContextGuard, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use std::borrow::Cow;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tracing_subscriber::layer::SubscriberExt;

const NAME: &str = "llm_d.kv_cache.get_scores";
const MODEL: &str = "meta-llama/Llama-3.1-8B";

#[traced_span(
    "llm_d.kv_cache.get_scores",
    attrs(
        gen_ai.request.model = model,
        llm_d.kv_cache.pod_count = pods,
        llm_d.kv_cache.block_hit_ratio = ratio,
    )
)]
fn with_macro(model: &'static str, pods: usize, ratio: f64) -> usize {
    black_box(pods)
}

fn with_sdk<T: Tracer>(tracer: &T, model: &'static str, pods: usize, ratio: f64) -> usize
where
    T::Span: Send + Sync + 'static,
{
    let parent = Context::current();
    let span = tracer
        .span_builder(NAME)
        .with_kind(SpanKind::Internal)
        .with_attributes(vec![
            KeyValue::new("gen_ai.request.model", model),
            KeyValue::new("llm_d.kv_cache.pod_count", pods as i64),
            KeyValue::new("llm_d.kv_cache.block_hit_ratio", ratio),
        ])
        .start_with_context(tracer, &parent);
    let _guard = parent.with_span(span).attach();
    let out = black_box(pods);
    opentelemetry::trace::get_active_span(|span| span.end());
    out
}

#[tracing::instrument(
    name = "llm_d.kv_cache.get_scores",
    skip_all,
    fields(gen_ai.request.model = model, llm_d.kv_cache.pod_count = pods, llm_d.kv_cache.block_hit_ratio = ratio)
)]
fn with_tracing(model: &'static str, pods: usize, ratio: f64) -> usize {
    black_box(pods)
}

fn with_fastrace(model: &'static str, pods: usize, ratio: f64) -> usize {
    let _span = fastrace::local::LocalSpan::enter_with_local_parent(NAME).with_properties(|| {
        [
            ("gen_ai.request.model", Cow::Borrowed(model)),
            ("llm_d.kv_cache.pod_count", Cow::Owned(pods.to_string())),
            (
                "llm_d.kv_cache.block_hit_ratio",
                Cow::Owned(ratio.to_string()),
            ),
        ]
    });
    black_box(pods)
}

struct DropReports;

impl fastrace::collector::Reporter for DropReports {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        black_box(spans);
    }
}

#[derive(Clone, Copy)]
enum Case {
    Sampled,
    UnsampledParent,
    Disabled,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Sampled => "sampled",
            Case::UnsampledParent => "unsampled_parent",
            Case::Disabled => "disabled",
        }
    }

    fn parent(self) -> Context {
        let flags = match self {
            Case::Sampled => TraceFlags::SAMPLED,
            _ => TraceFlags::default(),
        };
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(0x5eed_u128),
            SpanId::from(0x1_u64),
            flags,
            true,
            Default::default(),
        ))
    }
}

fn tracer() -> (SdkTracerProvider, SdkTracer) {
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_span_processor(DiscardSpans)
        .build();
    let tracer = provider.tracer("bench");
    (provider, tracer)
}

/// Runs `f` `iters` times under a fastrace root span made local parent,
/// starting a new root every 256 spans as a real request would.
fn fastrace_loop(case: Case, iters: u64) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let batch = left.min(256);
        left -= batch;
        let root = match case {
            Case::Sampled => Some(fastrace::Span::root(
                "root",
                fastrace::collector::SpanContext::random(),
            )),
            Case::UnsampledParent => Some(fastrace::Span::root(
                "root",
                fastrace::collector::SpanContext::random().sampled(false),
            )),
            Case::Disabled => None,
        };
        let guard = root.as_ref().map(fastrace::Span::set_local_parent);
        let start = Instant::now();
        for _ in 0..batch {
            black_box(with_fastrace(MODEL, 3, 0.5));
        }
        elapsed += start.elapsed();
        drop(guard);
    }
    elapsed
}

fn span_cost(c: &mut Criterion) {
    fastrace::set_reporter(DropReports, fastrace::collector::Config::default());
    for case in [Case::Sampled, Case::UnsampledParent, Case::Disabled] {
        let mut group = c.benchmark_group(format!("span_cost/{}", case.name()));
        let (provider, sdk_tracer) = tracer();
        let parent_guard: Option<ContextGuard> = match case {
            Case::Disabled => None,
            _ => Some(case.parent().attach()),
        };

        match case {
            Case::Disabled => state::uninstall(),
            _ => state::install(sdk_tracer.clone(), UnsampledParent::Respected),
        }
        group.bench_function("llmd_macro", |b| {
            b.iter(|| with_macro(black_box(MODEL), 3, 0.5))
        });
        state::uninstall();

        match case {
            Case::Disabled => {
                let noop = opentelemetry::trace::noop::NoopTracerProvider::new().tracer("bench");
                group.bench_function("otel_sdk", |b| {
                    b.iter(|| with_sdk(&noop, black_box(MODEL), 3, 0.5))
                });
            }
            _ => {
                group.bench_function("otel_sdk", |b| {
                    b.iter(|| with_sdk(&sdk_tracer, black_box(MODEL), 3, 0.5))
                });
            }
        }

        let subscriber_guard = match case {
            Case::Disabled => {
                tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default())
            }
            _ => tracing::subscriber::set_default(
                tracing_subscriber::registry()
                    .with(tracing_opentelemetry::layer().with_tracer(sdk_tracer.clone())),
            ),
        };
        group.bench_function("tracing_opentelemetry", |b| {
            b.iter(|| with_tracing(black_box(MODEL), 3, 0.5))
        });
        drop(subscriber_guard);

        group.bench_function("fastrace", |b| {
            b.iter_custom(|iters| fastrace_loop(case, iters))
        });

        drop(parent_guard);
        group.finish();
        let _ = provider.shutdown();
    }
}

criterion_group!(benches, span_cost);
criterion_main!(benches);
