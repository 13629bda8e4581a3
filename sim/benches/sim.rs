//! Costs of the simulator's own work per request: tokenizing and hashing a
//! prompt, a prefix-cache round (lookup, allocate, register, release),
//! encoding a KV event batch, and one HTTP completion end to end.

use criterion::{Criterion, criterion_group, criterion_main};
use llmd_kv_cache::events::Encoding;
use llmd_kv_cache::vllm_hash::VllmBlockHasher;
use llmd_sim::prefix_cache::{BlockPool, KvEvent};
use llmd_sim::{SimConfig, SimServer, kv_events, tokenizer};
use std::hint::black_box;

fn prompt(words: usize) -> String {
    (0..words)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn per_request_cpu(c: &mut Criterion) {
    let text = prompt(1024);
    let hasher = VllmBlockHasher::new("vllm-none-hash", 16).unwrap();
    c.bench_function("tokenize_and_hash_1024_tokens", |b| {
        b.iter(|| hasher.block_hashes(&tokenizer::encode(black_box(&text))))
    });

    let tokens = tokenizer::encode(&text);
    let hashes = hasher.block_hashes(&tokens);
    let mut pool = BlockPool::new(4096, 16);
    let mut events = Vec::new();
    c.bench_function("prefix_cache_round_1024_tokens_cached", |b| {
        b.iter(|| {
            events.clear();
            let hit = pool.cached_prefix_len(&hashes).min(63);
            let ids = pool
                .allocate(&hashes[..hit], 65 - hit, &mut events)
                .unwrap();
            pool.cache_full_blocks(&ids, &hashes, &tokens, None, hit, &mut events);
            pool.release(&ids);
        })
    });

    let batch = [KvEvent::BlockStored {
        block_hashes: hashes.clone(),
        parent_block_hash: None,
        token_ids: tokens.clone(),
        block_size: 16,
        salt: None,
    }];
    c.bench_function("encode_kv_event_batch_64_blocks_map", |b| {
        b.iter(|| kv_events::encode(black_box(&batch), Encoding::Map))
    });
}

fn http_completion(c: &mut Criterion) {
    llmd_runtime::http::install_crypto_provider();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (server, client) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = SimServer::start(SimConfig::new("m"), listener, |_| None)
            .await
            .unwrap();
        (server, reqwest::Client::new())
    });
    let url = format!("http://{}/v1/completions", server.local_addr());
    let body = serde_json::json!({"prompt": prompt(256), "max_tokens": 16});
    c.bench_function("http_completion_256_prompt_16_output", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let response = client.post(&url).json(&body).send().await.unwrap();
                response.bytes().await.unwrap()
            })
        })
    });
}

criterion_group!(benches, per_request_cpu, http_completion);
criterion_main!(benches);
