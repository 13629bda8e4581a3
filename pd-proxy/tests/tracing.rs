//! The spans the proxy exports (in-process capture): names, kinds, parent
//! links into the fake vLLM servers, attributes, and no request content.

mod common;

use common::*;
use llmd_pd_proxy::KvConnector;
use llmd_runtime::testing::{self, SpanCapture, attribute};
use opentelemetry::Value as OtelValue;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::{Sampler, SpanData};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const GATEWAY_SPAN: &str = "00f067aa0ba902b7";

async fn wait_for_spans(capture: &SpanCapture, names: &[&str]) -> Vec<SpanData> {
    for _ in 0..500 {
        let spans = capture.spans();
        if names.iter().all(|n| spans.iter().any(|s| s.name == *n)) {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "spans {names:?} not exported; got {:?}",
        capture
            .spans()
            .iter()
            .map(|s| s.name.to_string())
            .collect::<Vec<_>>()
    );
}

fn one<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name}");
    found[0]
}

fn str_attr(span: &SpanData, key: &str) -> String {
    match attribute(span, key) {
        Some(OtelValue::String(s)) => s.as_str().to_owned(),
        other => panic!("{key} on {}: {other:?}", span.name),
    }
}

fn int_attr(span: &SpanData, key: &str) -> i64 {
    match attribute(span, key) {
        Some(OtelValue::I64(n)) => *n,
        other => panic!("{key} on {}: {other:?}", span.name),
    }
}

fn float_attr(span: &SpanData, key: &str) -> f64 {
    match attribute(span, key) {
        Some(OtelValue::F64(n)) => *n,
        other => panic!("{key} on {}: {other:?}", span.name),
    }
}

fn bool_attr(span: &SpanData, key: &str) -> bool {
    match attribute(span, key) {
        Some(OtelValue::Bool(b)) => *b,
        other => panic!("{key} on {}: {other:?}", span.name),
    }
}

fn span_id(span: &SpanData) -> String {
    span.span_context.span_id().to_string()
}

fn assert_no_content(spans: &[SpanData]) {
    for span in spans {
        let text = format!("{span:?}");
        assert!(
            !text.contains("zebra-quokka"),
            "prompt leaked into {}",
            span.name
        );
        assert!(
            !text.contains("Hello world"),
            "completion leaked into {}",
            span.name
        );
    }
}

