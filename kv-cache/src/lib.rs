//! `llmd-kv-cache`: KV-cache aware routing for llmd-rs.
//!
//! - [`vllm_hash`]: vLLM's `sha256_cbor` block hashes, bit-exact.
//! - [`block_key`]: the index's own fast, model-scoped chained block keys.
//! - [`index`]: the KV block index, in memory or in Redis.
//! - [`events`]: vLLM KV events: model, msgpack decoder and encoder, and the
//!   ZMQ subscriber that feeds the index.
//! - [`scorer`]: the longest-prefix scorer.
//! - [`KvCacheIndexer`]: the facade the scheduler uses.

#![warn(missing_docs)]

mod cbor;

pub mod block_key;
pub mod index;
pub mod pod;
pub mod vllm_hash;

pub use block_key::{BlockKey, BlockKeyHasher};
pub use index::{Index, IndexConfig, KvBlockIndex};
pub use pod::{PodId, Tier};
pub mod events;
mod indexer;
pub mod scorer;
mod warn_limit;

pub use indexer::{ConfigError, KvCacheConfig, KvCacheIndexer, PodScore, ScoreError, Scores};
