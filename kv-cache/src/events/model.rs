//! vLLM KV events as data: what the decoder produces and the encoder writes.

use crate::vllm_hash::{ExtraKey, event_hash};

/// A block hash as it travels in events: vLLM has shipped both 64-bit
/// integers and raw digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineHash {
    /// An integer hash.
    U64(u64),
    /// A SHA-256 digest.
    Digest([u8; 32]),
}

impl EngineHash {
    /// The 64-bit form: the integer, or the digest's last 8 bytes
    /// big-endian.
    pub fn as_u64(&self) -> u64 {
        match self {
            EngineHash::U64(v) => *v,
            EngineHash::Digest(d) => event_hash(d),
        }
    }
}

/// `BlockStored`: blocks were added to a pod's cache.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BlockStored {
    /// Engine hashes of the stored blocks, in chain order.
    pub block_hashes: Vec<EngineHash>,
    /// Engine hash of the block before the first one, if any.
    pub parent_block_hash: Option<EngineHash>,
    /// The tokens of all stored blocks, concatenated.
    pub token_ids: Vec<u32>,
    /// Tokens per block.
    pub block_size: u32,
    /// Deprecated LoRA id.
    pub lora_id: Option<i64>,
    /// Storage medium (`GPU`, `CPU`, ...).
    pub medium: Option<String>,
    /// LoRA adapter name.
    pub lora_name: Option<String>,
    /// Extra hash keys, one entry per block.
    pub extra_keys: Option<Vec<Option<Vec<ExtraKey>>>>,
    /// KV-cache group.
    pub group_idx: Option<i64>,
    /// Kind of the group's cache spec.
    pub kv_cache_spec_kind: Option<String>,
    /// Sliding window of the group's cache spec.
    pub kv_cache_spec_sliding_window: Option<i64>,
    /// Locality of the blocks.
    pub locality: Option<String>,
    /// Ownership of the blocks.
    pub ownership: Option<String>,
    /// Session that triggered the store.
    pub session_id: Option<String>,
    /// Lookahead (speculative) token ids.
    pub lookahead_token_ids: Option<Vec<u32>>,
}

/// `BlockRemoved`: blocks were evicted from a pod's cache.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BlockRemoved {
    /// Engine hashes of the removed blocks.
    pub block_hashes: Vec<EngineHash>,
    /// Storage medium.
    pub medium: Option<String>,
    /// KV-cache group.
    pub group_idx: Option<i64>,
    /// Locality of the blocks.
    pub locality: Option<String>,
    /// Ownership of the blocks.
    pub ownership: Option<String>,
}

/// One KV event.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "BlockStored is the common event; boxing it would cost an allocation per event"
)]
pub enum KvEvent {
    /// See [`BlockStored`].
    BlockStored(BlockStored),
    /// See [`BlockRemoved`].
    BlockRemoved(BlockRemoved),
    /// The pod's whole cache was cleared.
    AllBlocksCleared,
}

impl KvEvent {
    /// The event's tag (its vLLM class name).
    pub fn tag(&self) -> &'static str {
        match self {
            KvEvent::BlockStored(_) => "BlockStored",
            KvEvent::BlockRemoved(_) => "BlockRemoved",
            KvEvent::AllBlocksCleared => "AllBlocksCleared",
        }
    }
}

/// One published message's payload.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventBatch {
    /// Publication time, seconds since the epoch.
    pub ts: f64,
    /// The events, in order.
    pub events: Vec<KvEvent>,
    /// Data-parallel rank of the publishing engine.
    pub data_parallel_rank: Option<i64>,
}

/// A decoded batch, with what the decoder had to skip.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecodedBatch {
    /// The batch.
    pub batch: EventBatch,
    /// Events with an unknown tag, skipped.
    pub unknown_events: u32,
    /// Events that did not decode, skipped.
    pub malformed_events: u32,
}
