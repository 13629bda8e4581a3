//! Behaviour of `#[traced_span]`: names, kinds, parent links across awaits
//! and tasks, explicit parents, attributes, `record!` and `event!`.

use llmd_runtime::attributes::AttributeEnum;
use llmd_runtime::testing::{attribute, capture};
use llmd_runtime::{Context, FutureExt, Identifier, event, record, traced_span};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt};
use opentelemetry::{Array, StringValue, Value};

#[traced_span("llm_d.kv_cache.storage.lookup")]
fn lookup() -> usize {
    7
}

#[traced_span("llm_d.pd_proxy.request", kind = server)]
fn serve() {}

#[test]
fn span_has_its_name_and_internal_kind_by_default() {
    let cap = capture();
    assert_eq!(lookup(), 7);
    serve();
    let s = cap.one("llm_d.kv_cache.storage.lookup");
    assert_eq!(s.span_kind, SpanKind::Internal);
    assert_eq!(s.status, Status::Unset);
    assert!(
        s.attributes.is_empty(),
        "nothing is recorded unless declared: {:?}",
        s.attributes
    );
    assert_eq!(
        cap.one("llm_d.pd_proxy.request").span_kind,
        SpanKind::Server
    );
}

#[traced_span("llm_d.kv_cache.scorer.compute", kind = client)]
fn inner_sync() {}

#[traced_span("llm_d.kv_cache.get_scores")]
fn outer_sync() {
    inner_sync();
    inner_sync();
}

#[test]
fn nested_sync_calls_are_children() {
    let cap = capture();
    outer_sync();
    let outer = cap.one("llm_d.kv_cache.get_scores");
    let inner = cap.named("llm_d.kv_cache.scorer.compute");
    assert_eq!(inner.len(), 2);
    for child in &inner {
        assert_eq!(child.parent_span_id, outer.span_context.span_id());
        assert_eq!(child.span_context.trace_id(), outer.span_context.trace_id());
        assert_eq!(child.span_kind, SpanKind::Client);
    }
}

#[traced_span("llm_d.pd_proxy.prefill", kind = client)]
async fn prefill_leg() -> u32 {
    tokio::task::yield_now().await;
    current_span_name_is_recorded();
    1
}

fn current_span_name_is_recorded() {
    assert!(Context::current().span().span_context().is_sampled());
}

#[traced_span("llm_d.pd_proxy.decode", kind = client)]
async fn decode_leg() -> u32 {
    tokio::task::yield_now().await;
    2
}

#[traced_span("llm_d.pd_proxy.request", kind = server)]
async fn handle() -> u32 {
    let before = Context::current().span().span_context().span_id();
    let p = prefill_leg().await;
    tokio::task::yield_now().await;
    // Still the same current span after awaiting children.
    assert_eq!(Context::current().span().span_context().span_id(), before);
    p + decode_leg().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_children_link_to_the_parent_across_awaits() {
    let cap = capture();
    assert_eq!(handle().await, 3);
    let request = cap.one("llm_d.pd_proxy.request");
    for leg in ["llm_d.pd_proxy.prefill", "llm_d.pd_proxy.decode"] {
        let leg = cap.one(leg);
        assert_eq!(leg.parent_span_id, request.span_context.span_id());
        assert_eq!(leg.span_context.trace_id(), request.span_context.trace_id());
    }
    // The caller's context is restored after the span.
    assert!(!Context::current().has_active_span());
}

#[traced_span("llm_d.epp.scorer.queue")]
async fn spawned_work() {
    tokio::task::yield_now().await;
}

#[traced_span("llm_d.epp.profile_handler.pick")]
async fn spawns_with_context() {
    let passed = tokio::spawn(spawned_work().with_context(Context::current()));
    passed.await.expect("task runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_task_given_the_context_is_a_child() {
    let cap = capture();
    spawns_with_context().await;
    let parent = cap.one("llm_d.epp.profile_handler.pick");
    let child = cap.one("llm_d.epp.scorer.queue");
    assert_eq!(child.parent_span_id, parent.span_context.span_id());
    assert_eq!(
        child.span_context.trace_id(),
        parent.span_context.trace_id()
    );
}

#[traced_span("llm_d.kv_cache.scorer.compute", parent = cx)]
fn under_explicit_parent(cx: &Context) {
    let _ = cx;
}

#[traced_span("llm_d.kv_cache.storage.lookup", parent = parent)]
async fn under_optional_parent(parent: Option<Context>) {
    tokio::task::yield_now().await;
}

#[tokio::test(flavor = "current_thread")]
async fn explicit_parent_wins_over_the_current_context() {
    let cap = capture();
    let remote = opentelemetry::trace::SpanContext::new(
        opentelemetry::trace::TraceId::from(0xabcd_u128),
        opentelemetry::trace::SpanId::from(0x42_u64),
        opentelemetry::trace::TraceFlags::SAMPLED,
        true,
        Default::default(),
    );
    let parent = Context::new().with_remote_span_context(remote);
    {
        // A different current span, which must not become the parent.
        let _other =
            llmd_runtime::span::start(&OTHER, None, llmd_runtime::span::no_attributes).enter();
        under_explicit_parent(&parent);
    }
    under_optional_parent(Some(parent.clone())).await;
    under_optional_parent(None).await;
    let child = cap.one("llm_d.kv_cache.scorer.compute");
    assert_eq!(
        child.parent_span_id,
        opentelemetry::trace::SpanId::from(0x42_u64)
    );
    assert_eq!(
        child.span_context.trace_id(),
        opentelemetry::trace::TraceId::from(0xabcd_u128)
    );
    let lookups = cap.named("llm_d.kv_cache.storage.lookup");
    assert_eq!(lookups.len(), 2);
    assert_eq!(
        lookups[0].parent_span_id,
        opentelemetry::trace::SpanId::from(0x42_u64)
    );
    assert_eq!(
        lookups[1].parent_span_id,
        opentelemetry::trace::SpanId::INVALID
    );
}

static OTHER: llmd_runtime::span::SpanMeta =
    llmd_runtime::span::SpanMeta::new("llm_d.other", SpanKind::Internal);

enum Decision {
    PrefillDecode,
}

impl AttributeEnum for Decision {
    fn label(&self) -> &'static str {
        match self {
            Decision::PrefillDecode => "prefill_decode",
        }
    }
}

#[traced_span(
    "llm_d.epp.profile_handler.pick",
    attrs(
        gen_ai.request.model = model,
        llm_d.epp.profile_handler.total_profiles = profiles.len(),
        llm_d.kv_cache.block_hit_ratio = 0.25,
        gen_ai.request.stream = true,
        llm_d.epp.profile_handler.decision = Decision::PrefillDecode,
        llm_d.kv_cache.scorer.algorithm = "longest_prefix",
        gen_ai.response.finish_reasons = ["stop", "length"],
    ),
)]
fn pick(model: &Identifier, profiles: &[&str]) -> usize {
    profiles.len()
}

