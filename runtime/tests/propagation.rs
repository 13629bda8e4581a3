//! W3C trace context and baggage over `HeaderMap`: round trips, malformed
//! input, and injection of the current span.

use http::{HeaderMap, HeaderValue};
use llmd_runtime::propagation::{self, BAGGAGE, TRACEPARENT, TRACESTATE};
use llmd_runtime::span::{self, SpanMeta};
use llmd_runtime::testing::capture;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

static CALL: SpanMeta = SpanMeta::new("llm_d.test.call", SpanKind::Client);

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            *name,
            HeaderValue::from_str(value).expect("a valid header value"),
        );
    }
    map
}

fn value<'a>(map: &'a HeaderMap, name: &http::HeaderName) -> Option<&'a str> {
    map.get(name).and_then(|v| v.to_str().ok())
}

/// The baggage of `cx` as sorted `name=value` entries (decoded).
fn baggage_entries(cx: &Context) -> Vec<String> {
    let mut entries: Vec<String> = cx
        .baggage()
        .iter()
        .map(|(name, (value, _))| format!("{name}={value}"))
        .collect();
    entries.sort();
    entries
}

fn has_remote_parent(cx: &Context) -> bool {
    cx.span().span_context().is_valid()
}

#[test]
fn trace_context_round_trips() {
    let inbound = headers(&[
        ("traceparent", PARENT),
        ("tracestate", "vendor=abc,other=x1"),
    ]);
    let cx = propagation::extract(&inbound);
    let span = cx.span();
    let extracted = span.span_context();
    assert!(extracted.is_remote());
    assert!(extracted.is_sampled());
    assert_eq!(
        extracted.trace_id(),
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736)
    );
    assert_eq!(extracted.span_id(), SpanId::from(0x00f0_67aa_0ba9_02b7));
    assert_eq!(extracted.trace_state().get("vendor"), Some("abc"));

    let mut outbound = HeaderMap::new();
    propagation::inject(&cx, &mut outbound);
    assert_eq!(value(&outbound, &TRACEPARENT), Some(PARENT));
    assert_eq!(value(&outbound, &TRACESTATE), Some("vendor=abc,other=x1"));
    assert_eq!(value(&outbound, &BAGGAGE), None);
}

#[test]
fn unsampled_flag_round_trips() {
    let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let cx = propagation::extract(&headers(&[("traceparent", unsampled)]));
    assert!(has_remote_parent(&cx));
    assert!(!cx.span().span_context().is_sampled());
    let mut outbound = HeaderMap::new();
    propagation::inject(&cx, &mut outbound);
    assert_eq!(value(&outbound, &TRACEPARENT), Some(unsampled));
    assert_eq!(
        value(&outbound, &TRACESTATE),
        None,
        "an empty tracestate is not sent"
    );
}

#[test]
fn baggage_round_trips_with_percent_encoding() {
    let cx = propagation::extract(&headers(&[("baggage", "tenant=team%20a,tier=gold;prop=1")]));
    assert_eq!(baggage_entries(&cx), ["tenant=team a", "tier=gold"]);

    let mut outbound = HeaderMap::new();
    propagation::inject(&cx, &mut outbound);
    let again = propagation::extract(&outbound);
    assert_eq!(baggage_entries(&again), baggage_entries(&cx));
    assert!(
        !has_remote_parent(&again),
        "baggage alone carries no parent"
    );
}

#[test]
fn several_baggage_headers_are_combined() {
    let cx = propagation::extract(&headers(&[("baggage", "a=1"), ("baggage", "b=2")]));
    assert_eq!(baggage_entries(&cx), ["a=1", "b=2"]);
}

#[test]
fn malformed_traceparent_gives_a_context_without_parent() {
    for bad in [
        "",
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
    ] {
        let cx = propagation::extract(&headers(&[
            ("traceparent", bad),
            ("tracestate", "vendor=abc"),
        ]));
        assert!(!has_remote_parent(&cx), "{bad:?} was accepted");
    }
}

#[test]
fn non_text_traceparent_gives_a_context_without_parent() {
    let mut inbound = HeaderMap::new();
    inbound.insert(
        TRACEPARENT,
        HeaderValue::from_bytes(&[0xff, 0xfe, b'0']).expect("opaque bytes"),
    );
    assert!(!has_remote_parent(&propagation::extract(&inbound)));
}

#[test]
fn several_traceparent_headers_give_a_context_without_parent() {
    let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let cx = propagation::extract(&headers(&[("traceparent", PARENT), ("traceparent", other)]));
    assert!(!has_remote_parent(&cx));
}

#[test]
fn invalid_tracestate_is_dropped_and_traceparent_kept() {
    let cx = propagation::extract(&headers(&[
        ("traceparent", PARENT),
        ("tracestate", "Bad Key=1"),
    ]));
    assert!(has_remote_parent(&cx));
    assert_eq!(cx.span().span_context().trace_state().header(), "");
}

#[test]
fn several_tracestate_headers_are_combined() {
    let cx = propagation::extract(&headers(&[
        ("traceparent", PARENT),
        ("tracestate", "a=1"),
        ("tracestate", "b=2"),
    ]));
    assert_eq!(cx.span().span_context().trace_state().header(), "a=1,b=2");
}

#[test]
fn inject_replaces_copied_inbound_fields() {
    let cx = propagation::extract(&headers(&[("traceparent", PARENT)]));
    let mut outbound = headers(&[
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("tracestate", "stale=1"),
        ("baggage", "stale=1"),
    ]);
    propagation::inject(&cx, &mut outbound);
    assert_eq!(value(&outbound, &TRACEPARENT), Some(PARENT));
    assert_eq!(outbound.get_all(&TRACEPARENT).iter().count(), 1);
    assert_eq!(value(&outbound, &TRACESTATE), None);
    assert_eq!(value(&outbound, &BAGGAGE), None);
}

#[test]
fn inject_without_a_span_removes_a_copied_traceparent() {
    let mut outbound = headers(&[("traceparent", PARENT), ("x-request-id", "r1")]);
    propagation::inject(&Context::new(), &mut outbound);
    assert_eq!(value(&outbound, &TRACEPARENT), None);
    assert_eq!(
        outbound.get("x-request-id").map(HeaderValue::as_bytes),
        Some(&b"r1"[..])
    );
}

#[test]
fn inject_current_carries_the_span_making_the_call() {
    let cap = capture();
    let inbound = propagation::extract(&headers(&[("traceparent", PARENT)]));
    let mut outbound = HeaderMap::new();
    {
        let _call = span::start(&CALL, Some(&inbound), || [KeyValue::new("k", 1_i64)]).enter();
        propagation::inject_current(&mut outbound);
    }
    let call = cap.one("llm_d.test.call");
    let expected = format!(
        "00-{}-{}-01",
        call.span_context.trace_id(),
        call.span_context.span_id()
    );
    assert_eq!(value(&outbound, &TRACEPARENT), Some(expected.as_str()));
    assert_eq!(
        call.span_context.trace_id(),
        inbound.span().span_context().trace_id()
    );
    assert_ne!(
        expected, PARENT,
        "the call's own span, not the inbound parent"
    );
}
