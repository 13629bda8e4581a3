//! Test support: capture the spans a test produces, in memory.
//!
//! Enabled with the `testing` feature; other crates use it from their
//! `[dev-dependencies]`. [`otlp_receiver`] is a real OTLP collector
//! (gRPC and HTTP) for tests of the exported spans.

pub mod otlp_receiver;
pub mod pki;
mod span_count;

use crate::state::{self, UnsampledParent};
use opentelemetry::InstrumentationScope;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    Sampler, SdkTracerProvider, SpanData, SpanEvents, SpanLinks, SpanProcessor,
};
use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

static ONE_CAPTURE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Spans finished while the capture is alive. Creating one installs a
/// tracer with the given sampler; dropping it uninstalls it. Captures are
/// serialised across threads, since the tracer is process-wide.
pub struct SpanCapture {
    spans: Arc<Mutex<Vec<SpanData>>>,
    provider: SdkTracerProvider,
    _one_at_a_time: MutexGuard<'static, ()>,
}

/// Holds the capture lock with no tracer installed, for tests of the
/// disabled path; dropping it releases the lock.
pub struct NoTelemetry {
    _one_at_a_time: MutexGuard<'static, ()>,
}

/// Uninstalls any tracer for the life of the returned guard.
pub fn without_telemetry() -> NoTelemetry {
    let lock = ONE_CAPTURE_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    state::uninstall();
    NoTelemetry {
        _one_at_a_time: lock,
    }
}

/// Starts capturing with an always-on sampler.
pub fn capture() -> SpanCapture {
    capture_with(Sampler::AlwaysOn)
}

/// Starts capturing with `sampler`.
pub fn capture_with(sampler: Sampler) -> SpanCapture {
    let lock = ONE_CAPTURE_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let spans = Arc::new(Mutex::new(Vec::new()));
    let unsampled_parent = UnsampledParent::of(&sampler);
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_span_processor(Collect(spans.clone()))
        .build();
    state::install(provider.tracer("llmd-test"), unsampled_parent);
    SpanCapture {
        spans,
        provider,
        _one_at_a_time: lock,
    }
}

impl SpanCapture {
    /// The spans finished so far, in the order they ended.
    pub fn spans(&self) -> Vec<SpanData> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The finished spans named `name`.
    pub fn named(&self, name: &str) -> Vec<SpanData> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }

    /// The one finished span named `name`; panics (failing the test) when
    /// there is not exactly one.
    pub fn one(&self, name: &str) -> SpanData {
        let mut found = self.named(name);
        assert_eq!(
            found.len(),
            1,
            "expected one span named {name}, got {:?}",
            self.spans()
                .iter()
                .map(|s| s.name.as_ref().to_owned())
                .collect::<Vec<_>>()
        );
        found.remove(0)
    }

    /// Forgets the spans captured so far.
    pub fn clear(&self) {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Drop for SpanCapture {
    fn drop(&mut self) {
        state::uninstall();
        let _ = self.provider.shutdown();
    }
}

/// The value of attribute `key` on `span`, if set.
pub fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a opentelemetry::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// A span processor that accepts every span and drops it at its end: the
/// SDK's recording cost without any export, for benchmarks.
#[derive(Debug, Default)]
pub struct DiscardSpans;

impl SpanProcessor for DiscardSpans {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        std::hint::black_box(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Installs a tracer sampling with `sampler` whose spans are recorded and
/// dropped ([`DiscardSpans`]), for benchmarks; returns its provider (undo
/// with [`state::uninstall`] and shut the provider down).
pub fn install_discarding(sampler: Sampler) -> SdkTracerProvider {
    let unsampled_parent = UnsampledParent::of(&sampler);
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_span_processor(DiscardSpans)
        .build();
    state::install(provider.tracer("bench"), unsampled_parent);
    provider
}

#[derive(Debug)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl SpanProcessor for Collect {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// A finished, sampled span named `name`, with no attributes: input for
/// tests of exporters and span processors.
pub fn sampled_span(name: &'static str) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(7_u128),
            SpanId::from(8_u64),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: Cow::Borrowed(name),
        start_time: SystemTime::UNIX_EPOCH,
        end_time: SystemTime::UNIX_EPOCH,
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("test").build(),
    }
}
