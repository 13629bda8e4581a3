//! The attribute registry: every `llm_d.*` and `gen_ai.*` key, span name and
//! event name the project records, with its value kind and meaning, plus the
//! denylist of content keys that must never be recorded.
//!
//! This file is the single source of truth. It has no dependencies so that
//! two crates compile it: `llmd-runtime` (which exposes it and generates
//! `docs/attributes.md` from it) and `llmd-macros` (which checks keys, names
//! and value kinds against it when user code compiles).

/// The kind of value an attribute key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// A signed 64-bit integer (counts, sizes, ports, status codes).
    Int,
    /// A 64-bit float (ratios, scores, durations).
    Float,
    /// A boolean decision or flag.
    Bool,
    /// A bounded string: a `&'static str`, an enum label or an `Identifier`.
    Str,
    /// An array of bounded strings (for example finish reasons).
    StrArray,
}

impl ValueKind {
    /// The kind's name as written in documentation and in user declarations.
    pub const fn name(self) -> &'static str {
        match self {
            ValueKind::Int => "int",
            ValueKind::Float => "float",
            ValueKind::Bool => "bool",
            ValueKind::Str => "string",
            ValueKind::StrArray => "string[]",
        }
    }

    /// Parses a kind name as accepted in user declarations.
    pub fn parse(name: &str) -> Option<ValueKind> {
        Some(match name {
            "int" => ValueKind::Int,
            "float" => ValueKind::Float,
            "bool" => ValueKind::Bool,
            "string" | "str" => ValueKind::Str,
            "string[]" | "str[]" => ValueKind::StrArray,
            _ => return None,
        })
    }
}

/// One attribute key of the registry.
#[derive(Clone, Copy, Debug)]
pub struct KeyDef {
    /// The dotted key, e.g. `llm_d.kv_cache.pod_count`.
    pub name: &'static str,
    /// The kind of value the key holds.
    pub kind: ValueKind,
    /// One line on what the value means.
    pub brief: &'static str,
}

/// One span or event name of the registry.
#[derive(Clone, Copy, Debug)]
pub struct NameDef {
    /// The span or event name.
    pub name: &'static str,
    /// One line on what the span or event covers.
    pub brief: &'static str,
}

const fn key(name: &'static str, kind: ValueKind, brief: &'static str) -> KeyDef {
    KeyDef { name, kind, brief }
}

const fn named(name: &'static str, brief: &'static str) -> NameDef {
    NameDef { name, brief }
}

use ValueKind::{Bool, Float, Int, Str, StrArray};

