//! One request's life: wait for admission, prefill (skipping cached and
//! remotely prefilled tokens), decode token by token, release the blocks,
//! record the span.

use super::{Completion, Engine, FinishReason, GenerationRequest, StreamItem};
use crate::filler::Filler;
use crate::pd::{self, PdMode};
use crate::prefix_cache::{BlockHash, BlockId};
use crate::request_span::{RequestRecord, RequestSpan, SamplingSummary, Timeline};
use llmd_runtime::Identifier;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the engine decided about a request before queueing it.
#[derive(Debug)]
pub(crate) struct Plan {
    pub hashes: Arc<[BlockHash]>,
    pub total_blocks: usize,
    pub output_tokens: usize,
    pub finish_reason: FinishReason,
    pub mode: PdMode,
    pub sampling: SamplingSummary,
}

/// The client went away.
struct Aborted;

pub(crate) async fn run(
    engine: Arc<Engine>,
    request: GenerationRequest,
    plan: Plan,
    tx: mpsc::Sender<StreamItem>,
) {
    let span = RequestSpan::start(engine.config.trace_requests, &request.trace_parent);
    let prompt_len = request.prompt.len();
    let (ticket, mut admitted) = engine.enqueue(&plan, prompt_len);
    let admission = tokio::select! {
        admission = &mut admitted => admission,
        () = tx.closed() => {
            // Admitted meanwhile: give the blocks back.
            if !engine.withdraw(ticket)
                && let Ok(admission) = admitted.try_recv()
            {
                engine.release(&admission.block_ids);
            }
            span.abort();
            return;
        }
    };
    let Ok(admission) = admission else {
        span.abort();
        return;
    };
    let block_ids = admission.block_ids;
    match generate(
        &engine,
        &request,
        &plan,
        admission.hit_blocks,
        &block_ids,
        &tx,
    )
    .await
    {
        Ok((first_token, last_token)) => {
            let prompt_blocks = prompt_len.div_ceil(engine.config.block_size);
            let kv_transfer_params = (plan.mode == PdMode::PrefillForRemoteDecode).then(|| {
                pd::prefill_answer(
                    &engine.identity.engine_id,
                    &request.request_id,
                    &block_ids[..prompt_blocks],
                    &engine.identity.side_channel,
                )
            });
            engine.release(&block_ids);
            engine
                .counters
                .record_finished(prompt_len, plan.output_tokens, plan.finish_reason);
            span.finish(&RequestRecord {
                request_id: Identifier::new(&request.request_id),
                prompt_tokens: prompt_len,
                completion_tokens: plan.output_tokens,
                sampling: plan.sampling,
                timeline: Timeline {
                    arrival: request.arrival,
                    scheduled: admission.scheduled,
                    first_token,
                    last_token,
                },
            });
            let cached_tokens = match plan.mode {
                PdMode::DecodeAfterRemotePrefill => prompt_len,
                _ => admission.hit_blocks * engine.config.block_size,
            };
            let completion = Completion {
                finish_reason: plan.finish_reason,
                prompt_tokens: prompt_len,
                completion_tokens: plan.output_tokens,
                cached_tokens,
                kv_transfer_params,
            };
            // The client may have left after the last token; nothing to do then.
            let _ = tx.send(StreamItem::Finished(completion)).await;
        }
        Err(Aborted) => {
            engine.release(&block_ids);
            span.abort();
        }
    }
}

/// Prefills and decodes; returns the times of the first and last tokens.
async fn generate(
    engine: &Engine,
    request: &GenerationRequest,
    plan: &Plan,
    hit_blocks: usize,
    block_ids: &[BlockId],
    tx: &mpsc::Sender<StreamItem>,
) -> Result<(Instant, Instant), Aborted> {
    let config = &engine.config;
    let uncached = match plan.mode {
        PdMode::DecodeAfterRemotePrefill => 0,
        _ => request.prompt.len() - hit_blocks * config.block_size,
    };
    pause(config.timing.prefill(uncached), tx).await?;
    engine.with_scheduler(|s, _, events| {
        s.cache_prompt(
            block_ids,
            &plan.hashes,
            &request.prompt,
            request.cache_salt.as_deref(),
            hit_blocks,
            events,
        );
    });
    let filler = Filler::new(config.seed);
    let first_token = Instant::now();
    for index in 0..plan.output_tokens {
        if index > 0 {
            pause(config.timing.inter_token_latency, tx).await?;
        }
        tx.send(StreamItem::Token(filler.piece(index)))
            .await
            .map_err(|_| Aborted)?;
    }
    let last_token = if plan.output_tokens > 1 {
        Instant::now()
    } else {
        first_token
    };
    Ok((first_token, last_token))
}

/// Sleeps for `duration`, or stops early when the client leaves.
async fn pause(duration: Duration, tx: &mpsc::Sender<StreamItem>) -> Result<(), Aborted> {
    if duration.is_zero() {
        return if tx.is_closed() { Err(Aborted) } else { Ok(()) };
    }
    tokio::select! {
        () = tokio::time::sleep(duration) => Ok(()),
        () = tx.closed() => Err(Aborted),
    }
}
