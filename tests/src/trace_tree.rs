//! Received spans as trees (children under their parent span, in start
//! order) and their indented rendering.

use llmd_runtime::testing::otlp_receiver::ReceivedSpan;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use std::collections::HashSet;
use std::fmt::Write as _;

/// Attributes shown in the rendering, in this order, when a span has
/// them.
pub const SHOWN_ATTRIBUTES: &[&str] = &[
    "llm_d.epp.profile_handler.decision",
    "llm_d.epp.profile_handler.input_tokens",
    "llm_d.epp.pd.disaggregation_used",
    "llm_d.epp.pd.reason",
    "llm_d.epp.scorer.score.max",
    "llm_d.kv_cache.block_hit_ratio",
    "llm_d.kv_cache.blocks_found",
    "llm_d.kv_cache.lookup.cache_hit",
    "llm_d.kv_cache.scorer.pods_scored",
    "llm_d.pd_proxy.connector",
    "llm_d.pd_proxy.disaggregation_used",
    "llm_d.pd_proxy.reason",
    "llm_d.pd_proxy.prefill.status_code",
    "llm_d.pd_proxy.decode.streaming",
    "llm_d.pd_proxy.true_ttft_ms",
    "llm_d.pd_proxy.total_duration_ms",
    "llm_d.pd_proxy.coordinator_overhead_ms",
    "http.response.status_code",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.completion_tokens",
    "gen_ai.latency.time_to_first_token",
    "error.type",
];

/// One span and the spans under it.
#[derive(Clone, Debug)]
pub struct Node {
    /// The span.
    pub span: ReceivedSpan,
    /// Its children, by start time.
    pub children: Vec<Node>,
}

/// Every received span of one trace.
#[derive(Clone, Debug)]
pub struct TraceTree {
    /// The trace id (32 hex digits).
    pub trace_id: String,
    /// Spans whose parent was not received (normally one: the root), by
    /// start time.
    pub roots: Vec<Node>,
}

impl TraceTree {
    /// The tree of the spans of `spans` in trace `trace_id`.
    pub fn build(trace_id: &str, spans: &[ReceivedSpan]) -> TraceTree {
        let mut in_trace: Vec<ReceivedSpan> = spans
            .iter()
            .filter(|s| s.trace_id() == trace_id)
            .cloned()
            .collect();
        in_trace.sort_by_key(|s| s.span.start_time_unix_nano);
        let ids: HashSet<String> = in_trace.iter().map(ReceivedSpan::span_id).collect();
        let roots = in_trace
            .iter()
            .filter(|s| !ids.contains(&s.parent_span_id()))
            .map(|root| Node::grow(root, &in_trace))
            .collect();
        TraceTree {
            trace_id: trace_id.to_owned(),
            roots,
        }
    }

    /// Every node, depth first.
    pub fn nodes(&self) -> Vec<&Node> {
        let mut all = Vec::new();
        for root in &self.roots {
            root.collect(&mut all);
        }
        all
    }

    /// The nodes whose span is named `name`.
    pub fn named(&self, name: &str) -> Vec<&Node> {
        self.nodes()
            .into_iter()
            .filter(|n| n.span.name() == name)
            .collect()
    }

    /// Number of spans.
    pub fn len(&self) -> usize {
        self.nodes().len()
    }

    /// Whether no span was received.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The indented tree: one line per span with its service, kind,
    /// duration and the [`SHOWN_ATTRIBUTES`] it has.
    pub fn render(&self) -> String {
        let mut out = format!("trace {}\n", self.trace_id);
        for root in &self.roots {
            root.render(&mut out);
        }
        out
    }
}

impl Node {
    fn grow(span: &ReceivedSpan, all: &[ReceivedSpan]) -> Node {
        let id = span.span_id();
        Node {
            span: span.clone(),
            children: all
                .iter()
                .filter(|s| s.parent_span_id() == id)
                .map(|child| Node::grow(child, all))
                .collect(),
        }
    }

