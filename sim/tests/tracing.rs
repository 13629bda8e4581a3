//! The `llm_request` span: parented on the caller's `traceparent`, with
//! vLLM's attributes, and only when tracing is configured.

mod common;

use common::Sim;
use llmd_runtime::testing::{attribute, capture};
use llmd_sim::SimConfig;
use opentelemetry::Value as OtelValue;
use opentelemetry::trace::SpanKind;
use serde_json::json;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn traced() -> SimConfig {
    let mut config = SimConfig::new("m");
    config.trace_requests = true;
    config
}

async fn chat(sim: &Sim, body: serde_json::Value, traceparent: Option<&str>) {
    let mut request = sim
        .client
        .post(format!("{}/v1/chat/completions", sim.base))
        .header("x-request-id", "trace-req-1")
        .json(&body);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
}

fn float(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> f64 {
    match attribute(span, key) {
        Some(OtelValue::F64(v)) => *v,
        other => panic!("{key}: {other:?}"),
    }
}

#[tokio::test]
async fn llm_request_span_continues_the_callers_trace() {
    let spans = capture();
    let sim = Sim::start(traced()).await;
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                      "temperature": 0.0, "top_p": 0.5});
    chat(&sim, body, Some(&format!("00-{TRACE_ID}-{PARENT_ID}-01"))).await;

    let span = spans.one("llm_request");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(span.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(span.parent_span_id.to_string(), PARENT_ID);
    assert_eq!(
        attribute(&span, "gen_ai.request.id"),
        Some(&OtelValue::from("chatcmpl-trace-req-1"))
    );
    assert_eq!(
        attribute(&span, "gen_ai.usage.prompt_tokens"),
        Some(&OtelValue::I64(3))
    );
    assert_eq!(
        attribute(&span, "gen_ai.usage.completion_tokens"),
        Some(&OtelValue::I64(2))
    );
    assert_eq!(
        attribute(&span, "gen_ai.request.max_tokens"),
        Some(&OtelValue::I64(2))
    );
    assert_eq!(
        attribute(&span, "gen_ai.request.top_p"),
        Some(&OtelValue::F64(0.5))
    );
    assert_eq!(
        attribute(&span, "gen_ai.request.n"),
        Some(&OtelValue::I64(1))
    );
    assert_eq!(
        attribute(&span, "gen_ai.request.temperature"),
        None,
        "zero is not recorded"
    );
    let e2e = float(&span, "gen_ai.latency.e2e");
    let ttft = float(&span, "gen_ai.latency.time_to_first_token");
    let queue = float(&span, "gen_ai.latency.time_in_queue");
    let prefill = float(&span, "gen_ai.latency.time_in_model_prefill");
    let decode = float(&span, "gen_ai.latency.time_in_model_decode");
    let inference = float(&span, "gen_ai.latency.time_in_model_inference");
    assert!(0.0 <= queue && queue <= ttft && ttft <= e2e);
    assert!(prefill >= 0.0 && decode >= 0.0 && inference >= prefill.max(decode));
}

#[tokio::test]
async fn a_request_without_traceparent_starts_a_trace() {
    let spans = capture();
    let sim = Sim::start(traced()).await;
    chat(&sim, json!({"messages": [], "max_tokens": 1}), None).await;
    let span = spans.one("llm_request");
    assert!(span.span_context.is_valid());
    assert_eq!(span.parent_span_id, opentelemetry::trace::SpanId::INVALID);
}

#[tokio::test]
async fn no_span_without_tracing_configured() {
    let spans = capture();
    let sim = Sim::start(SimConfig::new("m")).await;
    chat(
        &sim,
        json!({"messages": [], "max_tokens": 1}),
        Some(&format!("00-{TRACE_ID}-{PARENT_ID}-01")),
    )
    .await;
    assert!(spans.named("llm_request").is_empty());
}
