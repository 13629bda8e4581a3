//! First-come-first-served admission: at most `--max-num-seqs` requests
//! run, each holding the KV blocks of its prompt and output; the others
//! wait in arrival order (a request that does not fit blocks those behind
//! it, as in vLLM's FCFS policy).

use crate::engine::stats::Counters;
use crate::prefix_cache::{BlockHash, BlockId, BlockPool, KvEvent};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// A request waiting for admission.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Queue ticket, to withdraw the request.
    pub ticket: u64,
    /// Hashes of the prompt's full blocks.
    pub hashes: Arc<[BlockHash]>,
    /// Prompt length in tokens.
    pub prompt_len: usize,
    /// Blocks for the prompt and the whole output.
    pub total_blocks: usize,
    /// Where the admission is sent.
    pub admit: oneshot::Sender<Admission>,
}

/// A request's place in the running set.
#[derive(Debug)]
pub(crate) struct Admission {
    /// Its blocks, cached prefix first.
    pub block_ids: Vec<BlockId>,
    /// How many leading prompt blocks came from the prefix cache.
    pub hit_blocks: usize,
    /// When it was admitted.
    pub scheduled: Instant,
}

/// The waiting queue, the running count and the block pool.
#[derive(Debug)]
pub(crate) struct Scheduler {
    pool: BlockPool,
    waiting: VecDeque<Pending>,
    running: usize,
    max_running: usize,
}

impl Scheduler {
    pub fn new(pool: BlockPool, max_running: usize) -> Scheduler {
        Scheduler {
            pool,
            waiting: VecDeque::new(),
            running: 0,
            max_running,
        }
    }

    pub fn running(&self) -> usize {
        self.running
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn usage(&self) -> f64 {
        self.pool.usage()
    }

    /// Queues `pending` and admits whatever fits.
    pub fn enqueue(&mut self, pending: Pending, counters: &Counters, events: &mut Vec<KvEvent>) {
        self.waiting.push_back(pending);
        self.admit_ready(counters, events);
    }

    /// Removes a waiting request; false when it was already admitted.
    pub fn withdraw(&mut self, ticket: u64) -> bool {
        let before = self.waiting.len();
        self.waiting.retain(|p| p.ticket != ticket);
        self.waiting.len() != before
    }

    /// Registers the prefilled prompt blocks, from `first` on, of a
    /// request with `salt` as its `cache_salt`.
    pub fn cache_prompt(
        &mut self,
        block_ids: &[BlockId],
        hashes: &[BlockHash],
        prompt: &[u32],
        salt: Option<&str>,
        first: usize,
        events: &mut Vec<KvEvent>,
    ) {
        self.pool
            .cache_full_blocks(block_ids, hashes, prompt, salt, first, events);
    }

    /// Releases a finished request's blocks and admits whatever now fits.
    pub fn finish(
        &mut self,
        block_ids: &[BlockId],
        counters: &Counters,
        events: &mut Vec<KvEvent>,
    ) {
        self.pool.release(block_ids);
        self.running = self.running.saturating_sub(1);
        self.admit_ready(counters, events);
    }

    fn admit_ready(&mut self, counters: &Counters, events: &mut Vec<KvEvent>) {
        while self.running < self.max_running {
            let Some(front) = self.waiting.front() else {
                return;
            };
            // vLLM always computes the prompt's last token, so a fully
            // cached prompt still leaves its last block to compute.
            let hit_cap = front.prompt_len.saturating_sub(1) / self.pool.block_size();
            let hit = self.pool.cached_prefix_len(&front.hashes).min(hit_cap);
            let Some(block_ids) =
                self.pool
                    .allocate(&front.hashes[..hit], front.total_blocks - hit, events)
            else {
                return;
            };
            let Some(pending) = self.waiting.pop_front() else {
                return;
            };
            counters.record_prefix_lookup(pending.prompt_len, hit * self.pool.block_size());
            self.running += 1;
            let admission = Admission {
                block_ids,
                hit_blocks: hit,
                scheduled: Instant::now(),
            };
            if let Err(unwanted) = pending.admit.send(admission) {
                self.pool.release(&unwanted.block_ids);
                self.running -= 1;
            }
        }
    }
}
