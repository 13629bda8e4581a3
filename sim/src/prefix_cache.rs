//! The KV-cache block pool with prefix caching, modelled on vLLM's.
//!
//! `--num-gpu-blocks` blocks exist. A request holds the blocks of its
//! prompt and output while it runs. Full prompt blocks are registered
//! under their vLLM block hash once prefilled; when their last holder
//! finishes they stay cached but become free, in a least-recently-used
//! queue. A new allocation takes the oldest free block, evicting the cache
//! entry it held. Every registration and eviction is reported as a
//! [`KvEvent`].

use std::collections::{BTreeMap, HashMap};

/// A block's vLLM `sha256_cbor` hash.
pub type BlockHash = llmd_kv_cache::vllm_hash::BlockDigest;

/// Index of a physical block (what NIXL reports as `remote_block_ids`).
pub type BlockId = usize;

/// A change to the set of cached blocks, as vLLM reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvEvent {
    /// Consecutive blocks were cached.
    BlockStored {
        /// Hashes of the stored blocks, in prompt order.
        block_hashes: Vec<BlockHash>,
        /// Hash of the block before the first stored one, if any.
        parent_block_hash: Option<BlockHash>,
        /// Token ids of all the stored blocks.
        token_ids: Vec<u32>,
        /// Tokens per block.
        block_size: usize,
        /// The request's `cache_salt` when the first stored block is the
        /// prompt's first: vLLM's extra key of that block.
        salt: Option<String>,
    },
    /// Blocks were evicted from the cache.
    BlockRemoved {
        /// Hashes of the evicted blocks.
        block_hashes: Vec<BlockHash>,
    },
}

#[derive(Debug, Clone, Default)]
struct Block {
    hash: Option<BlockHash>,
    ref_count: u32,
    free_key: Option<u64>,
}

/// The block pool.
#[derive(Debug)]
pub struct BlockPool {
    blocks: Vec<Block>,
    cached: HashMap<BlockHash, BlockId>,
    free: BTreeMap<u64, BlockId>,
    next_free_key: u64,
    block_size: usize,
}

impl BlockPool {
    /// A pool of `num_blocks` empty blocks of `block_size` tokens.
    pub fn new(num_blocks: usize, block_size: usize) -> BlockPool {
        let blocks = (0..num_blocks as u64)
            .map(|key| Block {
                free_key: Some(key),
                ..Block::default()
            })
            .collect();
        BlockPool {
            blocks,
            cached: HashMap::new(),
            free: (0..num_blocks).map(|id| (id as u64, id)).collect(),
            next_free_key: num_blocks as u64,
            block_size,
        }
    }

    /// Tokens per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Fraction of blocks held by requests (vLLM's `kv_cache_usage_perc`).
    pub fn usage(&self) -> f64 {
        if self.blocks.is_empty() {
            return 0.0;
        }
        1.0 - self.free.len() as f64 / self.blocks.len() as f64
    }

    /// Number of leading `hashes` that are cached.
    pub fn cached_prefix_len(&self, hashes: &[BlockHash]) -> usize {
        hashes
            .iter()
            .take_while(|h| self.cached.contains_key(*h))
            .count()
    }

    /// Holds the cached blocks of `hits` and `new_blocks` fresh blocks,
    /// evicting the least recently used free blocks as needed. Returns the
    /// block ids (hits first), or `None` when the pool cannot supply them
    /// now (nothing is changed then).
    pub fn allocate(
        &mut self,
        hits: &[BlockHash],
        new_blocks: usize,
        events: &mut Vec<KvEvent>,
    ) -> Option<Vec<BlockId>> {
        let hit_ids: Vec<BlockId> = hits
            .iter()
            .map(|h| self.cached.get(h).copied())
            .collect::<Option<_>>()?;
        let free_hits = hit_ids
            .iter()
            .filter(|&&id| self.blocks[id].ref_count == 0)
            .count();
        if self.free.len() - free_hits < new_blocks {
            return None;
        }
        for &id in &hit_ids {
            self.hold(id);
        }
        let mut ids = hit_ids;
        let mut evicted = Vec::new();
        for _ in 0..new_blocks {
            let (_, id) = self.free.pop_first()?;
            let block = &mut self.blocks[id];
            block.free_key = None;
            block.ref_count = 1;
            if let Some(hash) = block.hash.take() {
                self.cached.remove(&hash);
                evicted.push(hash);
            }
            ids.push(id);
        }
        if !evicted.is_empty() {
            events.push(KvEvent::BlockRemoved {
                block_hashes: evicted,
            });
        }
        Some(ids)
    }

    /// Registers prefilled full blocks: `ids[i]` holds the tokens of
    /// `hashes[i]`, for `i` from `first` on, of a request with `salt` as
    /// its `cache_salt`. A hash cached meanwhile by another request is left
    /// to that request's block, as in vLLM.
    pub fn cache_full_blocks(
        &mut self,
        ids: &[BlockId],
        hashes: &[BlockHash],
        tokens: &[u32],
        salt: Option<&str>,
        first: usize,
        events: &mut Vec<KvEvent>,
    ) {
        let mut run: Option<KvEvent> = None;
        for (i, (&id, &hash)) in ids.iter().zip(hashes).enumerate().skip(first) {
            if self.cached.contains_key(&hash) || self.blocks[id].hash.is_some() {
                events.extend(run.take());
                continue;
            }
            let Some(block_tokens) = tokens.get(i * self.block_size..(i + 1) * self.block_size)
            else {
                break;
            };
            self.blocks[id].hash = Some(hash);
            self.cached.insert(hash, id);
            match &mut run {
                Some(KvEvent::BlockStored {
                    block_hashes,
                    token_ids,
                    ..
                }) => {
                    block_hashes.push(hash);
                    token_ids.extend_from_slice(block_tokens);
                }
                _ => {
                    run = Some(KvEvent::BlockStored {
                        block_hashes: vec![hash],
                        parent_block_hash: i.checked_sub(1).map(|p| hashes[p]),
                        token_ids: block_tokens.to_vec(),
                        block_size: self.block_size,
                        salt: salt.filter(|_| i == 0).map(str::to_owned),
                    });
                }
            }
        }
        events.extend(run);
    }

