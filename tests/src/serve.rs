//! `llmd-stack --serve`: the endpoints, then every trace printed as a tree
//! once it is complete (no new span for [`QUIET`]), until stopped.

use crate::stack::{SCHEDULE_DELAY_MS, Stack};
use crate::trace_tree::TraceTree;
use llmd_runtime::testing::otlp_receiver::{OtlpReceiver, ReceivedSpan};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A trace is printed once no span of it arrived for this long (a few
/// export periods of the children).
pub const QUIET: Duration = Duration::from_millis(4 * SCHEDULE_DELAY_MS + 200);

/// How often `stop` is looked at while no span arrives.
const TICK: Duration = Duration::from_millis(200);

/// The endpoints and a request to try.
pub fn print_endpoints(
    stack: &Stack,
    receiver: &OtlpReceiver,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let gateway = stack.gateway_url();
    let model = stack.model();
    writeln!(out, "\nThe stack is up.")?;
    writeln!(out, "  gateway (OpenAI API): {gateway}/v1")?;
    writeln!(out, "  model:                {model}")?;
    writeln!(
        out,
        "  OTLP receiver:        {} (gRPC)",
        receiver.grpc_endpoint()
    )?;
    writeln!(out, "  component logs:       {}", stack.log_dir().display())?;
    writeln!(
        out,
        "  P/D from {} uncached prompt tokens (whitespace-separated words)",
        stack.non_cached_tokens()
    )?;
    writeln!(out, "\nTry:")?;
    writeln!(
        out,
        "  curl -s {gateway}/v1/chat/completions -H 'content-type: application/json' \\\n    -d '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello there\"}}],\"max_tokens\":16}}'"
    )?;
    writeln!(
        out,
        "\nEach trace is printed when it completes. Ctrl-C stops the stack."
    )
}

/// Prints each new trace once it is complete, until `stop` is set.
pub fn print_traces(
    receiver: &OtlpReceiver,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut watch = TraceWatch::default();
    let mut seen = 0;
    while !stop.load(Ordering::Relaxed) {
        let spans = receiver.wait_for_spans(seen + 1, TICK);
        seen = spans.len();
        for tree in watch.completed(&spans, Instant::now()) {
            writeln!(out, "\n{}", tree.render())?;
            out.flush()?;
        }
    }
    Ok(())
}

/// Which traces were printed, and when each one last grew.
#[derive(Debug, Default)]
pub struct TraceWatch {
    growing: HashMap<String, (usize, Instant)>,
    printed: HashSet<String>,
}

impl TraceWatch {
    /// The traces of `spans` that are complete at `now` and were not
    /// returned before.
    pub fn completed(&mut self, spans: &[ReceivedSpan], now: Instant) -> Vec<TraceTree> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for span in spans {
            *counts.entry(span.trace_id()).or_default() += 1;
        }
        let mut done = Vec::new();
        for (trace_id, count) in counts {
            if self.printed.contains(&trace_id) {
                continue;
            }
            let entry = self.growing.entry(trace_id.clone()).or_insert((count, now));
            if entry.0 != count {
                *entry = (count, now);
            } else if now.duration_since(entry.1) >= QUIET {
                self.growing.remove(&trace_id);
                self.printed.insert(trace_id.clone());
                done.push(TraceTree::build(&trace_id, spans));
            }
        }
        done.sort_by_key(|tree| {
            tree.roots
                .first()
                .map_or(0, |root| root.span.span.start_time_unix_nano)
        });
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmd_runtime::testing::otlp_receiver::Transport;
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn span(trace: u8, id: u8) -> ReceivedSpan {
        ReceivedSpan {
            service_name: None,
            transport: Transport::Grpc,
            span: Span {
                trace_id: vec![trace; 16],
                span_id: vec![id; 8],
                ..Span::default()
            },
        }
    }

    #[test]
    fn a_trace_is_complete_once_it_stops_growing_and_is_returned_once() {
        let mut watch = TraceWatch::default();
        let start = Instant::now();
        let mut spans = vec![span(1, 1)];
        assert!(watch.completed(&spans, start).is_empty());
        spans.push(span(1, 2));
        let later = start + QUIET;
        assert!(watch.completed(&spans, later).is_empty(), "it grew");
        let done = watch.completed(&spans, later + QUIET);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].len(), 2);
        assert!(watch.completed(&spans, later + QUIET * 2).is_empty());
    }
}
