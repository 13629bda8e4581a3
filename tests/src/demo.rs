//! The demo: a few chat requests through the gateway that take every path
//! (decode only, P/D over NIXL v2, a prefix-cache hit; streamed and not),
//! each followed by its trace, printed as a tree and checked against the
//! shape its path must have.

use crate::client::{self, ChatOutcome, ChatRequest};
use crate::collect::{self, TraceMismatch};
use crate::shape::{Expectation, RequestPath};
use crate::stack::Stack;
use crate::trace_tree::TraceTree;
use llmd_runtime::testing::otlp_receiver::OtlpReceiver;
use std::io::Write;
use std::time::Duration;

/// How long the demo waits for one request's trace.
pub const TRACE_TIMEOUT: Duration = Duration::from_secs(20);

/// Tokens generated per demo request.
const MAX_TOKENS: u32 = 12;

/// One request of the demo.
#[derive(Clone, Debug)]
pub struct DemoRequest {
    /// What it shows.
    pub label: String,
    /// The request (with its `x-request-id`).
    pub request: ChatRequest,
    /// The trace it must produce.
    pub expected: Expectation,
}

/// A prompt of `words` whitespace-separated words (the simulator's
/// tokens), unique to `run_id` from its first word, so no earlier run's
/// cache can match it.
pub fn prompt(run_id: &str, topic: &str, words: usize) -> String {
    let mut text = format!("{run_id} {topic}:");
    for i in 0..words.saturating_sub(2) {
        text.push_str(&format!(" note-{i}"));
    }
    text
}

/// The demo's requests, in order: a short prompt (decode only), a long
/// uncached prompt above `non_cached_tokens` (P/D, streamed), the same
/// long prompt again (prefix-cache hit on the decode pod that served it:
/// decode only), and a short streamed prompt.
pub fn requests(model: &str, non_cached_tokens: usize, run_id: &str) -> Vec<DemoRequest> {
    let long = prompt(
        run_id,
        "summarize these release notes",
        non_cached_tokens * 2,
    );
    let planned = [
        (
            "decode only: short prompt",
            prompt(run_id, "say hello", 8),
            false,
            RequestPath::DecodeOnly,
            false,
        ),
        (
            "P/D over NIXL v2: long uncached prompt, streamed",
            long.clone(),
            true,
            RequestPath::PrefillDecode,
            false,
        ),
        (
            "prefix-cache hit: the same long prompt again",
            long,
            false,
            RequestPath::DecodeOnly,
            true,
        ),
        (
            "decode only: short prompt, streamed",
            prompt(run_id, "count to three", 8),
            true,
            RequestPath::DecodeOnly,
            false,
        ),
    ];
    planned
        .into_iter()
        .enumerate()
        .map(|(i, (label, text, stream, path, prefix_hit))| DemoRequest {
            label: label.to_owned(),
            request: ChatRequest {
                stream,
                max_tokens: MAX_TOKENS,
                request_id: Some(format!("{run_id}-{}", i + 1)),
                ..ChatRequest::new(model, &text)
            },
            expected: Expectation {
                path,
                streaming: stream,
                prefix_hit,
            },
        })
        .collect()
}

/// How one demo request went.
#[derive(Debug)]
pub struct DemoResult {
    /// The request.
    pub request: DemoRequest,
    /// The answer, or why there was none.
    pub outcome: Result<ChatOutcome, String>,
    /// The trace, or how it differs from the expected one.
    pub trace: Result<TraceTree, TraceMismatch>,
}

impl DemoResult {
    /// Whether the request succeeded and its trace is as expected; a
    /// missing trace is accepted when the sampler does not keep every
    /// trace (`every_trace_sampled` false).
    pub fn passed(&self, every_trace_sampled: bool) -> bool {
        let answered = self.outcome.as_ref().is_ok_and(ChatOutcome::succeeded);
        let traced = match &self.trace {
            Ok(_) => true,
            Err(TraceMismatch::Missing) => !every_trace_sampled,
            Err(TraceMismatch::Shape { .. }) => false,
        };
        answered && traced
    }
}