    fn collect<'a>(&'a self, all: &mut Vec<&'a Node>) {
        all.push(self);
        for child in &self.children {
            child.collect(all);
        }
    }

    /// The direct children named `name`.
    pub fn children_named(&self, name: &str) -> Vec<&Node> {
        self.children
            .iter()
            .filter(|c| c.span.name() == name)
            .collect()
    }

    /// The span's service name ("?" when the resource had none).
    pub fn service(&self) -> &str {
        self.span.service_name.as_deref().unwrap_or("?")
    }

    /// The span's duration in milliseconds.
    pub fn duration_ms(&self) -> f64 {
        let span = &self.span.span;
        span.end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano) as f64
            / 1e6
    }

    /// Whether the span's kind is SERVER.
    pub fn is_server(&self) -> bool {
        self.span.span.kind == SpanKind::Server as i32
    }

    /// Whether the span's status is Error.
    pub fn is_error(&self) -> bool {
        self.span
            .span
            .status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32)
    }

    /// Attribute `key` as text (numbers and booleans formatted).
    pub fn attribute_text(&self, key: &str) -> Option<String> {
        self.span.attribute(key).map(value_text)
    }

    /// Attribute `key` as a number (integer or float).
    pub fn attribute_number(&self, key: &str) -> Option<f64> {
        match self.span.attribute(key)? {
            Value::IntValue(n) => Some(*n as f64),
            Value::DoubleValue(x) => Some(*x),
            _ => None,
        }
    }

    /// Renders this node as a root, then its subtree.
    fn render(&self, out: &mut String) {
        self.render_line(out, "");
        self.render_children(out, "");
    }

    fn render_children(&self, out: &mut String, prefix: &str) {
        let count = self.children.len();
        for (i, child) in self.children.iter().enumerate() {
            let last = i + 1 == count;
            child.render_line(
                out,
                &format!("{prefix}{}", if last { "└── " } else { "├── " }),
            );
            child.render_children(
                out,
                &format!("{prefix}{}", if last { "    " } else { "│   " }),
            );
        }
    }

    fn render_line(&self, out: &mut String, lead: &str) {
        let kind = if self.is_server() { " SERVER" } else { "" };
        let status = if self.is_error() { " ERROR" } else { "" };
        let _ = write!(
            out,
            "{lead}{} ({:.1} ms) [{}{kind}]{status}",
            self.span.name(),
            self.duration_ms(),
            self.service(),
        );
        let shown: Vec<String> = SHOWN_ATTRIBUTES
            .iter()
            .filter_map(|key| {
                self.attribute_text(key)
                    .map(|v| format!("{}={v}", short_label(key)))
            })
            .collect();
        if !shown.is_empty() {
            let _ = write!(out, "  {}", shown.join(" "));
        }
        out.push('\n');
    }
}

/// Last segments that say little alone; the segment before them is kept.
const GENERIC_LABELS: &[&str] = &["max", "avg", "status_code"];

/// The last segment of `key`, or the last two when the last is generic.
fn short_label(key: &str) -> &str {
    let mut dots = key.rmatch_indices('.').map(|(i, _)| i);
    let Some(last) = dots.next() else { return key };
    let label = &key[last + 1..];
    match dots.next() {
        Some(before) if GENERIC_LABELS.contains(&label) => &key[before + 1..],
        _ => label,
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::StringValue(s) => s.clone(),
        Value::BoolValue(b) => b.to_string(),
        Value::IntValue(n) => n.to_string(),
        Value::DoubleValue(x) => format!("{x:.3}"),
        Value::ArrayValue(items) => format!("[{} items]", items.values.len()),
        _ => "…".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmd_runtime::testing::otlp_receiver::Transport;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn span(name: &str, id: u8, parent: Option<u8>, start: u64) -> ReceivedSpan {
        ReceivedSpan {
            service_name: Some("svc".into()),
            transport: Transport::Grpc,
            span: Span {
                trace_id: vec![7; 16],
                span_id: vec![id; 8],
                parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
                name: name.into(),
                start_time_unix_nano: start,
                end_time_unix_nano: start + 2_000_000,
                attributes: vec![KeyValue {
                    key: "llm_d.epp.profile_handler.decision".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue("decode_only".into())),
                    }),
                    ..KeyValue::default()
                }],
                ..Span::default()
            },
        }
    }

    #[test]
    fn children_hang_under_their_parent_in_start_order() {
        let spans = [
            span("b", 3, Some(1), 30),
            span("root", 1, None, 10),
            span("a", 2, Some(1), 20),
            span("a.1", 4, Some(2), 25),
        ];
        let tree = TraceTree::build(&"07".repeat(16), &spans);
        assert_eq!(tree.roots.len(), 1);
        let root = &tree.roots[0];
        let names: Vec<&str> = root.children.iter().map(|c| c.span.name()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(root.children[0].children_named("a.1").len(), 1);
        assert_eq!(tree.len(), 4);
        let text = tree.render();
        assert!(
            text.contains("root (2.0 ms) [svc]  decision=decode_only"),
            "{text}"
        );
        assert!(text.contains("├── a (2.0 ms)"), "{text}");
        assert!(text.contains("│   └── a.1"), "{text}");
        assert!(text.contains("└── b"), "{text}");
    }

    #[test]
    fn labels_keep_a_qualifier_for_generic_names() {
        assert_eq!(
            short_label("llm_d.kv_cache.block_hit_ratio"),
            "block_hit_ratio"
        );
        assert_eq!(short_label("llm_d.epp.scorer.score.max"), "score.max");
        assert_eq!(
            short_label("http.response.status_code"),
            "response.status_code"
        );
        assert_eq!(short_label("plain"), "plain");
    }

    #[test]
    fn a_span_whose_parent_is_missing_is_a_root() {
        let tree = TraceTree::build(&"07".repeat(16), &[span("orphan", 5, Some(9), 1)]);
        assert_eq!(tree.roots.len(), 1);
        assert!(TraceTree::build(&"08".repeat(16), &[span("x", 1, None, 1)]).is_empty());
    }
}
