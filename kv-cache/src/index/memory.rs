//! The embedded index: sharded, bounded, lock-free on the pod table and
//! with one short shard lock per block on the lookup path.
//!
//! Memory: one block key costs one slot (56 bytes: key, recency links and
//! up to [`MAX_PODS_PER_KEY`] packed 4-byte entries) plus its hash-table
//! bucket (13 bytes at 7/8 load), about 70-90 bytes; each (pod, block)
//! also keeps its engine-hash mapping (about 20-40 bytes), which lives
//! until the engine removes the block or clears its cache.

use super::pod_table::PodTable;
use super::shard::{Entry, MixBuild, Shard, mix};
use super::{
    BlockHit, IndexConfigError, IndexError, KvBlockIndex, MAX_PODS_PER_KEY, StoredBlock,
    check_range,
};
use crate::block_key::BlockKey;
use crate::pod::{PodId, Tier};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Settings of the in-memory index.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct InMemoryConfig {
    /// Most block keys kept; the least recently used go first.
    pub max_keys: usize,
    /// Number of independently locked shards (rounded up to a power of two).
    pub shards: usize,
    /// Most (pod, tier) entries kept per key, at most [`MAX_PODS_PER_KEY`].
    pub max_pods_per_key: usize,
}

impl Default for InMemoryConfig {
    fn default() -> InMemoryConfig {
        InMemoryConfig {
            max_keys: 1 << 22,
            shards: 64,
            max_pods_per_key: MAX_PODS_PER_KEY,
        }
    }
}

type EngineMap = HashMap<u64, BlockKey, MixBuild>;

/// The in-memory KV block index.
#[derive(Debug)]
pub struct InMemoryIndex {
    shards: Box<[Mutex<Shard>]>,
    shard_mask: u64,
    pods: PodTable,
    /// Per pod index: engine hash -> block key. Touched by ingestion only.
    engine_keys: Mutex<HashMap<u32, EngineMap>>,
    max_pods_per_key: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InMemoryIndex {
    /// An empty index.
    pub fn new(config: &InMemoryConfig) -> Result<InMemoryIndex, IndexConfigError> {
        check_range("max_keys", config.max_keys, 1, usize::MAX, "1..")?;
        check_range("shards", config.shards, 1, 1 << 16, "1..=65536")?;
        check_range(
            "max_pods_per_key",
            config.max_pods_per_key,
            1,
            MAX_PODS_PER_KEY,
            "1..=8",
        )?;
        let shards = config.shards.next_power_of_two();
        let per_shard = config.max_keys.div_ceil(shards);
        Ok(InMemoryIndex {
            shards: (0..shards)
                .map(|_| Mutex::new(Shard::new(per_shard)))
                .collect(),
            shard_mask: shards as u64 - 1,
            pods: PodTable::default(),
            engine_keys: Mutex::new(HashMap::new()),
            max_pods_per_key: config.max_pods_per_key,
        })
    }

    /// Number of block keys held.
    pub fn key_count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Approximate heap bytes held by keys, entries and engine mappings.
    pub fn heap_bytes(&self) -> usize {
        let shards: usize = self.shards.iter().map(|s| lock(s).heap_bytes()).sum();
        let engine: usize = lock(&self.engine_keys)
            .values()
            .map(|m| m.capacity() * (std::mem::size_of::<(u64, BlockKey)>() + 1))
            .sum();
        shards + engine
    }

    fn shard(&self, key: BlockKey) -> MutexGuard<'_, Shard> {
        lock(&self.shards[((mix(key.0) >> 32) & self.shard_mask) as usize])
    }

    fn add_now(&self, pod: &PodId, tier: Tier, blocks: &[StoredBlock]) {
        let Some(pod_index) = self.pods.intern(pod) else {
            return;
        };
        let entry = Entry::new(pod_index, tier);
        {
            let mut engine = lock(&self.engine_keys);
            let map = engine.entry(pod_index).or_default();
            for b in blocks {
                map.insert(b.engine_hash, b.key);
            }
        }
        for b in blocks {
            self.shard(b.key).add(b.key.0, entry, self.max_pods_per_key);
        }
    }

    fn evict_now(&self, pod: &PodId, tier: Tier, engine_hashes: &[u64]) -> usize {
        let Some(pod_index) = self.pods.get(pod) else {
            return 0;
        };
        let target = Entry::new(pod_index, tier);
        let mut engine = lock(&self.engine_keys);
        let Some(map) = engine.get_mut(&pod_index) else {
            return 0;
        };
        let mut removed = 0;
        for hash in engine_hashes {
            let Some(&key) = map.get(hash) else { continue };
            let (n, pod_left) = self.shard(key).remove(key.0, pod_index, |e| e == target);
            removed += n;
            if !pod_left {
                map.remove(hash);
            }
        }
        removed
    }

    fn clear_now(&self, pod: &PodId) {
        let Some(pod_index) = self.pods.get(pod) else {
            return;
        };
        let Some(map) = lock(&self.engine_keys).remove(&pod_index) else {
            return;
        };
        for key in map.values() {
            self.shard(*key)
                .remove(key.0, pod_index, |e| e.pod() == pod_index);
        }
    }

    fn lookup_now(
        &self,
        keys: &[BlockKey],
        candidates: &[PodId],
        hits: &mut Vec<BlockHit>,
    ) -> usize {
        const NOT_CANDIDATE: u16 = u16::MAX;
        let snapshot = self.pods.load();
        let mut candidate_of = vec![NOT_CANDIDATE; snapshot.len];
        let mut any = false;
        for (i, pod) in candidates.iter().enumerate() {
            if let Some(&at) = snapshot.ids.get(pod) {
                candidate_of[at as usize] = i as u16;
                any = true;
            }
        }
        if !any {
            return 0;
        }
        let mut found = 0;
        for (block, key) in keys.iter().enumerate() {
            let before = hits.len();
            if let Some(entries) = self.shard(*key).get(key.0) {
                for e in entries.as_slice() {
                    let candidate = candidate_of
                        .get(e.pod() as usize)
                        .copied()
                        .unwrap_or(NOT_CANDIDATE);
                    if candidate != NOT_CANDIDATE {
                        hits.push(BlockHit {
                            block: block as u32,
                            candidate,
                            tier: e.tier(),
                        });
                    }
                }
            }
            if hits.len() == before {
                break;
            }
            found = block + 1;
        }
        found
    }
}

impl KvBlockIndex for InMemoryIndex {
    async fn add(&self, pod: &PodId, tier: Tier, blocks: &[StoredBlock]) -> Result<(), IndexError> {
        self.add_now(pod, tier, blocks);
        Ok(())
    }

    async fn block_key(
        &self,
        pod: &PodId,
        engine_hash: u64,
    ) -> Result<Option<BlockKey>, IndexError> {
        let Some(pod_index) = self.pods.get(pod) else {
            return Ok(None);
        };
        Ok(lock(&self.engine_keys)
            .get(&pod_index)
            .and_then(|m| m.get(&engine_hash).copied()))
    }

    async fn evict(
        &self,
        pod: &PodId,
        tier: Tier,
        engine_hashes: &[u64],
    ) -> Result<usize, IndexError> {
        Ok(self.evict_now(pod, tier, engine_hashes))
    }

    async fn clear_pod(&self, pod: &PodId) -> Result<(), IndexError> {
        self.clear_now(pod);
        Ok(())
    }

    async fn lookup(
        &self,
        keys: &[BlockKey],
        candidates: &[PodId],
        hits: &mut Vec<BlockHit>,
    ) -> Result<usize, IndexError> {
        Ok(self.lookup_now(keys, candidates, hits))
    }
}