/// Sends the demo's requests one after the other through the stack's
/// gateway, waits for each one's trace and prints it to `out`; returns
/// whether every request succeeded with the expected trace.
pub fn run(
    stack: &Stack,
    receiver: &OtlpReceiver,
    runtime: &tokio::runtime::Runtime,
    every_trace_sampled: bool,
    run_id: &str,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let client = match client::http_client() {
        Ok(client) => client,
        Err(error) => {
            writeln!(out, "✗ {error}")?;
            return Ok(false);
        }
    };
    let planned = requests(stack.model(), stack.non_cached_tokens(), run_id);
    let count = planned.len();
    let mut all_passed = true;
    for (i, request) in planned.into_iter().enumerate() {
        writeln!(out, "\n[{}/{count}] {}", i + 1, request.label)?;
        let outcome = runtime
            .block_on(client::chat(
                &client,
                &stack.gateway_url(),
                &request.request,
            ))
            .map_err(|error| error.to_string());
        print_outcome(out, &outcome)?;
        let trace = match &request.request.request_id {
            Some(id) => collect::wait_for_request(receiver, id, &request.expected, TRACE_TIMEOUT),
            None => Err(TraceMismatch::Missing),
        };
        print_trace(out, &trace, every_trace_sampled)?;
        let result = DemoResult {
            request,
            outcome,
            trace,
        };
        all_passed &= result.passed(every_trace_sampled);
    }
    Ok(all_passed)
}

fn print_outcome(
    out: &mut dyn Write,
    outcome: &Result<ChatOutcome, String>,
) -> std::io::Result<()> {
    match outcome {
        Ok(answer) if answer.succeeded() => {
            let usage = answer.usage.map_or_else(String::new, |u| {
                format!(
                    ", {} prompt + {} completion tokens",
                    u.prompt_tokens, u.completion_tokens
                )
            });
            let chunks = if answer.chunks > 0 {
                format!(", {} chunks", answer.chunks)
            } else {
                String::new()
            };
            writeln!(out, "  ✓ HTTP {}{usage}{chunks}", answer.status)
        }
        Ok(answer) => writeln!(
            out,
            "  ✗ HTTP {} (complete answer: {})",
            answer.status, answer.complete
        ),
        Err(error) => writeln!(out, "  ✗ {error}"),
    }
}

fn print_trace(
    out: &mut dyn Write,
    trace: &Result<TraceTree, TraceMismatch>,
    every_trace_sampled: bool,
) -> std::io::Result<()> {
    match trace {
        Ok(tree) => {
            write!(out, "{}", indent(&tree.render()))?;
            writeln!(out, "  ✓ {} spans, the expected shape", tree.len())
        }
        Err(TraceMismatch::Missing) if !every_trace_sampled => {
            writeln!(
                out,
                "  - no trace: not sampled (OTEL_TRACES_SAMPLER_ARG below 1)"
            )
        }
        Err(TraceMismatch::Missing) => {
            writeln!(out, "  ✗ no span arrived within {TRACE_TIMEOUT:?}")
        }
        Err(TraceMismatch::Shape { tree, problems }) => {
            write!(out, "{}", indent(&tree.render()))?;
            for problem in problems {
                writeln!(out, "  ✗ {problem}")?;
            }
            Ok(())
        }
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_prompt_is_over_the_threshold_and_repeated() {
        let planned = requests("m", 100, "run-1");
        assert_eq!(planned.len(), 4);
        let words = |r: &DemoRequest| r.request.prompt.split_whitespace().count();
        assert!(words(&planned[0]) < 100);
        assert!(words(&planned[1]) >= 200);
        assert_eq!(planned[1].request.prompt, planned[2].request.prompt);
        assert!(planned[2].expected.prefix_hit);
        assert_eq!(planned[1].expected.path, RequestPath::PrefillDecode);
        assert!(
            planned
                .iter()
                .all(|r| r.request.prompt.starts_with("run-1 "))
        );
        let ids: Vec<_> = planned
            .iter()
            .filter_map(|r| r.request.request_id.clone())
            .collect();
        assert_eq!(ids, ["run-1-1", "run-1-2", "run-1-3", "run-1-4"]);
    }
}
