//! Helpers shared by the integration tests.
#![allow(dead_code)]

use llmd_kv_cache::PodId;
use llmd_kv_cache::events::{
    BlockRemoved, BlockStored, EngineHash, EventBatch, EventSource, KvEvent,
};
use std::time::{Duration, Instant};

pub const MODEL: &str = "meta-llama/Llama-3.1-8B";

pub fn source(pod: &str) -> EventSource {
    EventSource {
        pod: PodId::new(pod),
        model: MODEL.into(),
    }
}

pub fn stored(
    hashes: &[u64],
    parent: Option<u64>,
    tokens: &[u32],
    medium: Option<&str>,
) -> KvEvent {
    KvEvent::BlockStored(BlockStored {
        block_hashes: hashes.iter().map(|&h| EngineHash::U64(h)).collect(),
        parent_block_hash: parent.map(EngineHash::U64),
        token_ids: tokens.to_vec(),
        block_size: 16,
        medium: medium.map(str::to_owned),
        ..BlockStored::default()
    })
}

pub fn removed(hashes: &[u64], medium: Option<&str>) -> KvEvent {
    KvEvent::BlockRemoved(BlockRemoved {
        block_hashes: hashes.iter().map(|&h| EngineHash::U64(h)).collect(),
        medium: medium.map(str::to_owned),
        ..BlockRemoved::default()
    })
}

pub fn batch(events: Vec<KvEvent>) -> EventBatch {
    EventBatch {
        ts: 0.0,
        events,
        data_parallel_rank: None,
    }
}

/// A prompt of `blocks` full blocks of 16 tokens plus 5 more tokens.
pub fn prompt(blocks: usize, salt: u32) -> Vec<u32> {
    (0..(blocks * 16 + 5) as u32)
        .map(|t| t.wrapping_mul(2_654_435_761).wrapping_add(salt) % 150_000)
        .collect()
}

/// Polls `done` until it holds, failing after a generous deadline (a
/// liveness bound, not a timing assertion).
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
pub mod redis_server;