/// Every attribute key the project records, sorted by name.
#[rustfmt::skip]
pub const ATTRIBUTES: &[KeyDef] = &[
    key("error.type", Str, "Low-cardinality class of the error that ended the operation; never the error's message"),
    key("gen_ai.latency.e2e", Float, "vLLM: seconds from arrival to the last token"),
    key("gen_ai.latency.time_in_model_decode", Float, "vLLM: seconds spent in the decode phase"),
    key("gen_ai.latency.time_in_model_inference", Float, "vLLM: seconds spent running the model"),
    key("gen_ai.latency.time_in_model_prefill", Float, "vLLM: seconds spent in the prefill phase"),
    key("gen_ai.latency.time_in_queue", Float, "vLLM: seconds spent waiting in the scheduler queue"),
    key("gen_ai.latency.time_to_first_token", Float, "vLLM: seconds from arrival to the first token"),
    key("gen_ai.operation.name", Str, "GenAI operation: chat, text_completion, ..."),
    key("gen_ai.provider.name", Str, "GenAI provider, e.g. vllm"),
    key("gen_ai.request.id", Str, "The request id shared by every hop (X-Request-Id)"),
    key("gen_ai.request.max_tokens", Int, "Maximum number of tokens the request may generate"),
    key("gen_ai.request.model", Str, "Model name the client asked for"),
    key("gen_ai.request.n", Int, "Number of completions asked for (only when not 1)"),
    key("gen_ai.request.stream", Bool, "Whether the client asked for a streamed response"),
    key("gen_ai.request.temperature", Float, "Sampling temperature asked for (only when non-zero)"),
    key("gen_ai.request.top_p", Float, "Nucleus sampling top_p asked for (only when non-zero)"),
    key("gen_ai.response.finish_reasons", StrArray, "Why generation stopped, one per choice"),
    key("gen_ai.response.id", Str, "Id of the response as returned by the server"),
    key("gen_ai.response.model", Str, "Model name that produced the response"),
    key("gen_ai.response.time_to_first_chunk", Float, "Seconds until the first streamed chunk reached this hop"),
    key("gen_ai.usage.cache_read.input_tokens", Int, "Input tokens served from the prefix cache"),
    key("gen_ai.usage.completion_tokens", Int, "vLLM: number of generated tokens"),
    key("gen_ai.usage.input_tokens", Int, "Number of input (prompt) tokens"),
    key("gen_ai.usage.output_tokens", Int, "Number of output (generated) tokens"),
    key("gen_ai.usage.prompt_tokens", Int, "vLLM: number of prompt tokens"),
    key("http.request.method", Str, "HTTP method of the request"),
    key("http.response.status_code", Int, "HTTP status code of the response"),
    key("http.route", Str, "Matched route template, never the raw path or query"),
    key("llm_d.epp.pd.disaggregation_used", Bool, "Whether the request was sent for prefill/decode disaggregation"),
    key("llm_d.epp.pd.prefill_pod_address", Str, "Address of the prefill pod chosen"),
    key("llm_d.epp.pd.prefill_pod_port", Int, "Port of the prefill pod chosen"),
    key("llm_d.epp.pd.reason", Str, "Why disaggregation was or was not used"),
    key("llm_d.epp.profile_handler.decision", Str, "P/D decision: decode_only or prefill_decode"),
    key("llm_d.epp.profile_handler.decode_failed", Bool, "Whether the decode profile found no endpoint"),
    key("llm_d.epp.profile_handler.executed_profiles", Int, "Number of scheduling profiles run"),
    key("llm_d.epp.profile_handler.input_tokens", Int, "Prompt length in tokens seen by the decider"),
    key("llm_d.epp.profile_handler.selected_profile", Str, "Name of the profile whose pick routes the request"),
    key("llm_d.epp.profile_handler.total_profiles", Int, "Number of scheduling profiles configured"),
    key("llm_d.epp.scorer.candidate_endpoints", Int, "Number of endpoints offered to the scorer"),
    key("llm_d.epp.scorer.endpoints_scored", Int, "Number of endpoints that received a non-zero score"),
    key("llm_d.epp.scorer.name", Str, "Configured name of the scorer plugin"),
    key("llm_d.epp.scorer.score.avg", Float, "Mean score over the candidates"),
    key("llm_d.epp.scorer.score.max", Float, "Highest score over the candidates"),
    key("llm_d.epp.scorer.type", Str, "Type of the scorer plugin"),
    key("llm_d.epp.scorer.weight", Int, "Weight of the scorer in its profile"),
    key("llm_d.kv_cache.block_hit_ratio", Float, "Share of the prompt's blocks found on the best pod"),
    key("llm_d.kv_cache.block_keys.count", Int, "Number of block keys computed for the prompt"),
    key("llm_d.kv_cache.blocks_found", Int, "Longest run of prompt blocks found on any candidate"),
    key("llm_d.kv_cache.lookup.blocks_found", Int, "Blocks found by the storage lookup before the first miss"),
    key("llm_d.kv_cache.lookup.cache_hit", Bool, "Whether the lookup found at least one block"),
    key("llm_d.kv_cache.lookup.pod_filter_count", Int, "Number of candidate pods the lookup was limited to"),
    key("llm_d.kv_cache.pod_count", Int, "Number of candidate pods scored"),
    key("llm_d.kv_cache.score.avg", Float, "Mean prefix score over the candidates"),
    key("llm_d.kv_cache.score.max", Float, "Highest prefix score over the candidates"),
    key("llm_d.kv_cache.scorer.algorithm", Str, "Scoring algorithm, e.g. longest_prefix"),
    key("llm_d.kv_cache.scorer.key_count", Int, "Number of block keys the scorer walked"),
    key("llm_d.kv_cache.scorer.pods_scored", Int, "Number of pods with a non-zero prefix score"),
    key("llm_d.kv_cache.token_count", Int, "Number of prompt tokens"),
    key("llm_d.pd_proxy.connector", Str, "KV connector: nixlv2, shared-storage or sglang"),
    key("llm_d.pd_proxy.coordinator_overhead_ms", Float, "Milliseconds the proxy itself added to the request"),
    key("llm_d.pd_proxy.decode.concurrent_with_prefill", Bool, "sglang: decode ran concurrently with prefill"),
    key("llm_d.pd_proxy.decode.data_parallel", Bool, "Whether data-parallel routing chose the decoder rank"),
    key("llm_d.pd_proxy.decode.duration_ms", Float, "Milliseconds the decode leg took"),
    key("llm_d.pd_proxy.decode.status_code", Int, "HTTP status of the decoder's response"),
    key("llm_d.pd_proxy.decode.streaming", Bool, "Whether the decode leg streamed"),
    key("llm_d.pd_proxy.decode.target", Str, "host:port of the decoder"),
    key("llm_d.pd_proxy.denied_target", Str, "Prefill target refused by SSRF protection"),
    key("llm_d.pd_proxy.disaggregation_used", Bool, "Whether the proxy ran a prefill leg"),
    key("llm_d.pd_proxy.error", Str, "Class of proxy-level failure, e.g. ssrf_denied"),
    key("llm_d.pd_proxy.prefill.async", Bool, "sglang: prefill was fired asynchronously"),
    key("llm_d.pd_proxy.prefill.duration_ms", Float, "Milliseconds the prefill leg took"),
    key("llm_d.pd_proxy.prefill.status_code", Int, "HTTP status of the prefill response"),
    key("llm_d.pd_proxy.prefill_candidates", Int, "Number of prefill targets offered in the header"),
    key("llm_d.pd_proxy.prefill_target", Str, "host:port of the prefill target used"),
    key("llm_d.pd_proxy.reason", Str, "Why disaggregation was or was not used, e.g. no_prefill_header"),
    key("llm_d.pd_proxy.request_id", Str, "The X-Request-Id used on both legs"),
    key("llm_d.pd_proxy.request_path", Str, "API path of the request, e.g. /v1/chat/completions"),
    key("llm_d.pd_proxy.total_duration_ms", Float, "Milliseconds from request arrival to the end of the response"),
    key("llm_d.pd_proxy.true_ttft_ms", Float, "Milliseconds until the first generated token reached the proxy"),
    key("server.address", Str, "Host name or address of the server"),
    key("server.port", Int, "Port of the server"),
    key("url.scheme", Str, "URL scheme of the request (http or https)"),
];

