//! Criterion benches: scoring a long prompt on a warm in-memory index,
//! event ingestion and decoding throughput, and index memory per block.
//!
//! `cargo bench -p llmd-kv-cache --bench kv_cache -- --warm-up-time 1 --measurement-time 3`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use llmd_kv_cache::events::{
    BlockStored, Encoding, EngineHash, EventBatch, EventSource, KvEvent, decode_batch, encode_batch,
};
use llmd_kv_cache::index::InMemoryConfig;
use llmd_kv_cache::{IndexConfig, KvCacheConfig, KvCacheIndexer, PodId};
use llmd_runtime::Identifier;
use std::hint::black_box;

const MODEL: &str = "meta-llama/Llama-3.1-8B";
const BLOCK: usize = 16;

fn tokens(salt: u32, len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|t| {
            t.wrapping_mul(2_654_435_761)
                .wrapping_add(salt.wrapping_mul(97))
                % 150_000
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn indexer(max_keys: usize) -> KvCacheIndexer {
    KvCacheIndexer::new(&KvCacheConfig {
        index: IndexConfig::InMemory(InMemoryConfig {
            max_keys,
            ..InMemoryConfig::default()
        }),
        ..KvCacheConfig::default()
    })
    .unwrap()
}

/// Events storing `prompt` in chunks of `per_event` blocks, with engine
/// hashes derived from `salt`.
fn store_events(prompt: &[u32], per_event: usize, salt: u64) -> Vec<KvEvent> {
    let blocks = prompt.len() / BLOCK;
    (0..blocks)
        .step_by(per_event)
        .map(|first| {
            let last = (first + per_event).min(blocks);
            KvEvent::BlockStored(BlockStored {
                block_hashes: (first..last)
                    .map(|b| EngineHash::U64(salt << 20 | b as u64))
                    .collect(),
                parent_block_hash: (first > 0)
                    .then(|| EngineHash::U64(salt << 20 | (first - 1) as u64)),
                token_ids: prompt[first * BLOCK..last * BLOCK].to_vec(),
                block_size: BLOCK as u32,
                medium: Some("GPU".into()),
                ..BlockStored::default()
            })
        })
        .collect()
}

fn source(pod: &str) -> EventSource {
    EventSource {
        pod: PodId::new(pod),
        model: MODEL.into(),
    }
}

fn batch(events: Vec<KvEvent>) -> EventBatch {
    EventBatch {
        ts: 0.0,
        events,
        data_parallel_rank: None,
    }
}

fn scoring(c: &mut Criterion) {
    let rt = runtime();
    let ix = indexer(1 << 22);
    let pods: Vec<PodId> = (0..64)
        .map(|i| PodId::new(&format!("10.0.0.{i}:8000")))
        .collect();
    let prompt = tokens(1, 8192);
    // Warm index: 8 pods hold prefixes of the prompt of various lengths,
    // and every pod holds 16 unrelated 2k-token prompts.
    rt.block_on(async {
        for (i, pod) in pods.iter().enumerate() {
            if i % 8 == 0 {
                let len = 8192 - (i / 8) * 512;
                ix.ingestor()
                    .apply(
                        &source(pod.as_str()),
                        &batch(store_events(&prompt[..len], 32, 1)),
                    )
                    .await;
            }
            for j in 0..16 {
                let other = tokens(1000 + (i * 16 + j) as u32, 2048);
                ix.ingestor()
                    .apply(
                        &source(pod.as_str()),
                        &batch(store_events(&other, 32, 2 + j as u64)),
                    )
                    .await;
            }
        }
    });
    let model = Identifier::new(MODEL);
    let scores = rt.block_on(ix.get_scores(&model, &prompt, &pods)).unwrap();
    assert_eq!(scores.blocks_found, 512);
    let mut group = c.benchmark_group("get_scores");
    group.bench_function("8192_tokens_64_pods_warm_in_memory", |b| {
        b.iter(|| {
            rt.block_on(ix.get_scores(&model, black_box(&prompt), &pods))
                .unwrap()
        })
    });
    group.bench_function("block_keys_8192_tokens", |b| {
        b.iter(|| ix.block_keys(MODEL, black_box(&prompt)))
    });
    group.finish();
    if let llmd_kv_cache::Index::InMemory(memory) = &**ix.index() {
        let keys = memory.key_count();
        let stored = ix.ingest_stats().blocks_stored;
        println!(
            "index memory: {} keys, {} (pod, block) entries, {} heap bytes: {:.1} bytes per key, {:.1} per stored block",
            keys,
            stored,
            memory.heap_bytes(),
            memory.heap_bytes() as f64 / keys as f64,
            memory.heap_bytes() as f64 / stored as f64
        );
    }
}

fn ingestion(c: &mut Criterion) {
    let rt = runtime();
    // 64 pods x 4 prompts of 1024 tokens, 16 blocks per event: 16,384 blocks.
    let work: Vec<(EventSource, EventBatch)> = (0..64)
        .flat_map(|p| {
            (0..4).map(move |j| {
                let prompt = tokens((p * 4 + j) as u32, 1024);
                (
                    source(&format!("10.0.1.{p}:8000")),
                    batch(store_events(&prompt, 16, j as u64)),
                )
            })
        })
        .collect();
    let blocks: u64 = work
        .iter()
        .flat_map(|(_, b)| &b.events)
        .map(|e| match e {
            KvEvent::BlockStored(s) => s.block_hashes.len() as u64,
            _ => 0,
        })
        .sum();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(blocks));
    group.bench_function("apply_decoded_events_in_memory", |b| {
        b.iter_batched(
            || indexer(1 << 20),
            |ix| {
                rt.block_on(async {
                    for (source, batch) in &work {
                        ix.ingestor().apply(source, batch).await;
                    }
                });
                ix
            },
            BatchSize::LargeInput,
        )
    });
    let payloads: Vec<Vec<u8>> = work
        .iter()
        .map(|(_, b)| encode_batch(b, Encoding::Map))
        .collect();
    group.bench_function("decode_msgpack_map_encoding", |b| {
        b.iter(|| {
            for p in &payloads {
                black_box(decode_batch(black_box(p)).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, scoring, ingestion);
criterion_main!(benches);
