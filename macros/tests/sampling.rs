//! Sampling: attributes are evaluated only for recorded spans, and the
//! context still propagates (sampled flag 0) when a span is not recorded.

use llmd_runtime::testing::{capture_with, without_telemetry};
use llmd_runtime::{Context, traced_span};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId};
use opentelemetry_sdk::trace::Sampler;
use std::sync::atomic::{AtomicUsize, Ordering};

static EVALUATED: AtomicUsize = AtomicUsize::new(0);

fn counted(n: usize) -> usize {
    EVALUATED.fetch_add(1, Ordering::SeqCst);
    n
}

/// What the body sees as the current span: (span id, sampled).
#[traced_span("llm_d.kv_cache.get_scores", attrs(llm_d.kv_cache.pod_count = counted(3)))]
fn observed() -> (SpanId, bool) {
    llmd_runtime::record!(llm_d.kv_cache.token_count = counted(4));
    let cx = Context::current();
    let sc = cx.span().span_context().clone();
    (sc.span_id(), sc.is_sampled())
}

fn unsampled_parent() -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(0x77_u128),
        SpanId::from(0x99_u64),
        TraceFlags::default(),
        true,
        Default::default(),
    ))
}

#[test]
fn parent_based_sampler_skips_child_of_unsampled_parent_but_propagates_it() {
    let cap = capture_with(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    EVALUATED.store(0, Ordering::SeqCst);
    let seen = {
        let _parent = unsampled_parent().attach();
        observed()
    };
    // The body ran under the unsampled parent, which outbound calls carry.
    assert_eq!(seen, (SpanId::from(0x99_u64), false));
    assert_eq!(
        EVALUATED.load(Ordering::SeqCst),
        0,
        "attributes of an unrecorded span were evaluated"
    );
    assert!(cap.spans().is_empty());

    // A root under the same sampler is recorded, attributes evaluated once each.
    let (root, sampled) = observed();
    assert!(sampled);
    assert_eq!(
        cap.one("llm_d.kv_cache.get_scores").span_context.span_id(),
        root
    );
    assert_eq!(EVALUATED.load(Ordering::SeqCst), 2);
}

#[test]
fn disabled_telemetry_records_and_evaluates_nothing() {
    let _off = without_telemetry();
    EVALUATED.store(0, Ordering::SeqCst);
    let (span, sampled) = observed();
    assert_eq!(span, SpanId::INVALID);
    assert!(!sampled);
    assert_eq!(EVALUATED.load(Ordering::SeqCst), 0);
}

#[test]
fn always_off_records_nothing_and_always_on_records_everything() {
    {
        let cap = capture_with(Sampler::AlwaysOff);
        EVALUATED.store(0, Ordering::SeqCst);
        observed();
        assert!(cap.spans().is_empty());
        assert_eq!(EVALUATED.load(Ordering::SeqCst), 0);
    }
    let cap = capture_with(Sampler::AlwaysOn);
    {
        // always_on ignores the unsampled parent: the child is recorded.
        let _parent = unsampled_parent().attach();
        let (_, sampled) = observed();
        assert!(sampled);
    }
    let s = cap.one("llm_d.kv_cache.get_scores");
    assert_eq!(s.parent_span_id, SpanId::from(0x99_u64));
}

#[test]
fn ratio_sampler_records_a_share_of_root_spans() {
    let cap = capture_with(Sampler::TraceIdRatioBased(0.5));
    let calls = 400;
    let sampled = (0..calls).filter(|_| observed().1).count();
    let recorded = cap.named("llm_d.kv_cache.get_scores").len();
    assert_eq!(recorded, sampled, "exactly the sampled calls are exported");
    assert!(
        recorded > 0 && recorded < calls,
        "a 0.5 ratio kept {recorded} of {calls}"
    );
    drop(cap);

    let cap = capture_with(Sampler::TraceIdRatioBased(0.0));
    EVALUATED.store(0, Ordering::SeqCst);
    for _ in 0..20 {
        observed();
    }
    assert!(cap.spans().is_empty());
    assert_eq!(EVALUATED.load(Ordering::SeqCst), 0);
}
