//! End to end, real processes: the collector going away mid-run costs
//! spans, never requests.

mod support;

use llmd_runtime::testing::otlp_receiver::OtlpReceiver;
use llmd_tests::collect;
use llmd_tests::sampling::Sampling;
use llmd_tests::shape::{Expectation, RequestPath};
use support::WAIT;

#[test]
fn requests_keep_succeeding_after_the_collector_goes_away() {
    let receiver = OtlpReceiver::start().expect("receiver");
    let mut stack = support::start_stack("e2e-outage", &receiver, Sampling::ratio(1.0), 2);
    let runtime = support::runtime();
    let long = support::long_words(&stack);

    let before = support::request(stack.model(), "before", long, true);
    assert!(support::send(&runtime, &stack.gateway_url(), &before).succeeded());
    let expected = Expectation {
        path: RequestPath::PrefillDecode,
        streaming: true,
        prefix_hit: false,
    };
    let id = before.request_id.as_deref().expect("an id");
    collect::wait_for_request(&receiver, id, &expected, WAIT)
        .unwrap_or_else(|mismatch| panic!("with the collector up: {mismatch}"));

    drop(receiver);

    let mut failed = Vec::new();
    for (words, stream) in [
        (8, false),
        (long, true),
        (8, true),
        (long, false),
        (8, false),
        (long, true),
    ] {
        let request = support::request(stack.model(), "after", words, stream);
        let answer = support::send(&runtime, &stack.gateway_url(), &request);
        if !answer.succeeded() {
            failed.push(answer);
        }
    }
    assert!(
        failed.is_empty(),
        "requests lost without a collector: {failed:?}"
    );
    stack
        .check_running()
        .unwrap_or_else(|error| panic!("a component died without its collector: {error}"));
}
