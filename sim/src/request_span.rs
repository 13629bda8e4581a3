//! vLLM's `llm_request` span: one SERVER span per finished request,
//! parented on the caller's `traceparent`, with vLLM's latency and usage
//! attributes.
//!
//! vLLM creates the span when the request finishes, back-dated to its
//! arrival. The runtime's span API has no start-time option, so this span
//! is started when the request arrives and ended when it finishes: the
//! same interval.

use llmd_runtime::Identifier;
use llmd_runtime::attributes::{key_value, kind};
use llmd_runtime::span::{self, SpanMeta, Started};
use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};
use std::time::Instant;

static LLM_REQUEST: SpanMeta = SpanMeta::new("llm_request", SpanKind::Server);

/// The sampling parameters vLLM records when they are non-zero.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SamplingSummary {
    /// `temperature` (vLLM's default is 1.0).
    pub temperature: f64,
    /// `top_p` (vLLM's default is 1.0).
    pub top_p: f64,
    /// Number of completions.
    pub n: u32,
    /// The maximum number of generated tokens.
    pub max_tokens: usize,
}

/// When a request reached each stage.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    /// Arrival at the server.
    pub arrival: Instant,
    /// Admission into the running set.
    pub scheduled: Instant,
    /// First generated token.
    pub first_token: Instant,
    /// Last generated token.
    pub last_token: Instant,
}

/// What the finished span records.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// The external request id.
    pub request_id: Identifier,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Sampling parameters.
    pub sampling: SamplingSummary,
    /// Stage times.
    pub timeline: Timeline,
}

/// The `llm_request` span of one request (nothing when tracing is off).
#[derive(Debug)]
pub struct RequestSpan(Started);

impl RequestSpan {
    /// Starts the span under `parent` when `enabled`.
    pub fn start(enabled: bool, parent: &Context) -> RequestSpan {
        if !enabled {
            return RequestSpan(Started::Skipped);
        }
        RequestSpan(span::start(&LLM_REQUEST, Some(parent), || {
            span::attributes_with_room([], MAX_ATTRIBUTES)
        }))
    }

    /// Records `record` and ends the span.
    pub fn finish(self, record: &RequestRecord) {
        self.0.set_attributes(|| attributes(record));
        self.0.end();
    }

    /// Ends the span of a request that did not finish (the client left).
    pub fn abort(self) {
        self.0.set_error("aborted");
        self.0.end();
    }
}

/// The most attributes a finished span records: nine always, four
/// sampling parameters when set.
const MAX_ATTRIBUTES: usize = 13;

fn attributes(record: &RequestRecord) -> impl Iterator<Item = KeyValue> {
    let t = &record.timeline;
    let seconds = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64();
    let float = |key, value: f64| key_value::<kind::Float, _>(key, value);
    let always = [
        float(
            "gen_ai.latency.time_to_first_token",
            seconds(t.arrival, t.first_token),
        ),
        float("gen_ai.latency.e2e", seconds(t.arrival, Instant::now())),
        float(
            "gen_ai.latency.time_in_queue",
            seconds(t.arrival, t.scheduled),
        ),
        float(
            "gen_ai.latency.time_in_model_prefill",
            seconds(t.scheduled, t.first_token),
        ),
        float(
            "gen_ai.latency.time_in_model_decode",
            seconds(t.first_token, t.last_token),
        ),
        float(
            "gen_ai.latency.time_in_model_inference",
            seconds(t.scheduled, t.last_token),
        ),
        key_value::<kind::Int, _>("gen_ai.usage.prompt_tokens", record.prompt_tokens),
        key_value::<kind::Int, _>("gen_ai.usage.completion_tokens", record.completion_tokens),
        key_value::<kind::Str, _>("gen_ai.request.id", record.request_id.clone()),
    ];
    // The sampling parameters the request set; they go straight into the
    // span's list, which was made with room for all of them.
    let s = &record.sampling;
    let when_set = [
        (s.top_p != 0.0).then(|| float("gen_ai.request.top_p", s.top_p)),
        (s.max_tokens != 0)
            .then(|| key_value::<kind::Int, _>("gen_ai.request.max_tokens", s.max_tokens)),
        (s.temperature != 0.0).then(|| float("gen_ai.request.temperature", s.temperature)),
        (s.n != 0).then(|| key_value::<kind::Int, _>("gen_ai.request.n", s.n)),
    ];
    always.into_iter().chain(when_set.into_iter().flatten())
}
