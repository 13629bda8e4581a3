//! Field order of vLLM's event structs: positional in the array encoding,
//! names in the map encoding. Shared by the decoder and the encoder.

/// The tag key of the map encoding.
pub(crate) const TAG_KEY: &str = "type";

/// `BlockStored` fields in declaration order.
pub(crate) const BLOCK_STORED: &[&str] = &[
    "block_hashes",
    "parent_block_hash",
    "token_ids",
    "block_size",
    "lora_id",
    "medium",
    "lora_name",
    "extra_keys",
    "group_idx",
    "kv_cache_spec_kind",
    "kv_cache_spec_sliding_window",
    "locality",
    "ownership",
    "session_id",
    "lookahead_token_ids",
];

/// `BlockStored` fields without a default: always written.
pub(crate) const BLOCK_STORED_REQUIRED: usize = 7;

/// `BlockRemoved` fields in declaration order.
pub(crate) const BLOCK_REMOVED: &[&str] = &[
    "block_hashes",
    "medium",
    "group_idx",
    "locality",
    "ownership",
];

/// `BlockRemoved` fields without a default.
pub(crate) const BLOCK_REMOVED_REQUIRED: usize = 2;

/// `EventBatch` fields in declaration order.
pub(crate) const BATCH: &[&str] = &["ts", "events", "data_parallel_rank"];
