//! The KV block index: which pods hold which blocks, on which tier.
//!
//! [`KvBlockIndex`] is the storage contract; [`Index`] picks a backend from
//! [`IndexConfig`]: [`InMemoryIndex`] (embedded, the default) or
//! [`RedisIndex`] (shared by several scheduler replicas).

mod memory;
mod pod_table;
mod redis;
mod shard;

pub use self::memory::{InMemoryConfig, InMemoryIndex};
pub use self::redis::{RedisConfig, RedisIndex};

use crate::block_key::BlockKey;
use crate::pod::{PodId, Tier};
use serde::Deserialize;
use std::future::Future;
use thiserror::Error;

/// Most entries (pod, tier) kept per block key.
pub const MAX_PODS_PER_KEY: usize = 8;

/// Most candidate pods one lookup can take.
pub const MAX_CANDIDATES: usize = u16::MAX as usize;

/// A block stored on a pod: the engine's hash and the index's key for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBlock {
    /// The engine's block hash, in its 64-bit event form.
    pub engine_hash: u64,
    /// The index's key for the block.
    pub key: BlockKey,
}

/// One lookup result: candidate `candidate` holds block `block` on `tier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHit {
    /// Position of the block in the looked-up key chain.
    pub block: u32,
    /// Position of the pod in the candidate list.
    pub candidate: u16,
    /// Where the block lives on that pod.
    pub tier: Tier,
}

/// Failures of an index backend.
#[derive(Debug, Error, llmd_runtime::ErrorType)]
pub enum IndexError {
    /// The Redis server could not be reached or answered with an error.
    #[error("redis index unavailable: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// A lookup was given more candidate pods than an index can track.
    #[error("{0} candidate pods given, at most {MAX_CANDIDATES} are supported")]
    TooManyCandidates(usize),
}

/// The storage contract of the KV block index.
///
/// Engine hashes are scoped per pod: each pod's engine may hash with its own
/// algorithm and seed, so the mapping from engine hash to block key is kept
/// per pod, and removals (which carry only engine hashes) evict the right
/// entries.
pub trait KvBlockIndex: Send + Sync {
    /// Records that `pod` holds `blocks` on `tier`.
    fn add(
        &self,
        pod: &PodId,
        tier: Tier,
        blocks: &[StoredBlock],
    ) -> impl Future<Output = Result<(), IndexError>> + Send;

    /// The block key that `pod`'s engine hash maps to, if known.
    fn block_key(
        &self,
        pod: &PodId,
        engine_hash: u64,
    ) -> impl Future<Output = Result<Option<BlockKey>, IndexError>> + Send;

    /// Removes `pod`'s `tier` entries for the blocks with these engine
    /// hashes; returns how many entries were removed.
    fn evict(
        &self,
        pod: &PodId,
        tier: Tier,
        engine_hashes: &[u64],
    ) -> impl Future<Output = Result<usize, IndexError>> + Send;

    /// Removes every entry of `pod`.
    fn clear_pod(&self, pod: &PodId) -> impl Future<Output = Result<(), IndexError>> + Send;

    /// Walks `keys` in order and appends to `hits` which `candidates` hold
    /// each block, stopping at the first block no candidate holds. Returns
    /// the number of leading blocks held by at least one candidate.
    fn lookup(
        &self,
        keys: &[BlockKey],
        candidates: &[PodId],
        hits: &mut Vec<BlockHit>,
    ) -> impl Future<Output = Result<usize, IndexError>> + Send;
}

/// Which index backend to run, with its settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum IndexConfig {
    /// The embedded in-memory index.
    InMemory(InMemoryConfig),
    /// A Redis server shared by several scheduler replicas.
    Redis(RedisConfig),
}

impl Default for IndexConfig {
    fn default() -> IndexConfig {
        IndexConfig::InMemory(InMemoryConfig::default())
    }
}

/// The index backend chosen by configuration.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per indexer, never moved on a hot path"
)]
pub enum Index {
    /// See [`InMemoryIndex`].
    InMemory(InMemoryIndex),
    /// See [`RedisIndex`].
    Redis(RedisIndex),
}

/// Invalid index settings.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IndexConfigError {
    /// A numeric setting is out of its range.
    #[error("index setting `{name}` must be in {range}")]
    OutOfRange {
        /// The setting.
        name: &'static str,
        /// Its valid range.
        range: &'static str,
    },
    /// The Redis URL does not parse.
    #[error("invalid redis url: {0}")]
    RedisUrl(String),
}

impl Index {
    /// Builds the configured backend. A Redis backend connects lazily, so
    /// an unreachable server does not fail this call.
    pub fn new(config: &IndexConfig) -> Result<Index, IndexConfigError> {
        match config {
            IndexConfig::InMemory(c) => InMemoryIndex::new(c).map(Index::InMemory),
            IndexConfig::Redis(c) => RedisIndex::new(c).map(Index::Redis),
        }
    }
}

pub(crate) fn check_range(
    name: &'static str,
    value: usize,
    min: usize,
    max: usize,
    range: &'static str,
) -> Result<(), IndexConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(IndexConfigError::OutOfRange { name, range })
    }
}

impl KvBlockIndex for Index {
    async fn add(&self, pod: &PodId, tier: Tier, blocks: &[StoredBlock]) -> Result<(), IndexError> {
        match self {
            Index::InMemory(i) => i.add(pod, tier, blocks).await,
            Index::Redis(i) => i.add(pod, tier, blocks).await,
        }
    }

    async fn block_key(
        &self,
        pod: &PodId,
        engine_hash: u64,
    ) -> Result<Option<BlockKey>, IndexError> {
        match self {
            Index::InMemory(i) => i.block_key(pod, engine_hash).await,
            Index::Redis(i) => i.block_key(pod, engine_hash).await,
        }
    }

    async fn evict(
        &self,
        pod: &PodId,
        tier: Tier,
        engine_hashes: &[u64],
    ) -> Result<usize, IndexError> {
        match self {
            Index::InMemory(i) => i.evict(pod, tier, engine_hashes).await,
            Index::Redis(i) => i.evict(pod, tier, engine_hashes).await,
        }
    }

    async fn clear_pod(&self, pod: &PodId) -> Result<(), IndexError> {
        match self {
            Index::InMemory(i) => i.clear_pod(pod).await,
            Index::Redis(i) => i.clear_pod(pod).await,
        }
    }

    async fn lookup(
        &self,
        keys: &[BlockKey],
        candidates: &[PodId],
        hits: &mut Vec<BlockHit>,
    ) -> Result<usize, IndexError> {
        if candidates.len() > MAX_CANDIDATES {
            return Err(IndexError::TooManyCandidates(candidates.len()));
        }
        match self {
            Index::InMemory(i) => i.lookup(keys, candidates, hits).await,
            Index::Redis(i) => i.lookup(keys, candidates, hits).await,
        }
    }
}