    /// Releases a request's blocks. They become free in reverse order, so
    /// that the end of a prompt is evicted before its beginning.
    pub fn release(&mut self, ids: &[BlockId]) {
        for &id in ids.iter().rev() {
            let block = &mut self.blocks[id];
            block.ref_count = block.ref_count.saturating_sub(1);
            if block.ref_count == 0 && block.free_key.is_none() {
                let key = self.next_free_key;
                self.next_free_key += 1;
                block.free_key = Some(key);
                self.free.insert(key, id);
            }
        }
    }

    fn hold(&mut self, id: BlockId) {
        let block = &mut self.blocks[id];
        if let Some(key) = block.free_key.take() {
            self.free.remove(&key);
        }
        block.ref_count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmd_kv_cache::vllm_hash::VllmBlockHasher;

    fn block_hashes(tokens: &[u32], block_size: usize) -> Vec<BlockHash> {
        VllmBlockHasher::new("test", block_size)
            .unwrap()
            .block_hashes(tokens)
    }

    fn tokens(n: u32, offset: u32) -> Vec<u32> {
        (offset..offset + n).collect()
    }

    /// Allocates and prefills a prompt the way the engine does, returning
    /// its block ids, the number of hit blocks and the events.
    fn run_prompt(pool: &mut BlockPool, prompt: &[u32]) -> (Vec<BlockId>, usize, Vec<KvEvent>) {
        let hashes = block_hashes(prompt, pool.block_size());
        let hit = pool.cached_prefix_len(&hashes);
        let total = prompt.len().div_ceil(pool.block_size());
        let mut events = Vec::new();
        let ids = pool
            .allocate(&hashes[..hit], total - hit, &mut events)
            .unwrap();
        pool.cache_full_blocks(&ids, &hashes, prompt, None, hit, &mut events);
        (ids, hit, events)
    }

    #[test]
    fn a_repeated_prompt_hits_its_cached_blocks() {
        let mut pool = BlockPool::new(8, 4);
        let prompt = tokens(10, 1);
        let (ids, hit, events) = run_prompt(&mut pool, &prompt);
        assert_eq!(hit, 0);
        assert_eq!(ids.len(), 3);
        let hashes = block_hashes(&prompt, 4);
        assert_eq!(
            events,
            [KvEvent::BlockStored {
                block_hashes: hashes.clone(),
                parent_block_hash: None,
                token_ids: prompt[..8].to_vec(),
                block_size: 4,
                salt: None,
            }]
        );
        assert!((pool.usage() - 3.0 / 8.0).abs() < 1e-9);
        pool.release(&ids);
        assert_eq!(pool.usage(), 0.0);
        let (again, hit, events) = run_prompt(&mut pool, &prompt);
        assert_eq!(hit, 2);
        assert_eq!(&again[..2], &ids[..2]);
        assert!(events.is_empty());
    }

    #[test]
    fn eviction_takes_the_least_recently_freed_blocks_first() {
        let mut pool = BlockPool::new(4, 4);
        let first = tokens(8, 1);
        let (ids, _, _) = run_prompt(&mut pool, &first);
        pool.release(&ids);
        let second = tokens(8, 100);
        let (ids2, _, events) = run_prompt(&mut pool, &second);
        assert!(
            events
                .iter()
                .all(|e| matches!(e, KvEvent::BlockStored { .. }))
        );
        pool.release(&ids2);
        // Four blocks are cached and free; a third prompt of two blocks
        // evicts the first prompt's blocks, its tail first.
        let third = tokens(8, 200);
        let (_, _, events) = run_prompt(&mut pool, &third);
        let first_hashes = block_hashes(&first, 4);
        assert_eq!(
            events[0],
            KvEvent::BlockRemoved {
                block_hashes: vec![first_hashes[1], first_hashes[0]],
            }
        );
        assert_eq!(pool.cached_prefix_len(&first_hashes), 0);
        assert_eq!(pool.cached_prefix_len(&block_hashes(&second, 4)), 2);
    }

    #[test]
    fn allocation_waits_when_blocks_are_held() {
        let mut pool = BlockPool::new(2, 4);
        let mut events = Vec::new();
        let held = pool.allocate(&[], 2, &mut events).unwrap();
        assert!(pool.allocate(&[], 1, &mut events).is_none());
        pool.release(&held);
        assert!(pool.allocate(&[], 2, &mut events).is_some());
    }

    #[test]
    fn a_block_cached_meanwhile_is_not_registered_twice() {
        let mut pool = BlockPool::new(8, 4);
        let prompt = tokens(8, 1);
        let hashes = block_hashes(&prompt, 4);
        let mut events = Vec::new();
        let a = pool.allocate(&[], 2, &mut events).unwrap();
        let b = pool.allocate(&[], 2, &mut events).unwrap();
        pool.cache_full_blocks(&a, &hashes, &prompt, None, 0, &mut events);
        pool.cache_full_blocks(&b, &hashes, &prompt, None, 0, &mut events);
        assert_eq!(events.len(), 1);
    }
}
