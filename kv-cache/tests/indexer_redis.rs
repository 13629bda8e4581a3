//! The indexer over a real Redis server (a child `redis-server`).

mod common;

use common::redis_server::{RedisServer, free_port};
use common::{MODEL, batch, prompt, removed, source, stored};
use llmd_kv_cache::events::KvEvent;
use llmd_kv_cache::index::RedisConfig;
use llmd_kv_cache::vllm_hash::{DEFAULT_NONE_HASH_SEED, VllmBlockHasher, event_hash};
use llmd_kv_cache::{IndexConfig, KvBlockIndex, KvCacheConfig, KvCacheIndexer, PodId};
use llmd_runtime::Identifier;
use std::time::{Duration, Instant};

fn redis_indexer(url: String, prefix: &str) -> KvCacheIndexer {
    KvCacheIndexer::new(&KvCacheConfig {
        index: IndexConfig::Redis(RedisConfig {
            url,
            key_prefix: prefix.into(),
            connect_timeout_ms: 300,
            response_timeout_ms: 1000,
            ..RedisConfig::default()
        }),
        ..KvCacheConfig::default()
    })
    .unwrap()
}

fn hashes(tokens: &[u32]) -> Vec<u64> {
    let h = VllmBlockHasher::new(DEFAULT_NONE_HASH_SEED, 16).unwrap();
    h.block_hashes(tokens)
        .iter()
        .map(|d| event_hash(d))
        .collect()
}

fn pods(names: &[&str]) -> Vec<PodId> {
    names.iter().map(|n| PodId::new(n)).collect()
}

async fn commandstats(client: &redis::Client) -> String {
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap()
}

fn calls(stats: &str, command: &str) -> u64 {
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn redis_index_stores_chains_evicts_and_clears() {
    let server = RedisServer::start();
    let ix = redis_indexer(server.url(), "t1:");
    let tokens = prompt(4, 11);
    let h = hashes(&tokens);
    let a = source("a:8000");
    ix.ingestor()
        .apply(&a, &batch(vec![stored(&h[..2], None, &tokens[..32], None)]))
        .await;
    ix.ingestor()
        .apply(
            &a,
            &batch(vec![stored(&h[2..], Some(h[1]), &tokens[32..64], None)]),
        )
        .await;
    ix.ingestor()
        .apply(
            &source("b:8000"),
            &batch(vec![stored(&[5, 6], None, &tokens[..32], Some("CPU"))]),
        )
        .await;
    let stats = ix.ingest_stats();
    assert_eq!((stats.blocks_stored, stats.index_errors), (6, 0));

    let model = Identifier::new(MODEL);
    let candidates = pods(&["a:8000", "b:8000", "c:8000"]);
    let scores = ix.get_scores(&model, &tokens, &candidates).await.unwrap();
    assert!(scores.index_available);
    assert_eq!(
        scores.pods.iter().map(|p| p.blocks).collect::<Vec<_>>(),
        vec![4, 2, 0]
    );
    assert_eq!(scores.pods[0].score, 1.0);
    assert!((scores.pods[1].score - 2.0 * 0.8 / 4.0).abs() < 1e-12);

    // Removal by engine hash, per pod and tier.
    ix.ingestor()
        .apply(
            &a,
            &batch(vec![removed(&[h[1]], None), removed(&[6], Some("GPU"))]),
        )
        .await;
    let scores = ix.get_scores(&model, &tokens, &candidates).await.unwrap();
    assert_eq!(
        scores.pods.iter().map(|p| p.blocks).collect::<Vec<_>>(),
        vec![1, 2, 0]
    );
    assert_eq!(ix.ingest_stats().blocks_removed, 1);

    ix.ingestor()
        .apply(&source("b:8000"), &batch(vec![KvEvent::AllBlocksCleared]))
        .await;
    let scores = ix.get_scores(&model, &tokens, &candidates).await.unwrap();
    assert_eq!(
        scores.pods.iter().map(|p| p.blocks).collect::<Vec<_>>(),
        vec![1, 0, 0]
    );
    // The engine map of b is gone and keys carry the configured prefix.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.iter().all(|k| k.starts_with("t1:")), "{keys:?}");
    assert!(!keys.contains(&"t1:e:b:8000".to_string()));
    assert!(keys.contains(&"t1:e:a:8000".to_string()));
}

#[tokio::test]
async fn a_lookup_is_one_round_trip_whatever_the_prompt_length() {
    let server = RedisServer::start();
    let ix = redis_indexer(server.url(), "t2:");
    let long = prompt(512, 12);
    let h: Vec<u64> = (1..=512).collect();
    ix.ingestor()
        .apply(
            &source("a:8000"),
            &batch(vec![stored(&h, None, &long[..512 * 16], None)]),
        )
        .await;
    let candidates: Vec<PodId> = (0..64)
        .map(|i| PodId::new(&format!("10.0.0.{i}:8000")))
        .chain(pods(&["a:8000"]))
        .collect();
    let model = Identifier::new(MODEL);
    // Warm up: loads the lookup script.
    ix.get_scores(&model, &long[..40], &candidates)
        .await
        .unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    for tokens in [&long[..40], &long[..]] {
        let before = commandstats(&client).await;
        let scores = ix.get_scores(&model, tokens, &candidates).await.unwrap();
        let after = commandstats(&client).await;
        assert_eq!(scores.blocks_found, tokens.len() / 16);
        assert_eq!(
            calls(&after, "evalsha") - calls(&before, "evalsha"),
            1,
            "one command per lookup"
        );
        assert_eq!(calls(&after, "eval"), calls(&before, "eval"));
    }
    let blocks_in_long_lookup = {
        let before = commandstats(&client).await;
        ix.get_scores(&model, &long, &candidates).await.unwrap();
        calls(&commandstats(&client).await, "zrange") - calls(&before, "zrange")
    };
    assert_eq!(
        blocks_in_long_lookup, 512,
        "the script walked every block server-side"
    );
}

#[tokio::test]
async fn an_unreachable_redis_means_no_information_then_recovers() {
    let port = free_port();
    let ix = redis_indexer(format!("redis://127.0.0.1:{port}"), "t3:");
    let tokens = prompt(2, 13);
    let model = Identifier::new(MODEL);
    let candidates = pods(&["a:8000"]);
    let scores = ix.get_scores(&model, &tokens, &candidates).await.unwrap();
    assert!(!scores.index_available);
    assert_eq!((scores.blocks_found, scores.pods[0].score), (0, 0.0));
    assert_eq!(ix.lookup_failures(), 1);
    // Events that cannot be written are counted, not fatal.
    ix.ingestor()
        .apply(
            &source("a:8000"),
            &batch(vec![stored(&[1], None, &tokens[..16], None)]),
        )
        .await;
    assert_eq!(ix.ingest_stats().index_errors, 1);

    let _server = RedisServer::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ix
        .get_scores(&model, &tokens, &candidates)
        .await
        .unwrap()
        .index_available
    {
        assert!(Instant::now() < deadline, "the index did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ix.ingestor()
        .apply(
            &source("a:8000"),
            &batch(vec![stored(&[1], None, &tokens[..16], None)]),
        )
        .await;
    let scores = ix.get_scores(&model, &tokens, &candidates).await.unwrap();
    assert_eq!(scores.pods[0].blocks, 1);
    let mut hits = Vec::new();
    let keys = ix.block_keys(MODEL, &tokens);
    assert_eq!(
        ix.index()
            .lookup(&keys, &candidates, &mut hits)
            .await
            .unwrap(),
        1
    );
}
