//! The simulated inference engine: admission, prefix caching, simulated
//! prefill and decode time, and the stream of generated tokens.

mod request;
mod scheduler;
pub mod stats;

use crate::config::SimConfig;
use crate::kv_events::EventSink;
use crate::pd::{self, SideChannel};
use crate::prefix_cache::{BlockId, BlockPool, KvEvent};
use crate::request_span::SamplingSummary;
use llmd_kv_cache::vllm_hash::{BlockDigest, ExtraKey, VllmBlockHasher};
use opentelemetry::Context;
use scheduler::{Admission, Pending, Scheduler};
use serde_json::Value;
use stats::{CounterValues, Counters};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Why a request was refused before it ran (HTTP 400 in vLLM).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    /// The prompt has no tokens.
    #[error("The decoder prompt cannot be empty")]
    EmptyPrompt,
    /// `max_tokens` is zero.
    #[error("max_tokens must be at least 1, got 0.")]
    ZeroMaxTokens,
    /// Prompt plus output exceed `--max-model-len`.
    #[error(
        "This model's maximum context length is {max_model_len} tokens. However, you requested \
         {} tokens ({prompt} in the messages, {output} in the completion). Please reduce the \
         length of the messages or completion.", prompt.saturating_add(*output)
    )]
    TooLong {
        /// The model's context length.
        max_model_len: usize,
        /// Prompt tokens.
        prompt: usize,
        /// Requested output tokens.
        output: usize,
    },
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The simulated model ended its answer (no `max_tokens` given).
    Stop,
    /// `max_tokens` was reached.
    Length,
}

impl FinishReason {
    /// vLLM's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// A validated generation request.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    /// External request id (`chatcmpl-...`, `cmpl-...`).
    pub request_id: String,
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// `max_tokens` (or `max_completion_tokens`), if given.
    pub max_tokens: Option<usize>,
    /// Sampling temperature, if given.
    pub temperature: Option<f64>,
    /// `top_p`, if given.
    pub top_p: Option<f64>,
    /// The request's `kv_transfer_params`.
    pub kv_transfer_params: Option<Value>,
    /// The request's `cache_salt`, folded into its first block's hash as
    /// vLLM does, so that only requests with the same salt share blocks.
    pub cache_salt: Option<String>,
    /// The caller's trace context (from `traceparent`).
    pub trace_parent: Context,
    /// When the request arrived.
    pub arrival: Instant,
}

/// What the engine streams back for a request.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// One generated token's text.
    Token(String),
    /// The end of the request.
    Finished(Completion),
}

/// The summary of a finished request.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Prompt tokens not computed here (prefix cache or remote prefill).
    pub cached_tokens: usize,
    /// `kv_transfer_params` of the answer (prefill for a remote decoder).
    pub kv_transfer_params: Option<Value>,
}

/// Live load figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// Requests running.
    pub running: usize,
    /// Requests waiting.
    pub waiting: usize,
    /// Fraction of KV blocks held by requests.
    pub kv_cache_usage: f64,
    /// Totals since start.
    pub counters: CounterValues,
}

/// How this engine presents itself to P/D peers and hashes blocks.
#[derive(Debug, Clone)]
pub struct EngineIdentity {
    /// NIXL engine id.
    pub engine_id: String,
    /// NIXL side channel.
    pub side_channel: SideChannel,
    /// Block hasher (its seed is vLLM's `PYTHONHASHSEED`).
    pub hasher: VllmBlockHasher,
}

/// The engine. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Engine {
    config: Arc<SimConfig>,
    identity: EngineIdentity,
    scheduler: Mutex<Scheduler>,
    counters: Counters,
    events: Option<EventSink>,
    next_ticket: AtomicU64,
}

