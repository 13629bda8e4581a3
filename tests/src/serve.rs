//! `llmd-stack --serve`: the endpoints, then every trace printed as a tree
//! once it is complete (no new span for [`QUIET`]), until stopped.

use crate::stack::{SCHEDULE_DELAY_MS, Stack};
use crate::trace_tree::TraceTree;
use llmd_runtime::testing::otlp_receiver::{OtlpReceiver, ReceivedSpan};
use std::collections::HashMap;
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

/// Prints each new trace once it is complete, until `stop` is set. Spans
/// are taken from the receiver as they arrive and dropped once their trace
/// is printed.
pub fn print_traces(
    receiver: &OtlpReceiver,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut watch = TraceWatch::default();
    while !stop.load(Ordering::Relaxed) {
        let arrived = receiver.take_spans(TICK);
        for tree in watch.completed(arrived, Instant::now()) {
            writeln!(out, "\n{}", tree.render())?;
            out.flush()?;
        }
    }
    Ok(())
}

/// How long a printed trace's id is remembered, so that a span of it
/// arriving late is dropped rather than printed as a trace of its own.
pub const REMEMBERED: Duration = Duration::from_secs(300);

/// The spans of traces still growing, and the traces printed lately.
#[derive(Debug, Default)]
pub struct TraceWatch {
    growing: HashMap<String, Growing>,
    printed: HashMap<String, Instant>,
}

/// A trace not printed yet: its spans so far, and when the last arrived.
#[derive(Debug)]
struct Growing {
    spans: Vec<ReceivedSpan>,
    last_arrival: Instant,
}

impl TraceWatch {
    /// Adds the spans that `arrived` at `now`; gives the traces that are
    /// complete at `now` (none of their spans arrived for [`QUIET`]), each
    /// once, and keeps nothing of them but their id, for [`REMEMBERED`].
    pub fn completed(&mut self, arrived: Vec<ReceivedSpan>, now: Instant) -> Vec<TraceTree> {
        self.printed
            .retain(|_, printed_at| now.duration_since(*printed_at) < REMEMBERED);
        for span in arrived {
            let trace_id = span.trace_id();
            if self.printed.contains_key(&trace_id) {
                continue;
            }
            let growing = self.growing.entry(trace_id).or_insert_with(|| Growing {
                spans: Vec::new(),
                last_arrival: now,
            });
            growing.spans.push(span);
            growing.last_arrival = now;
        }
        let quiet: Vec<String> = self
            .growing
            .iter()
            .filter(|(_, growing)| now.duration_since(growing.last_arrival) >= QUIET)
            .map(|(trace_id, _)| trace_id.clone())
            .collect();
        let mut done: Vec<TraceTree> = quiet
            .into_iter()
            .filter_map(|trace_id| {
                let growing = self.growing.remove(&trace_id)?;
                let tree = TraceTree::build(&trace_id, &growing.spans);
                self.printed.insert(trace_id, now);
                Some(tree)
            })
            .collect();
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
        assert!(watch.completed(vec![span(1, 1)], start).is_empty());
        let later = start + QUIET;
        assert!(
            watch.completed(vec![span(1, 2)], later).is_empty(),
            "it grew"
        );
        let done = watch.completed(Vec::new(), later + QUIET);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].len(), 2);
        assert_eq!(
            watch.growing.len(),
            0,
            "a printed trace's spans are dropped"
        );
        assert!(
            watch
                .completed(vec![span(1, 3)], later + QUIET * 2)
                .is_empty(),
            "a late span of a printed trace is not printed again"
        );
        assert!(watch.completed(Vec::new(), later + QUIET * 4).is_empty());
    }

    #[test]
    fn a_printed_trace_id_is_forgotten_after_a_while() {
        let mut watch = TraceWatch::default();
        let start = Instant::now();
        watch.completed(vec![span(2, 1)], start);
        assert_eq!(watch.completed(Vec::new(), start + QUIET).len(), 1);
        let much_later = start + QUIET + REMEMBERED;
        assert!(watch.completed(vec![span(2, 2)], much_later).is_empty());
        assert_eq!(watch.growing.len(), 1, "remembered no longer");
        assert_eq!(watch.printed.len(), 0);
    }
}