async fn traced_post(
    proxy: &llmd_pd_proxy::Proxy,
    prefiller: Option<&str>,
    flags: &str,
    stream: bool,
) -> reqwest::Response {
    let mut request = client()
        .post(format!("http://{}/v1/chat/completions", proxy.address()))
        .header(
            "traceparent",
            format!("00-{TRACE_ID}-{GATEWAY_SPAN}-{flags}"),
        )
        .body(chat_body(stream).to_string());
    if let Some(target) = prefiller {
        request = request.header("x-prefiller-host-port", target);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn nixlv2_trace_nests_prefill_and_decode_and_vllm_spans() {
    let capture = testing::capture();
    let prefill = Fake::start(prefiller()).await;
    let slow_first_token: Behaviour = {
        let inner = decoder();
        Arc::new(move |seen| Reply::Delayed(Duration::from_millis(200), Box::new(inner(seen))))
    };
    let decoder = Fake::start(slow_first_token).await;
    let proxy = start_proxy(config(&decoder)).await;
    let response = traced_post(&proxy, Some(&prefill.host_port()), "01", true).await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();
    let spans = wait_for_spans(
        &capture,
        &[
            "llm_d.pd_proxy.request",
            "llm_d.pd_proxy.prefill",
            "llm_d.pd_proxy.decode",
            "llm_request",
        ],
    )
    .await;

    let request = one(&spans, "llm_d.pd_proxy.request");
    let prefill_span = one(&spans, "llm_d.pd_proxy.prefill");
    let decode = one(&spans, "llm_d.pd_proxy.decode");
    assert_eq!(request.span_kind, SpanKind::Server);
    assert_eq!(prefill_span.span_kind, SpanKind::Internal);
    assert_eq!(decode.span_kind, SpanKind::Internal);
    for span in [request, prefill_span, decode] {
        assert_eq!(
            span.span_context.trace_id().to_string(),
            TRACE_ID,
            "one trace"
        );
        assert_eq!(span.status, Status::Unset, "{} succeeded", span.name);
    }
    assert_eq!(
        request.parent_span_id.to_string(),
        GATEWAY_SPAN,
        "continues the caller's trace"
    );
    assert_eq!(prefill_span.parent_span_id, request.span_context.span_id());
    assert_eq!(decode.parent_span_id, request.span_context.span_id());

    let prefill_seen = &prefill.seen()[0];
    let decode_seen = &decoder.seen()[0];
    assert_eq!(
        prefill_seen.traceparent(),
        Some((TRACE_ID.into(), span_id(prefill_span))),
        "prefill call carries the prefill span"
    );
    assert_eq!(
        decode_seen.traceparent(),
        Some((TRACE_ID.into(), span_id(decode))),
        "decode call carries the decode span"
    );
    assert!(prefill_seen.header("traceparent").unwrap().ends_with("-01"));
    let vllm: Vec<_> = spans.iter().filter(|s| s.name == "llm_request").collect();
    assert_eq!(vllm.len(), 2);
    let vllm_parents: Vec<_> = vllm.iter().map(|s| s.parent_span_id).collect();
    assert!(vllm_parents.contains(&prefill_span.span_context.span_id()));
    assert!(vllm_parents.contains(&decode.span_context.span_id()));

    assert_eq!(str_attr(request, "llm_d.pd_proxy.connector"), "nixlv2");
    assert_eq!(
        str_attr(request, "llm_d.pd_proxy.request_path"),
        "/v1/chat/completions"
    );
    assert!(bool_attr(request, "llm_d.pd_proxy.disaggregation_used"));
    assert_eq!(
        str_attr(request, "llm_d.pd_proxy.prefill_target"),
        prefill.host_port()
    );
    assert_eq!(int_attr(request, "llm_d.pd_proxy.prefill_candidates"), 1);
    assert_eq!(
        str_attr(request, "gen_ai.request.model"),
        "meta-llama/Llama-3.1-8B"
    );

    let request_id = str_attr(prefill_span, "llm_d.pd_proxy.request_id");
    assert_eq!(
        Some(request_id.as_str()),
        prefill_seen.header("x-request-id")
    );
    assert_eq!(str_attr(decode, "llm_d.pd_proxy.request_id"), request_id);
    assert_eq!(
        str_attr(prefill_span, "llm_d.pd_proxy.prefill_target"),
        prefill.host_port()
    );
    assert_eq!(
        int_attr(prefill_span, "llm_d.pd_proxy.prefill.status_code"),
        200
    );
    let prefill_ms = float_attr(prefill_span, "llm_d.pd_proxy.prefill.duration_ms");
    assert!(prefill_ms > 0.0);

    assert_eq!(int_attr(decode, "llm_d.pd_proxy.decode.status_code"), 200);
    assert!(bool_attr(decode, "llm_d.pd_proxy.decode.streaming"));
    assert!(bool_attr(decode, "gen_ai.request.stream"));
    assert!(!bool_attr(decode, "llm_d.pd_proxy.decode.data_parallel"));
    assert_eq!(
        str_attr(decode, "llm_d.pd_proxy.decode.target"),
        decoder.host_port()
    );
    assert_eq!(int_attr(decode, "gen_ai.usage.input_tokens"), 64);
    assert_eq!(int_attr(decode, "gen_ai.usage.output_tokens"), 2);
    assert_eq!(int_attr(decode, "gen_ai.usage.cache_read.input_tokens"), 48);
    let first_chunk = float_attr(decode, "gen_ai.response.time_to_first_chunk");
    assert!(
        first_chunk >= 0.2,
        "time to the first streamed token, not to the request: {first_chunk}"
    );
    assert!(
        decode
            .events
            .iter()
            .any(|e| e.name == "llm_d.pd_proxy.first_token")
    );

    let ttft = float_attr(request, "llm_d.pd_proxy.true_ttft_ms");
    let total = float_attr(request, "llm_d.pd_proxy.total_duration_ms");
    let overhead = float_attr(request, "llm_d.pd_proxy.coordinator_overhead_ms");
    assert!(
        ttft >= prefill_ms + 200.0,
        "true TTFT includes the wait for the first token: {ttft}"
    );
    assert!(total >= ttft);
    assert!(overhead >= 0.0 && overhead < total);
    assert_no_content(&spans);
}

#[tokio::test]
async fn decode_only_request_says_why_and_parents_the_decoder_call() {
    let capture = testing::capture();
    let decoder = Fake::start(decoder()).await;
    let proxy = start_proxy(config(&decoder)).await;
    let response = traced_post(&proxy, None, "01", false).await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();
    let spans = wait_for_spans(&capture, &["llm_d.pd_proxy.request", "llm_request"]).await;
    let request = one(&spans, "llm_d.pd_proxy.request");
    assert_eq!(str_attr(request, "http.route"), "/v1/chat/completions");
    assert_eq!(str_attr(request, "http.request.method"), "POST");
    assert_eq!(str_attr(request, "llm_d.pd_proxy.connector"), "nixlv2");
    assert_eq!(
        str_attr(request, "llm_d.pd_proxy.request_path"),
        "/v1/chat/completions"
    );
    assert!(!bool_attr(request, "llm_d.pd_proxy.disaggregation_used"));
    assert_eq!(
        str_attr(request, "llm_d.pd_proxy.reason"),
        "no_prefill_header"
    );
    assert!(
        spans
            .iter()
            .all(|s| s.name != "llm_d.pd_proxy.prefill" && s.name != "llm_d.pd_proxy.decode")
    );
    assert_eq!(
        decoder.seen()[0].traceparent(),
        Some((TRACE_ID.into(), span_id(request)))
    );
    assert_no_content(&spans);
}

/// Other methods on an inference route keep its route; other paths have
/// none (their path is never recorded); `/health` is not traced.
#[tokio::test]
async fn routes_are_recorded_for_the_inference_paths_only() {
    const REQUEST: &str = "llm_d.pd_proxy.request";
    let capture = testing::capture();
    let decoder = Fake::start(decoder()).await;
    let proxy = start_proxy(config(&decoder)).await;
    // `/health` first: a span of it would end before its response.
    for path in ["/health", "/v1/completions", "/v1/models/secret-path-zq81"] {
        let response = client()
            .get(format!("http://{}{path}", proxy.address()))
            .header("traceparent", format!("00-{TRACE_ID}-{GATEWAY_SPAN}-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.bytes().await.unwrap();
    }
    for _ in 0..500 {
        if capture.named(REQUEST).len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let spans = capture.named(REQUEST);
    assert_eq!(spans.len(), 2, "two traced requests, /health not traced");
    let routes: Vec<_> = spans.iter().map(|s| attribute(s, "http.route")).collect();
    assert!(routes.contains(&Some(&OtelValue::from("/v1/completions"))));
    assert!(routes.contains(&None));
    for span in &spans {
        assert_eq!(str_attr(span, "http.request.method"), "GET");
        assert!(!format!("{span:?}").contains("secret-path-zq81"));
    }
}

/// A prefill header that names no host and port: 400, and the request
/// span has the connector and route but no P/D decision.
#[tokio::test]
async fn unroutable_request_records_no_decision() {
    let capture = testing::capture();
    let decoder = Fake::start(decoder()).await;
    let proxy = start_proxy(config(&decoder)).await;
    let response = traced_post(&proxy, Some("10.0.0.1:8000/zq81-path"), "01", false).await;
    assert_eq!(response.status(), 400);
    let spans = wait_for_spans(&capture, &["llm_d.pd_proxy.request"]).await;
    let request = one(&spans, "llm_d.pd_proxy.request");
    assert_eq!(str_attr(request, "llm_d.pd_proxy.connector"), "nixlv2");
    assert_eq!(
        str_attr(request, "llm_d.pd_proxy.request_path"),
        "/v1/chat/completions"
    );
    for absent in [
        "llm_d.pd_proxy.disaggregation_used",
        "llm_d.pd_proxy.reason",
        "llm_d.pd_proxy.prefill_target",
    ] {
        assert_eq!(attribute(request, absent), None, "{absent}");
    }
    assert_eq!(int_attr(request, "http.response.status_code"), 400);
    assert!(decoder.seen().is_empty(), "nothing reached the decoder");
    assert!(!format!("{request:?}").contains("zq81-path"));
}

#[tokio::test]
async fn ssrf_denial_is_an_error_on_the_request_span() {
    let capture = testing::capture();
    let decoder = Fake::start(decoder()).await;
    let mut c = config(&decoder);
    c.allowed_prefill_hosts = Some(vec!["10.0.0.1".into()]);
    let proxy = start_proxy(c).await;
    let response = traced_post(&proxy, Some("10.6.6.6:8000"), "01", false).await;
    assert_eq!(response.status(), 403);
    let spans = wait_for_spans(&capture, &["llm_d.pd_proxy.request"]).await;
    let request = one(&spans, "llm_d.pd_proxy.request");
    assert_eq!(
        str_attr(request, "llm_d.pd_proxy.error"),
        "ssrf_protection_denied"
    );
    assert_eq!(
        str_attr(request, "llm_d.pd_proxy.denied_target"),
        "10.6.6.6:8000"
    );
    assert_eq!(str_attr(request, "error.type"), "ssrf_protection_denied");
    assert!(matches!(request.status, Status::Error { .. }));
}

#[tokio::test]
async fn failed_prefill_marks_the_prefill_span_and_records_retries() {
    let capture = testing::capture();
    let prefill = Fake::start(always(http::StatusCode::BAD_GATEWAY, json!({}))).await;
    let decoder = Fake::start(decoder()).await;
    let mut c = config(&decoder);
    c.prefill_retry.max_retries = 1;
    let proxy = start_proxy(c).await;
    let response = traced_post(&proxy, Some(&prefill.host_port()), "01", false).await;
    assert_eq!(response.status(), 502);
    let spans = wait_for_spans(
        &capture,
        &["llm_d.pd_proxy.request", "llm_d.pd_proxy.prefill"],
    )
    .await;
    let prefill_span = one(&spans, "llm_d.pd_proxy.prefill");
    assert!(matches!(prefill_span.status, Status::Error { .. }));
    assert_eq!(str_attr(prefill_span, "error.type"), "prefill_server_error");
    assert_eq!(
        int_attr(prefill_span, "llm_d.pd_proxy.prefill.status_code"),
        502
    );
    assert_eq!(
        prefill_span
            .events
            .iter()
            .filter(|e| e.name == "llm_d.pd_proxy.prefill.retry")
            .count(),
        1
    );
    let both: Vec<_> = prefill
        .seen()
        .iter()
        .map(|s| s.traceparent().unwrap().1)
        .collect();
    assert_eq!(
        both,
        vec![span_id(prefill_span); 2],
        "every attempt is a child of the prefill span"
    );
}

#[tokio::test]
async fn decoder_5xx_marks_the_decode_and_request_spans_failed() {
    let capture = testing::capture();
    let prefill = Fake::start(prefiller()).await;
    let decoder = Fake::start(always(
        http::StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": {"message": "engine overloaded"}}),
    ))
    .await;
    let proxy = start_proxy(config(&decoder)).await;
    let response = traced_post(&proxy, Some(&prefill.host_port()), "01", false).await;
    assert_eq!(response.status(), 503, "the decoder's answer is passed on");
    let spans = wait_for_spans(
        &capture,
        &["llm_d.pd_proxy.request", "llm_d.pd_proxy.decode"],
    )
    .await;
    let decode = one(&spans, "llm_d.pd_proxy.decode");
    assert_eq!(decode.status, Status::error("503"));
    assert_eq!(str_attr(decode, "error.type"), "503");
    assert_eq!(int_attr(decode, "llm_d.pd_proxy.decode.status_code"), 503);
    let request = one(&spans, "llm_d.pd_proxy.request");
    assert!(matches!(request.status, Status::Error { .. }));
    assert_eq!(
        one(&spans, "llm_d.pd_proxy.prefill").status,
        Status::Unset,
        "the prefill leg succeeded"
    );
}

#[tokio::test]
async fn sglang_marks_async_prefill_and_concurrent_decode() {
    let capture = testing::capture();
    let prefill = Fake::start(prefiller()).await;
    let decoder = Fake::start(decoder()).await;
    let proxy = start_with_connector(&decoder, KvConnector::SgLang).await;
    let response = traced_post(&proxy, Some(&prefill.host_port()), "01", false).await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();
    let spans = wait_for_spans(
        &capture,
        &[
            "llm_d.pd_proxy.request",
            "llm_d.pd_proxy.prefill",
            "llm_d.pd_proxy.decode",
        ],
    )
    .await;
    let request = one(&spans, "llm_d.pd_proxy.request");
    let prefill_span = one(&spans, "llm_d.pd_proxy.prefill");
    let decode = one(&spans, "llm_d.pd_proxy.decode");
    assert!(bool_attr(prefill_span, "llm_d.pd_proxy.prefill.async"));
    assert!(bool_attr(
        decode,
        "llm_d.pd_proxy.decode.concurrent_with_prefill"
    ));
    assert_eq!(prefill_span.parent_span_id, request.span_context.span_id());
    assert_eq!(str_attr(request, "llm_d.pd_proxy.connector"), "sglang");
}

#[tokio::test]
async fn unsampled_caller_records_nothing_but_still_propagates() {
    let capture = testing::capture_with(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let prefill = Fake::start(prefiller()).await;
    let decoder = Fake::start(decoder()).await;
    let proxy = start_proxy(config(&decoder)).await;
    let response = traced_post(&proxy, Some(&prefill.host_port()), "00", true).await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        capture
            .spans()
            .iter()
            .all(|s| !s.name.starts_with("llm_d.pd_proxy"))
    );
    let expected = format!("00-{TRACE_ID}-{GATEWAY_SPAN}-00");
    assert_eq!(
        prefill.seen()[0].header("traceparent"),
        Some(expected.as_str())
    );
    assert_eq!(
        decoder.seen()[0].header("traceparent"),
        Some(expected.as_str())
    );
}

#[tokio::test]
async fn shared_storage_decode_first_records_each_roll_up_once() {
    let capture = testing::capture();
    let prefill = Fake::start(prefiller()).await;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let normal = decoder();
    let refuse_first: Behaviour = Arc::new(move |seen| {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::Json(
                http::StatusCode::OK,
                json!({"choices": [{"index": 0, "finish_reason": "cache_threshold"}]}),
            )
        } else {
            normal(seen)
        }
    });
    let decoder = Fake::start(refuse_first).await;
    let proxy = start_with_connector(&decoder, KvConnector::SharedStorage).await;
    let mut body = chat_body(false);
    body["cache_hit_threshold"] = json!(0.5);
    let response = post(
        &proxy,
        "/v1/chat/completions",
        Some(&prefill.host_port()),
        &body,
    )
    .await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();
    let spans = wait_for_spans(
        &capture,
        &["llm_d.pd_proxy.request", "llm_d.pd_proxy.prefill"],
    )
    .await;
    let request = one(&spans, "llm_d.pd_proxy.request");
    for key in [
        "llm_d.pd_proxy.total_duration_ms",
        "llm_d.pd_proxy.true_ttft_ms",
    ] {
        let count = request
            .attributes
            .iter()
            .filter(|kv| kv.key.as_str() == key)
            .count();
        assert_eq!(count, 1, "{key} recorded once");
    }
    let decodes: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "llm_d.pd_proxy.decode")
        .collect();
    assert_eq!(
        decodes.len(),
        2,
        "the refused first try and the decode after the prefill"
    );
    let prefill_span = one(&spans, "llm_d.pd_proxy.prefill");
    assert!(
        decodes
            .iter()
            .any(|d| d.start_time < prefill_span.start_time)
    );
    assert!(decodes.iter().any(|d| d.start_time > prefill_span.end_time));
}