impl Engine {
    /// An idle engine; KV events go to `events` when given.
    pub fn new(
        config: Arc<SimConfig>,
        identity: EngineIdentity,
        events: Option<EventSink>,
    ) -> Engine {
        let pool = BlockPool::new(config.num_gpu_blocks, config.block_size);
        Engine {
            scheduler: Mutex::new(Scheduler::new(pool, config.max_num_seqs)),
            config,
            identity,
            counters: Counters::default(),
            events,
            next_ticket: AtomicU64::new(0),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Current load and totals.
    pub fn snapshot(&self) -> Snapshot {
        let scheduler = self.lock();
        Snapshot {
            running: scheduler.running(),
            waiting: scheduler.waiting(),
            kv_cache_usage: scheduler.usage(),
            counters: self.counters.values(),
        }
    }

    /// Validates `request` and starts it; its tokens and completion arrive
    /// on the returned channel. Dropping the receiver aborts the request.
    pub fn submit(
        self: &Arc<Self>,
        request: GenerationRequest,
    ) -> Result<mpsc::Receiver<StreamItem>, EngineError> {
        let plan = self.plan(&request)?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(request::run(self.clone(), request, plan, tx));
        Ok(rx)
    }

    fn plan(&self, request: &GenerationRequest) -> Result<request::Plan, EngineError> {
        let prompt_len = request.prompt.len();
        let max_model_len = self.config.max_model_len;
        if prompt_len == 0 {
            return Err(EngineError::EmptyPrompt);
        }
        let (output_tokens, finish_reason) = match request.max_tokens {
            Some(0) => return Err(EngineError::ZeroMaxTokens),
            Some(n) => (n, FinishReason::Length),
            None => (
                self.config
                    .default_output_tokens
                    .min(max_model_len.saturating_sub(prompt_len))
                    .max(1),
                FinishReason::Stop,
            ),
        };
        if prompt_len.saturating_add(output_tokens) > max_model_len {
            return Err(EngineError::TooLong {
                max_model_len,
                prompt: prompt_len,
                output: output_tokens,
            });
        }
        let role = self.config.kv_transfer.as_ref().map(|c| c.kv_role);
        Ok(request::Plan {
            hashes: self.block_hashes(request).into(),
            total_blocks: (prompt_len + output_tokens).div_ceil(self.config.block_size),
            output_tokens,
            finish_reason,
            mode: pd::mode(request.kv_transfer_params.as_ref(), role),
            sampling: SamplingSummary {
                temperature: request.temperature.unwrap_or(1.0),
                top_p: request.top_p.unwrap_or(1.0),
                n: 1,
                max_tokens: output_tokens,
            },
        })
    }

    /// The hashes of the prompt's full blocks; a `cache_salt` is an extra
    /// key of the first block (vLLM's `generate_block_hash_extra_keys`),
    /// which every later block's hash chains from.
    fn block_hashes(&self, request: &GenerationRequest) -> Vec<BlockDigest> {
        let hasher = &self.identity.hasher;
        match &request.cache_salt {
            None => hasher.block_hashes(&request.prompt),
            Some(salt) => hasher.block_hashes_with_extra_keys(
                &request.prompt,
                &[Some(vec![ExtraKey::Text(salt.clone())])],
            ),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Scheduler> {
        self.scheduler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the scheduler and publishes the KV events it produced,
    /// under the lock so that batches leave in the order they happened.
    fn with_scheduler<R>(
        &self,
        f: impl FnOnce(&mut Scheduler, &Counters, &mut Vec<KvEvent>) -> R,
    ) -> R {
        let mut scheduler = self.lock();
        let mut events = Vec::new();
        let result = f(&mut scheduler, &self.counters, &mut events);
        if let Some(sink) = &self.events {
            sink.publish(events);
        }
        result
    }

    fn enqueue(
        &self,
        plan: &request::Plan,
        prompt_len: usize,
    ) -> (u64, oneshot::Receiver<Admission>) {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let (admit, admitted) = oneshot::channel();
        let pending = Pending {
            ticket,
            hashes: plan.hashes.clone(),
            prompt_len,
            total_blocks: plan.total_blocks,
            admit,
        };
        self.with_scheduler(|s, counters, events| s.enqueue(pending, counters, events));
        (ticket, admitted)
    }

    fn withdraw(&self, ticket: u64) -> bool {
        self.lock().withdraw(ticket)
    }

    fn release(&self, block_ids: &[BlockId]) {
        self.with_scheduler(|s, counters, events| s.finish(block_ids, counters, events));
    }
}
