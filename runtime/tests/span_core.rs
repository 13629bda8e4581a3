//! The span core: sampling fast paths, parent links, futures, panics.

use llmd_runtime::span::{self, RecordErr, SpanMeta, Started};
use llmd_runtime::testing::{attribute, capture, capture_with};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::Sampler;
use std::cell::Cell;

static OUTER: SpanMeta = SpanMeta::new("llm_d.test.outer", SpanKind::Server);
static INNER: SpanMeta = SpanMeta::new("llm_d.test.inner", SpanKind::Internal);

fn no_attributes() -> [KeyValue; 0] {
    []
}

/// A context whose span is a remote parent (span id 9) with `flags`.
fn remote_parent(flags: TraceFlags) -> Context {
    let parent = SpanContext::new(
        TraceId::from(7u128),
        SpanId::from(9u64),
        flags,
        true,
        Default::default(),
    );
    Context::new().with_remote_span_context(parent)
}

#[test]
fn nested_spans_link_to_their_parent() {
    let cap = capture();
    {
        let _outer = span::start(&OUTER, None, || [KeyValue::new("k", 1_i64)]).enter();
        let _inner = span::start(&INNER, None, no_attributes).enter();
    }
    let outer = cap.one("llm_d.test.outer");
    let inner = cap.one("llm_d.test.inner");
    assert_eq!(outer.span_kind, SpanKind::Server);
    assert_eq!(inner.parent_span_id, outer.span_context.span_id());
    assert_eq!(inner.span_context.trace_id(), outer.span_context.trace_id());
    assert_eq!(attribute(&outer, "k"), Some(&Value::I64(1)));
}

#[test]
fn unsampled_parent_skips_child_without_evaluating_attributes() {
    let cap = capture_with(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)));
    let evaluated = Cell::new(false);
    let root = span::start(&OUTER, None, no_attributes);
    assert!(!root.is_recording());
    let root_cx = root.context().cloned().expect("a root gets a context");
    let _root = root.enter();
    let child = span::start(&INNER, None, || {
        evaluated.set(true);
        no_attributes()
    });
    assert!(matches!(child, Started::Skipped));
    assert!(!evaluated.get());
    // The current context still carries the unsampled parent for outbound calls.
    let current = Context::current();
    assert_eq!(
        current.span().span_context().span_id(),
        root_cx.span().span_context().span_id()
    );
    assert!(!current.span().span_context().is_sampled());
    drop(_root);
    assert!(cap.spans().is_empty());
}

#[test]
fn disabled_telemetry_records_nothing() {
    let _off = llmd_runtime::testing::without_telemetry();
    let evaluated = Cell::new(false);
    let started = span::start(&OUTER, None, || {
        evaluated.set(true);
        no_attributes()
    });
    assert!(matches!(started, Started::Skipped));
    assert!(!evaluated.get());
}

#[tokio::test(flavor = "current_thread")]
async fn instrumented_future_keeps_its_span_current_across_awaits() {
    let cap = capture();
    let fut = span::start(&OUTER, None, no_attributes).instrument(async {
        tokio::task::yield_now().await;
        let inner = span::start(&INNER, None, no_attributes).instrument(async {
            tokio::task::yield_now().await;
        });
        inner.await;
    });
    fut.await;
    let outer = cap.one("llm_d.test.outer");
    let inner = cap.one("llm_d.test.inner");
    assert_eq!(inner.parent_span_id, outer.span_context.span_id());
}

#[derive(Debug)]
struct Refused;

impl llmd_runtime::ErrorType for Refused {
    fn error_type(&self) -> &'static str {
        "refused"
    }
}

#[tokio::test(flavor = "current_thread")]
async fn err_output_sets_status_and_error_type_only() {
    let cap = capture();
    let out: Result<(), Refused> = span::start(&OUTER, None, no_attributes)
        .instrument_recording::<_, RecordErr>(async { Err(Refused) })
        .await;
    assert!(out.is_err());
    let s = cap.one("llm_d.test.outer");
    assert_eq!(attribute(&s, "error.type"), Some(&Value::from("refused")));
    assert_eq!(s.status, Status::error("refused"));
}

