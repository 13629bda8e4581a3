//! Waiting for a request's trace at the receiver: found by request id or
//! trace id, complete once it has the expected shape, given up after a
//! bounded time (the receiver wakes the wait on every arrival, so nothing
//! sleeps).

use crate::shape::{self, Expectation};
use crate::trace_tree::TraceTree;
use llmd_runtime::testing::otlp_receiver::{OtlpReceiver, ReceivedSpan};
use std::time::{Duration, Instant};

/// The request-id attributes a request's spans carry (the gateway's
/// `x-request-id`).
const REQUEST_ID_KEYS: &[&str] = &["gen_ai.request.id", "llm_d.pd_proxy.request_id"];

/// How a wait for a trace ended, when it did not match.
#[derive(Clone, Debug)]
pub enum TraceMismatch {
    /// No span of the request arrived.
    Missing,
    /// The trace arrived but does not have the expected shape.
    Shape {
        /// The trace as received.
        tree: TraceTree,
        /// What is wrong with it.
        problems: Vec<String>,
    },
}

impl std::fmt::Display for TraceMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TraceMismatch::Missing => f.write_str("no span of the request was received"),
            TraceMismatch::Shape { tree, problems } => {
                write!(f, "{}\n{}", problems.join("\n"), tree.render())
            }
        }
    }
}

/// The trace id of the request whose `x-request-id` is `request_id`.
pub fn trace_id_of_request(spans: &[ReceivedSpan], request_id: &str) -> Option<String> {
    spans
        .iter()
        .find(|span| {
            REQUEST_ID_KEYS
                .iter()
                .any(|key| span.string_attribute(key) == Some(request_id))
        })
        .map(ReceivedSpan::trace_id)
}

/// Waits until the trace of the request `request_id` has the `expected`
/// shape, for at most `timeout`.
pub fn wait_for_request(
    receiver: &OtlpReceiver,
    request_id: &str,
    expected: &Expectation,
    timeout: Duration,
) -> Result<TraceTree, TraceMismatch> {
    wait(
        receiver,
        timeout,
        |spans| trace_id_of_request(spans, request_id).map(|id| TraceTree::build(&id, spans)),
        expected,
    )
}

/// Waits until trace `trace_id` has the `expected` shape, for at most
/// `timeout`.
pub fn wait_for_trace(
    receiver: &OtlpReceiver,
    trace_id: &str,
    expected: &Expectation,
    timeout: Duration,
) -> Result<TraceTree, TraceMismatch> {
    wait(
        receiver,
        timeout,
        |spans| {
            let tree = TraceTree::build(trace_id, spans);
            (!tree.is_empty()).then_some(tree)
        },
        expected,
    )
}

fn wait(
    receiver: &OtlpReceiver,
    timeout: Duration,
    find: impl Fn(&[ReceivedSpan]) -> Option<TraceTree>,
    expected: &Expectation,
) -> Result<TraceTree, TraceMismatch> {
    let deadline = Instant::now() + timeout;
    let mut spans = receiver.spans();
    loop {
        let outcome = match find(&spans) {
            None => Err(TraceMismatch::Missing),
            Some(tree) => {
                let problems = shape::problems(&tree, expected);
                if problems.is_empty() {
                    return Ok(tree);
                }
                Err(TraceMismatch::Shape { tree, problems })
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let seen = spans.len();
        spans = receiver.wait_for_spans(seen + 1, left);
        if spans.len() <= seen {
            return outcome;
        }
    }
}

/// A span a wait is for: its service (a name, or the start of one) and,
/// if given, its name.
pub type Wanted<'a> = (&'a str, Option<&'a str>);

/// Waits until the receiver holds, in trace `trace_id`, a span matching
/// each of `wanted`; returns those still missing at `timeout` (empty when
/// all arrived).
///
/// Also a barrier: each process exports its spans in the order they
/// ended, so once a later request's spans are in from a process, any span
/// of an earlier request from that process would be too.
pub fn wait_for_spans(
    receiver: &OtlpReceiver,
    trace_id: &str,
    wanted: &[Wanted<'_>],
    timeout: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let spans = receiver.spans();
        let missing: Vec<String> = wanted
            .iter()
            .filter(|(service, name)| {
                !spans.iter().any(|s| {
                    s.trace_id() == trace_id
                        && s.service_name
                            .as_deref()
                            .is_some_and(|n| n.starts_with(service))
                        && name.is_none_or(|name| s.name() == name)
                })
            })
            .map(|(service, name)| format!("{} from {service}", name.unwrap_or("any span")))
            .collect();
        let left = deadline.saturating_duration_since(Instant::now());
        if missing.is_empty() || left.is_zero() {
            return missing;
        }
        receiver.wait_for_spans(spans.len() + 1, left);
    }
}