#[test]
fn declared_attributes_are_recorded_with_their_types() {
    let cap = capture();
    let model = Identifier::new("meta-llama/Llama-3.1-8B");
    assert_eq!(pick(&model, &["prefill", "decode"]), 2);
    let s = cap.one("llm_d.epp.profile_handler.pick");
    let attr = |k| attribute(&s, k).cloned();
    assert_eq!(
        attr("gen_ai.request.model"),
        Some(Value::from("meta-llama/Llama-3.1-8B"))
    );
    assert_eq!(
        attr("llm_d.epp.profile_handler.total_profiles"),
        Some(Value::I64(2))
    );
    assert_eq!(
        attr("llm_d.kv_cache.block_hit_ratio"),
        Some(Value::F64(0.25))
    );
    assert_eq!(attr("gen_ai.request.stream"), Some(Value::Bool(true)));
    assert_eq!(
        attr("llm_d.epp.profile_handler.decision"),
        Some(Value::from("prefill_decode"))
    );
    assert_eq!(
        attr("llm_d.kv_cache.scorer.algorithm"),
        Some(Value::from("longest_prefix"))
    );
    assert_eq!(
        attr("gen_ai.response.finish_reasons"),
        Some(Value::Array(Array::String(vec![
            StringValue::from("stop"),
            StringValue::from("length")
        ])))
    );
    assert_eq!(s.attributes.len(), 7);
}

#[traced_span("llm_d.kv_cache.get_scores", attrs(llm_d.kv_cache.pod_count = pods.len()))]
async fn get_scores(pods: &[u32]) -> f64 {
    tokio::task::yield_now().await;
    let found = pods.len();
    event!(
        "llm_d.kv_cache.first_miss",
        llm_d.kv_cache.blocks_found = found
    );
    event!("llm_d.pd_proxy.first_token");
    let ratio = 0.75;
    record!(
        llm_d.kv_cache.block_hit_ratio = ratio,
        llm_d.kv_cache.lookup.cache_hit = found > 0
    );
    ratio
}

#[tokio::test(flavor = "current_thread")]
async fn record_and_event_reach_the_current_span() {
    let cap = capture();
    assert_eq!(get_scores(&[1, 2, 3]).await, 0.75);
    let s = cap.one("llm_d.kv_cache.get_scores");
    assert_eq!(
        attribute(&s, "llm_d.kv_cache.pod_count"),
        Some(&Value::I64(3))
    );
    assert_eq!(
        attribute(&s, "llm_d.kv_cache.block_hit_ratio"),
        Some(&Value::F64(0.75))
    );
    assert_eq!(
        attribute(&s, "llm_d.kv_cache.lookup.cache_hit"),
        Some(&Value::Bool(true))
    );
    let events: Vec<_> = s.events.iter().collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].name, "llm_d.kv_cache.first_miss");
    assert_eq!(events[0].attributes.len(), 1);
    assert_eq!(
        events[0].attributes[0].key.as_str(),
        "llm_d.kv_cache.blocks_found"
    );
    assert_eq!(events[0].attributes[0].value, Value::I64(3));
    assert_eq!(events[1].name, "llm_d.pd_proxy.first_token");
    assert!(events[1].attributes.is_empty());
}
