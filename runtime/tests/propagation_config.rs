//! `propagation::configure` is process-wide, so it is tested in its own
//! test binary.

use http::{HeaderMap, HeaderValue};
use llmd_runtime::propagation::{self, BAGGAGE, TRACEPARENT};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::TraceContextExt;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn configure_switches_each_format_on_and_off() {
    let mut inbound = HeaderMap::new();
    inbound.insert(TRACEPARENT, HeaderValue::from_static(PARENT));
    inbound.insert(BAGGAGE, HeaderValue::from_static("tenant=a"));

    let on = propagation::extract(&inbound);
    assert!(
        on.span().span_context().is_valid(),
        "trace context is on by default"
    );
    assert_eq!(on.baggage().len(), 1, "baggage is on by default");

    propagation::configure(false, true);
    let cx = propagation::extract(&inbound);
    assert!(!cx.span().span_context().is_valid());
    assert_eq!(cx.baggage().len(), 1);
    let mut outbound = HeaderMap::new();
    outbound.insert(TRACEPARENT, HeaderValue::from_static("left-alone"));
    propagation::inject(&on, &mut outbound);
    assert_eq!(
        outbound.get(TRACEPARENT).map(HeaderValue::as_bytes),
        Some(&b"left-alone"[..])
    );
    assert!(outbound.contains_key(BAGGAGE));

    propagation::configure(true, false);
    let cx = propagation::extract(&inbound);
    assert!(cx.span().span_context().is_valid());
    assert_eq!(cx.baggage().len(), 0);
    let mut outbound = HeaderMap::new();
    propagation::inject(&on, &mut outbound);
    assert_eq!(
        outbound.get(TRACEPARENT).map(HeaderValue::as_bytes),
        Some(PARENT.as_bytes())
    );
    assert!(!outbound.contains_key(BAGGAGE));

    propagation::configure(true, true);
    assert!(
        propagation::extract(&inbound)
            .span()
            .span_context()
            .is_valid()
    );
}
