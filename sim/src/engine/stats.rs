//! Monotonic counters behind the `/metrics` totals.

use crate::engine::FinishReason;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters since start.
#[derive(Debug, Default)]
pub struct Counters {
    prefix_cache_queries: AtomicU64,
    prefix_cache_hits: AtomicU64,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
    finished_stop: AtomicU64,
    finished_length: AtomicU64,
}

/// A consistent-enough copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterValues {
    /// Prompt tokens looked up in the prefix cache.
    pub prefix_cache_queries: u64,
    /// Prompt tokens found in the prefix cache.
    pub prefix_cache_hits: u64,
    /// Prompt tokens of finished requests.
    pub prompt_tokens: u64,
    /// Generated tokens of finished requests.
    pub generation_tokens: u64,
    /// Requests finished with reason `stop`.
    pub finished_stop: u64,
    /// Requests finished with reason `length`.
    pub finished_length: u64,
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

impl Counters {
    /// Counts one prefix-cache lookup of `queried` tokens, `hit` of them
    /// cached (vLLM counts tokens, not blocks).
    pub fn record_prefix_lookup(&self, queried: usize, hit: usize) {
        add(&self.prefix_cache_queries, queried);
        add(&self.prefix_cache_hits, hit);
    }

    /// Counts a finished request.
    pub fn record_finished(&self, prompt_tokens: usize, generated: usize, reason: FinishReason) {
        add(&self.prompt_tokens, prompt_tokens);
        add(&self.generation_tokens, generated);
        match reason {
            FinishReason::Stop => add(&self.finished_stop, 1),
            FinishReason::Length => add(&self.finished_length, 1),
        }
    }

    /// The current values.
    pub fn values(&self) -> CounterValues {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterValues {
            prefix_cache_queries: get(&self.prefix_cache_queries),
            prefix_cache_hits: get(&self.prefix_cache_hits),
            prompt_tokens: get(&self.prompt_tokens),
            generation_tokens: get(&self.generation_tokens),
            finished_stop: get(&self.finished_stop),
            finished_length: get(&self.finished_length),
        }
    }
}
