//! Two services over real loopback HTTP: A (axum + `ServerTraceLayer`)
//! calls B from a child span with `RequestBuilderExt::inject_context`; B's
//! server span must be parented on A's child span, not on A's caller.

mod http_support;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use http_support::{SPAN_ID, TRACE_ID, client, serve, traceparent};
use llmd_runtime::http::{RequestBuilderExt, ServerTraceLayer};
use llmd_runtime::span::{self, SpanMeta};
use llmd_runtime::testing::capture_with;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::Sampler;
use std::net::SocketAddr;

static A_REQUEST: SpanMeta = SpanMeta::new("llm_d.test.a.request", SpanKind::Server);
static A_CALL_B: SpanMeta = SpanMeta::new("llm_d.test.a.call_b", SpanKind::Client);
static B_REQUEST: SpanMeta = SpanMeta::new("llm_d.test.b.request", SpanKind::Server);

/// B answers with the `traceparent` it received.
async fn echo_traceparent(headers: HeaderMap) -> String {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned()
}

/// A calls B from its own child span and answers with B's answer.
async fn call_b(State(b): State<SocketAddr>) -> String {
    let call = span::start(&A_CALL_B, None, || [KeyValue::new("peer.service", "b")]);
    call.instrument(async move {
        client()
            .get(format!("http://{b}/echo"))
            .inject_context()
            .send()
            .await
            .expect("call B")
            .text()
            .await
            .expect("B's body")
    })
    .await
}

/// Starts B, then A pointing at B; returns A's address.
async fn start_services() -> SocketAddr {
    let b = serve(
        Router::new()
            .route("/echo", get(echo_traceparent))
            .layer(ServerTraceLayer::new(&B_REQUEST)),
    )
    .await;
    serve(
        Router::new()
            .route("/call", get(call_b))
            .with_state(b)
            .layer(ServerTraceLayer::new(&A_REQUEST)),
    )
    .await
}

async fn call_a(a: SocketAddr, sampled: bool) -> String {
    client()
        .get(format!("http://{a}/call"))
        .header("traceparent", traceparent(TRACE_ID, SPAN_ID, sampled))
        .send()
        .await
        .expect("call A")
        .text()
        .await
        .expect("A's body")
}

#[tokio::test]
async fn child_service_is_parented_on_the_calling_span() {
    let cap = capture_with(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let a = start_services().await;
    let seen_by_b = call_a(a, true).await;

    let a_request = cap.one("llm_d.test.a.request");
    let a_call = cap.one("llm_d.test.a.call_b");
    let b_request = cap.one("llm_d.test.b.request");
    let trace = TraceId::from_hex(TRACE_ID).expect("hex");
    for span in [&a_request, &a_call, &b_request] {
        assert_eq!(span.span_context.trace_id(), trace, "{}", span.name);
    }
    assert_eq!(
        a_request.parent_span_id,
        SpanId::from_hex(SPAN_ID).expect("hex")
    );
    assert_eq!(a_call.parent_span_id, a_request.span_context.span_id());
    assert_eq!(b_request.parent_span_id, a_call.span_context.span_id());
    assert!(b_request.parent_span_is_remote);
    assert_eq!(
        seen_by_b,
        traceparent(TRACE_ID, &a_call.span_context.span_id().to_string(), true)
    );
    assert_ne!(
        seen_by_b,
        traceparent(TRACE_ID, SPAN_ID, true),
        "not the inbound header"
    );
}

#[tokio::test]
async fn unsampled_caller_records_nothing_and_still_propagates() {
    let cap = capture_with(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let a = start_services().await;
    let seen_by_b = call_a(a, false).await;

    assert!(cap.spans().is_empty(), "recorded: {:?}", cap.spans());
    let fields: Vec<&str> = seen_by_b.split('-').collect();
    assert_eq!(fields.len(), 4, "B got {seen_by_b:?}");
    assert_eq!(fields[1], TRACE_ID);
    assert_eq!(fields[3], "00");
}