#[test]
fn a_panic_still_ends_and_exports_the_span() {
    let cap = capture();
    let result = std::panic::catch_unwind(|| {
        let _s = span::start(&OUTER, None, no_attributes).enter();
        panic!("boom");
    });
    assert!(result.is_err());
    let s = cap.one("llm_d.test.outer");
    assert_eq!(attribute(&s, "error.type"), Some(&Value::from("panic")));
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_future_still_ends_and_exports_the_span() {
    let cap = capture();
    let handle = tokio::spawn(span::start(&OUTER, None, no_attributes).instrument(async {
        tokio::task::yield_now().await;
        panic!("boom");
    }));
    assert!(handle.await.is_err());
    let s = cap.one("llm_d.test.outer");
    assert_eq!(attribute(&s, "error.type"), Some(&Value::from("panic")));
}

#[test]
fn ratio_sampler_that_ignores_parents_is_asked_for_unsampled_children() {
    let cap = capture_with(Sampler::AlwaysOn);
    let parent = remote_parent(TraceFlags::default());
    let s = span::start(&OUTER, Some(&parent), no_attributes);
    assert!(s.is_recording());
    s.end();
    assert_eq!(
        cap.one("llm_d.test.outer").parent_span_id,
        SpanId::from(9u64)
    );
}

/// What ended on a test provider: each span's name, attribute count and
/// attribute list capacity.
#[derive(Debug, Default, Clone)]
struct Ended(std::sync::Arc<std::sync::Mutex<Vec<(String, usize, usize)>>>);

impl Ended {
    /// A provider whose spans end here.
    fn provider(&self) -> opentelemetry_sdk::trace::SdkTracerProvider {
        opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_span_processor(self.clone())
            .build()
    }

    fn names(&self) -> Vec<String> {
        let ended = self.0.lock().expect("ended lock");
        ended.iter().map(|(name, ..)| name.clone()).collect()
    }

    fn rooms(&self) -> Vec<(usize, usize)> {
        let ended = self.0.lock().expect("ended lock");
        ended.iter().map(|(_, len, room)| (*len, *room)).collect()
    }
}

impl opentelemetry_sdk::trace::SpanProcessor for Ended {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &Context) {}
    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        let ended = (
            span.name.into_owned(),
            span.attributes.len(),
            span.attributes.capacity(),
        );
        self.0.lock().expect("ended lock").push(ended);
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(
        &self,
        _: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

#[test]
fn a_new_install_takes_new_spans_and_open_spans_end_where_they_started() {
    use llmd_runtime::state::{self, UnsampledParent};
    use opentelemetry::trace::TracerProvider as _;
    let first = capture();
    let open = span::start(&OUTER, None, no_attributes).enter();

    let ended = Ended::default();
    let second = ended.provider();
    state::install(second.tracer("second"), UnsampledParent::Ignored);
    span::start(&INNER, None, no_attributes).end();
    drop(open);
    assert_eq!(ended.names(), ["llm_d.test.inner"]);
    assert_eq!(first.one("llm_d.test.outer").name, "llm_d.test.outer");
    assert!(first.named("llm_d.test.inner").is_empty());

    state::uninstall();
    assert!(!state::enabled());
    assert!(matches!(
        span::start(&INNER, None, no_attributes),
        Started::Skipped
    ));
    assert_eq!(ended.names().len(), 1);
    let _ = second.shutdown();
}

#[test]
fn each_install_brings_its_own_unsampled_parent_rule() {
    use llmd_runtime::state::{self, UnsampledParent};
    use opentelemetry::trace::TracerProvider as _;
    let cap = capture_with(Sampler::AlwaysOn);
    let parent = remote_parent(TraceFlags::default());
    assert!(span::start(&OUTER, Some(&parent), no_attributes).is_recording());

    // The same always-on tracer, now declared as respecting unsampled
    // parents: the child is skipped without asking the sampler.
    let provider = Ended::default().provider();
    state::install(provider.tracer("respecting"), UnsampledParent::Respected);
    assert!(matches!(
        span::start(&OUTER, Some(&parent), no_attributes),
        Started::Adopted(_)
    ));
    drop(cap);
    let _ = provider.shutdown();
}

#[test]
fn attributes_recorded_later_fill_the_room_made_at_the_start() {
    use llmd_runtime::state::{self, UnsampledParent};
    use opentelemetry::trace::TracerProvider as _;
    let _cap = capture();
    let ended = Ended::default();
    let provider = ended.provider();
    state::install(provider.tracer("rooms"), UnsampledParent::Respected);
    let parent = remote_parent(TraceFlags::SAMPLED);
    {
        let _s = span::start(&OUTER, Some(&parent), || {
            span::attributes_with_room([KeyValue::new("a", 1_i64)], 5)
        })
        .enter();
        for later in ["b", "c", "d", "e", "f"] {
            span::record_current(|| [KeyValue::new(later, 2_i64)]);
        }
    }
    // Six attributes in the list made for six: nothing regrew it.
    assert_eq!(ended.rooms(), [(6, 6)]);
    let _ = provider.shutdown();
}
