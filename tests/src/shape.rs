//! The trace each request path must produce (the tree of ARCHITECTURE.md),
//! checked against a received [`TraceTree`]: every problem is reported,
//! not just the first.

use crate::stack::services;
use crate::trace_tree::{Node, TraceTree};

/// How the scheduler should route the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestPath {
    /// The decode pod serves the whole request.
    DecodeOnly,
    /// A prefill pod first (NIXL v2), then the decode pod.
    PrefillDecode,
}

impl RequestPath {
    /// The `llm_d.epp.profile_handler.decision` of the path.
    pub fn decision(self) -> &'static str {
        match self {
            RequestPath::DecodeOnly => "decode_only",
            RequestPath::PrefillDecode => "prefill_decode",
        }
    }
}

/// What a request's trace must show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// The routing.
    pub path: RequestPath,
    /// Whether the client streamed the answer.
    pub streaming: bool,
    /// Whether the prompt must be found in the chosen decode pod's prefix
    /// cache (a hit ratio above 0).
    pub prefix_hit: bool,
}

/// The problems of `tree` against `expected`; empty when the trace has the
/// expected shape.
pub fn problems(tree: &TraceTree, expected: &Expectation) -> Vec<String> {
    let mut found = Vec::new();
    let [root] = tree.roots.as_slice() else {
        found.push(format!(
            "expected one root span, got {}: {:?}",
            tree.roots.len(),
            tree.roots.iter().map(|r| r.span.name()).collect::<Vec<_>>()
        ));
        return found;
    };
    let mut check = Checker(&mut found);
    check.node(root, "gateway.request", services::SCHEDULER, true);
    check.scoring(root, expected.prefix_hit);
    if let Some(pick) = check.child(root, "llm_d.epp.profile_handler.pick", services::SCHEDULER) {
        check.attribute(
            pick,
            "llm_d.epp.profile_handler.decision",
            expected.path.decision(),
        );
    }
    if let Some(pre) = check.child(
        root,
        "llm_d.epp.prerequest.pd_disaggregation",
        services::SCHEDULER,
    ) {
        let used = (expected.path == RequestPath::PrefillDecode).to_string();
        check.attribute(pre, "llm_d.epp.pd.disaggregation_used", &used);
    }
    if let Some(proxy) = check.child(root, "llm_d.pd_proxy.request", services::PD_PROXY) {
        check.server(proxy);
        match expected.path {
            RequestPath::DecodeOnly => {
                check.absent(proxy, "llm_d.pd_proxy.prefill");
                let vllm = check.child(proxy, "llm_request", services::DECODE_PREFIX);
                check.vllm(vllm);
            }
            RequestPath::PrefillDecode => {
                check.attribute(proxy, "llm_d.pd_proxy.connector", "nixlv2");
                if let Some(prefill) =
                    check.child(proxy, "llm_d.pd_proxy.prefill", services::PD_PROXY)
                {
                    let vllm = check.child(prefill, "llm_request", services::PREFILL);
                    check.vllm(vllm);
                }
                if let Some(decode) =
                    check.child(proxy, "llm_d.pd_proxy.decode", services::PD_PROXY)
                {
                    check.attribute(
                        decode,
                        "llm_d.pd_proxy.decode.streaming",
                        &expected.streaming.to_string(),
                    );
                    let vllm = check.child(decode, "llm_request", services::DECODE_PREFIX);
                    check.vllm(vllm);
                }
            }
        }
    }
    for node in tree.nodes() {
        if node.is_error() {
            found.push(format!("span {} has status Error", node.span.name()));
        }
    }
    found
}

/// Collects the problems found.
struct Checker<'a>(&'a mut Vec<String>);

impl Checker<'_> {
    /// `node` is named `name` and comes from a service named (or starting
    /// with) `service`.
    fn node(&mut self, node: &Node, name: &str, service: &str, server: bool) {
        if node.span.name() != name {
            self.0
                .push(format!("expected {name}, got {}", node.span.name()));
        }
        if !node.service().starts_with(service) {
            self.0.push(format!(
                "{name} comes from {}, not {service}",
                node.service()
            ));
        }
        if server {
            self.server(node);
        }
    }

    fn server(&mut self, node: &Node) {
        if !node.is_server() {
            self.0
                .push(format!("{} is not a SERVER span", node.span.name()));
        }
    }

    /// The one child of `parent` named `name` from `service`.
    fn child<'n>(&mut self, parent: &'n Node, name: &str, service: &str) -> Option<&'n Node> {
        let children = parent.children_named(name);
        match children.as_slice() {
            [child] => {
                self.node(child, name, service, false);
                Some(child)
            }
            [] => {
                self.0.push(format!(
                    "{} has no child {name} (children: {:?})",
                    parent.span.name(),
                    parent
                        .children
                        .iter()
                        .map(|c| c.span.name())
                        .collect::<Vec<_>>()
                ));
                None
            }
            many => {
                self.0.push(format!(
                    "{} has {} children {name}, expected one",
                    parent.span.name(),
                    many.len()
                ));
                None
            }
        }
    }

    fn absent(&mut self, parent: &Node, name: &str) {
        if !parent.children_named(name).is_empty() {
            self.0.push(format!(
                "{} has an unexpected child {name}",
                parent.span.name()
            ));
        }
    }

    fn attribute(&mut self, node: &Node, key: &str, expected: &str) {
        let actual = node.attribute_text(key);
        if actual.as_deref() != Some(expected) {
            self.0.push(format!(
                "{} has {key} = {actual:?}, expected {expected:?}",
                node.span.name()
            ));
        }
    }

    /// vLLM's `llm_request`: SERVER, with token usage.
    fn vllm(&mut self, node: Option<&Node>) {
        let Some(node) = node else { return };
        self.server(node);
        for key in [
            "gen_ai.usage.prompt_tokens",
            "gen_ai.usage.completion_tokens",
        ] {
            if node.attribute_number(key).is_none() {
                self.0
                    .push(format!("llm_request of {} lacks {key}", node.service()));
            }
        }
    }

    /// The decode profile's prefix-cache scorer, with the KV-cache spans
    /// under it; with `hit`, a block hit ratio above 0.
    fn scoring(&mut self, root: &Node, hit: bool) {
        let scorers = root.children_named("llm_d.epp.scorer.prefix_cache");
        let Some(scorer) = scorers.first() else {
            self.0
                .push("gateway.request has no child llm_d.epp.scorer.prefix_cache".to_owned());
            return;
        };
        let Some(scores) = self.child(scorer, "llm_d.kv_cache.get_scores", services::SCHEDULER)
        else {
            return;
        };
        self.child(scores, "llm_d.kv_cache.storage.lookup", services::SCHEDULER);
        self.child(scores, "llm_d.kv_cache.scorer.compute", services::SCHEDULER);
        let ratio = scores.attribute_number("llm_d.kv_cache.block_hit_ratio");
        match ratio {
            None => self
                .0
                .push("llm_d.kv_cache.get_scores lacks llm_d.kv_cache.block_hit_ratio".to_owned()),
            Some(ratio) if hit && ratio <= 0.0 => {
                self.0
                    .push("expected a prefix-cache hit, block_hit_ratio is 0".to_owned());
            }
            Some(_) => {}
        }
    }
}
