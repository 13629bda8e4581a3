//! W3C trace context (`traceparent`, `tracestate`) and `baggage`
//! propagation over HTTP headers.
//!
//! Both formats are on by default, so context passes through a service even
//! before (or without) telemetry init; [`configure`] narrows them (telemetry
//! init calls it from `OTEL_PROPAGATORS`). The switches are two atomics: no
//! lock and no dynamic dispatch per request.
//!
//! Extraction never fails: a missing or malformed `traceparent` (wrong
//! version or length, non-hex or upper-case digits, all-zero ids, bad flags,
//! or several `traceparent` headers) gives a context without a remote
//! parent, so the server starts a new root trace. An invalid `tracestate`
//! is dropped while the `traceparent` is kept, as the W3C specification
//! asks.

mod traceparent;

use ::http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceState};
use opentelemetry_sdk::propagation::BaggagePropagator;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use traceparent::TraceParent;

/// The W3C `traceparent` header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The W3C `tracestate` header.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// The W3C `baggage` header.
pub const BAGGAGE: HeaderName = HeaderName::from_static(BAGGAGE_NAME);

const BAGGAGE_NAME: &str = "baggage";

static TRACE_CONTEXT_ON: AtomicBool = AtomicBool::new(true);
static BAGGAGE_ON: AtomicBool = AtomicBool::new(true);

/// Chooses the propagated formats for the whole process: W3C trace context
/// (`traceparent` and `tracestate`) and W3C `baggage`. Both are on until
/// this is called.
pub fn configure(trace_context: bool, baggage: bool) {
    TRACE_CONTEXT_ON.store(trace_context, Ordering::Relaxed);
    BAGGAGE_ON.store(baggage, Ordering::Relaxed);
}

/// The remote context carried by `headers`: the caller's span (when its
/// `traceparent` is valid) and baggage, under an otherwise empty context.
pub fn extract(headers: &HeaderMap) -> Context {
    let mut cx = Context::new();
    if TRACE_CONTEXT_ON.load(Ordering::Relaxed)
        && let Some(span_context) = extract_span_context(headers)
    {
        cx = cx.with_remote_span_context(span_context);
    }
    if BAGGAGE_ON.load(Ordering::Relaxed)
        && let Some(value) = joined(headers, &BAGGAGE)
    {
        cx = BaggagePropagator::new().extract_with_context(&cx, &BaggageHeader(&value));
    }
    cx
}

/// Writes the span context and baggage of `cx` into `headers`, replacing
/// any value already there (such as an inbound header copied through). A
/// field `cx` does not carry is removed, so the headers always describe
/// `cx` itself. Formats turned off by [`configure`] are left untouched.
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    if TRACE_CONTEXT_ON.load(Ordering::Relaxed) {
        inject_span_context(cx.span().span_context(), headers);
    }
    if BAGGAGE_ON.load(Ordering::Relaxed) {
        headers.remove(&BAGGAGE);
        if !cx.baggage().is_empty() {
            BaggagePropagator::new().inject_context(cx, &mut BaggageInjector(headers));
        }
    }
}

/// [`inject`] with the current context: the span making the outbound call.
pub fn inject_current(headers: &mut HeaderMap) {
    Context::map_current(|cx| inject(cx, headers));
}

fn extract_span_context(headers: &HeaderMap) -> Option<SpanContext> {
    let mut values = headers.get_all(&TRACEPARENT).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let parent = traceparent::parse(value.as_bytes())?;
    let trace_state = joined(headers, &TRACESTATE)
        .and_then(|value| TraceState::from_str(&value).ok())
        .unwrap_or_default();
    Some(SpanContext::new(
        parent.trace_id,
        parent.span_id,
        parent.flags,
        true,
        trace_state,
    ))
}

fn inject_span_context(span_context: &SpanContext, headers: &mut HeaderMap) {
    headers.remove(&TRACESTATE);
    if !span_context.is_valid() {
        headers.remove(&TRACEPARENT);
        return;
    }
    let value = traceparent::format(&TraceParent {
        trace_id: span_context.trace_id(),
        span_id: span_context.span_id(),
        flags: span_context.trace_flags(),
    });
    let Ok(value) = HeaderValue::from_bytes(&value) else {
        headers.remove(&TRACEPARENT);
        return;
    };
    headers.insert(TRACEPARENT, value);
    let state = span_context.trace_state().header();
    if !state.is_empty()
        && let Ok(value) = HeaderValue::try_from(state)
    {
        headers.insert(TRACESTATE, value);
    }
}

/// The values of a list-valued header, joined with commas as HTTP allows
/// (`None` when absent or not visible ASCII).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut joined: Option<String> = None;
    for value in headers.get_all(name) {
        let value = value.to_str().ok()?;
        match &mut joined {
            None => joined = Some(value.to_owned()),
            Some(all) => {
                all.push(',');
                all.push_str(value);
            }
        }
    }
    joined
}

/// Presents a joined `baggage` value to the SDK's baggage propagator.
struct BaggageHeader<'a>(&'a str);

impl Extractor for BaggageHeader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == BAGGAGE_NAME).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![BAGGAGE_NAME]
    }
}

/// Lets the SDK's baggage propagator write into a `HeaderMap`.
struct BaggageInjector<'a>(&'a mut HeaderMap);

impl Injector for BaggageInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}