/// Every span name the project emits that lies outside the `llm_d.*` and
/// `gen_ai.*` namespaces, or is part of the documented trace.
#[rustfmt::skip]
pub const SPANS: &[NameDef] = &[
    named("gateway.request", "Top-level SERVER span of the scheduler gateway"),
    named("llm_d.epp.prerequest.pd_disaggregation", "Sets x-prefiller-host-port for the P/D proxy"),
    named("llm_d.epp.profile_handler.pick", "P/D profile decision for the request"),
    named("llm_d.epp.scorer.kv_cache_utilization", "KV-cache utilisation scorer"),
    named("llm_d.epp.scorer.load_aware", "Load-aware scorer"),
    named("llm_d.epp.scorer.prefix_cache", "Precise prefix-cache scorer"),
    named("llm_d.epp.scorer.queue", "Queue-depth scorer"),
    named("llm_d.kv_cache.get_scores", "Prefix-cache scores of candidate pods for a prompt"),
    named("llm_d.kv_cache.scorer.compute", "Longest-prefix scoring over the lookup result"),
    named("llm_d.kv_cache.storage.lookup", "Block-key lookup in the KV block index"),
    named("llm_d.pd_proxy.decode", "Decode leg of the P/D proxy"),
    named("llm_d.pd_proxy.prefill", "Prefill leg of the P/D proxy"),
    named("llm_d.pd_proxy.request", "Top-level SERVER span of the P/D proxy"),
    named("llm_request", "vLLM's span for one finished request"),
];

/// Every span event name the project emits.
#[rustfmt::skip]
pub const EVENTS: &[NameDef] = &[
    named("llm_d.pd_proxy.first_token", "The first generated token reached the proxy"),
    named("llm_d.pd_proxy.prefill.retry", "A failed prefill attempt is being retried"),
];

/// GenAI semantic-convention keys that carry prompt or response content.
/// They are opt-in in the conventions and never recorded by this project.
pub const CONTENT_KEYS: &[&str] = &[
    "gen_ai.completion",
    "gen_ai.input.messages",
    "gen_ai.memory.query.text",
    "gen_ai.memory.records",
    "gen_ai.output.messages",
    "gen_ai.prompt",
    "gen_ai.retrieval.documents",
    "gen_ai.retrieval.query.text",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.tool.definitions",
];

/// Namespaces whose keys and names must come from this registry.
pub const RESERVED_NAMESPACES: &[&str] = &["gen_ai.", "llm_d."];

/// Looks up an attribute key.
pub fn find_key(name: &str) -> Option<&'static KeyDef> {
    ATTRIBUTES.iter().find(|k| k.name == name)
}

/// Whether `name` is a denylisted content key, or lies under one.
pub fn is_content_key(name: &str) -> bool {
    CONTENT_KEYS
        .iter()
        .any(|c| name == *c || (name.starts_with(c) && name.as_bytes().get(c.len()) == Some(&b'.')))
}

/// Whether `name` lies in a namespace reserved to this registry.
pub fn is_reserved(name: &str) -> bool {
    RESERVED_NAMESPACES.iter().any(|ns| name.starts_with(ns))
}

/// Whether `name` is well formed: lowercase ASCII segments of letters,
/// digits and `_`, joined by single dots.
pub fn is_well_formed(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}
