//! End to end, real processes: sampling is decided by the environment.
//! With `parentbased_traceidratio` at 0, requests that start a trace
//! export nothing from any process, while a caller's sampled
//! `traceparent` is honoured by every process.

mod support;

use llmd_runtime::testing::otlp_receiver::OtlpReceiver;
use llmd_tests::collect;
use llmd_tests::sampling::Sampling;
use llmd_tests::shape::{Expectation, RequestPath};
use llmd_tests::stack::services;
use std::collections::HashSet;
use support::{TraceParent, WAIT};

#[test]
fn ratio_zero_exports_nothing_unless_the_caller_sampled_the_trace() {
    let receiver = OtlpReceiver::start().expect("receiver");
    let stack = support::start_stack("e2e-sampling", &receiver, Sampling::ratio(0.0), 2);
    let runtime = support::runtime();
    let long = support::long_words(&stack);

    let fresh = [
        support::request(stack.model(), "fresh", 8, false),
        support::request(stack.model(), "fresh", long, true),
        support::request(stack.model(), "fresh", 8, true),
        support::request(stack.model(), "fresh", long, false),
    ];
    for request in &fresh {
        let answer = support::send(&runtime, &stack.gateway_url(), request);
        assert!(answer.succeeded(), "{answer:?}");
    }

    let parent = TraceParent::new(true);
    let mut sampled = support::request(stack.model(), "sampled", long, true);
    sampled.traceparent = Some(parent.header());
    let answer = support::send(&runtime, &stack.gateway_url(), &sampled);
    assert!(answer.succeeded(), "{answer:?}");
    let expected = Expectation {
        path: RequestPath::PrefillDecode,
        streaming: true,
        prefix_hit: false,
    };
    let tree = collect::wait_for_trace(&receiver, &parent.trace_id, &expected, WAIT)
        .unwrap_or_else(|mismatch| panic!("the sampled caller's trace: {mismatch}"));
    assert_eq!(tree.roots[0].span.parent_span_id(), parent.span_id);
    let seen: HashSet<&str> = tree.nodes().iter().map(|n| n.service()).collect();
    for service in [services::SCHEDULER, services::PD_PROXY, services::PREFILL] {
        assert!(
            seen.contains(service),
            "{service} honoured the sampled parent"
        );
    }

    let mut allowed: HashSet<String> = support::export_barrier(&stack, &receiver, &runtime)
        .into_iter()
        .collect();
    allowed.insert(parent.trace_id.clone());
    let unexpected: Vec<String> = receiver
        .spans()
        .iter()
        .filter(|s| !allowed.contains(&s.trace_id()))
        .map(|s| format!("{} from {:?}", s.name(), s.service_name))
        .collect();
    assert!(unexpected.is_empty(), "exported at ratio 0: {unexpected:?}");
}
