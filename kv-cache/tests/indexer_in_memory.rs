//! The indexer over the in-memory index, fed with decoded KV events.

mod common;

use common::{MODEL, batch, prompt, removed, source, stored};
use llmd_kv_cache::index::{InMemoryConfig, InMemoryIndex, KvBlockIndex, StoredBlock};
use llmd_kv_cache::vllm_hash::{DEFAULT_NONE_HASH_SEED, ExtraKey, VllmBlockHasher, event_hash};
use llmd_kv_cache::{
    BlockKey, ConfigError, IndexConfig, KvCacheConfig, KvCacheIndexer, PodId, Tier,
};
use llmd_runtime::Identifier;

fn indexer() -> KvCacheIndexer {
    KvCacheIndexer::new(&KvCacheConfig::default()).unwrap()
}

fn vllm_hashes(tokens: &[u32]) -> Vec<u64> {
    let h = VllmBlockHasher::new(DEFAULT_NONE_HASH_SEED, 16).unwrap();
    h.block_hashes(tokens)
        .iter()
        .map(|d| event_hash(d))
        .collect()
}

fn pods(names: &[&str]) -> Vec<PodId> {
    names.iter().map(|n| PodId::new(n)).collect()
}

#[tokio::test]
async fn stored_blocks_score_their_pods_by_longest_weighted_prefix() {
    let ix = indexer();
    let tokens = prompt(5, 1);
    let a = vllm_hashes(&tokens);
    ix.ingestor()
        .apply(
            &source("a:8000"),
            &batch(vec![stored(&a[..4], None, &tokens[..64], Some("GPU"))]),
        )
        .await;
    // Pod b runs another hash algorithm: its engine hashes differ, its keys do not.
    let b_hashes = [11, 12];
    ix.ingestor()
        .apply(
            &source("b:8000"),
            &batch(vec![stored(&b_hashes, None, &tokens[..32], Some("CPU"))]),
        )
        .await;

    let model = Identifier::new(MODEL);
    let scores = ix
        .get_scores(&model, &tokens, &pods(&["a:8000", "b:8000", "c:8000"]))
        .await
        .unwrap();
    assert_eq!(scores.block_count, 5);
    assert_eq!(scores.blocks_found, 4);
    assert!(scores.index_available);
    assert_eq!(scores.score_of(&PodId::new("a:8000")), Some(0.8));
    assert!((scores.score_of(&PodId::new("b:8000")).unwrap() - 2.0 * 0.8 / 5.0).abs() < 1e-12);
    assert_eq!(scores.score_of(&PodId::new("c:8000")), Some(0.0));
    assert_eq!(scores.pods[0].blocks, 4);
    assert_eq!(ix.ingest_stats().blocks_stored, 6);

    // Another prompt sharing only the first block.
    let mut other = tokens.clone();
    other[20] += 1;
    let scores = ix
        .get_scores(&model, &other, &pods(&["a:8000", "b:8000"]))
        .await
        .unwrap();
    assert_eq!(scores.pods[0].blocks, 1);
    assert_eq!(scores.pods[1].blocks, 1);
    // Another model sees nothing.
    let scores = ix
        .get_scores(&Identifier::new("other-model"), &tokens, &pods(&["a:8000"]))
        .await
        .unwrap();
    assert_eq!(scores.blocks_found, 0);
}

#[tokio::test]
async fn events_chain_through_the_parent_hash() {
    let ix = indexer();
    let tokens = prompt(4, 2);
    let h = vllm_hashes(&tokens);
    let src = source("a:8000");
    ix.ingestor()
        .apply(
            &src,
            &batch(vec![stored(&h[..2], None, &tokens[..32], None)]),
        )
        .await;
    ix.ingestor()
        .apply(
            &src,
            &batch(vec![stored(&h[2..4], Some(h[1]), &tokens[32..64], None)]),
        )
        .await;
    let scores = ix
        .get_scores(&Identifier::new(MODEL), &tokens, &pods(&["a:8000"]))
        .await
        .unwrap();
    assert_eq!(scores.pods[0].blocks, 4);
    assert_eq!(scores.pods[0].score, 1.0);
}

#[tokio::test]
async fn block_removed_evicts_only_that_pod_and_tier() {
    let ix = indexer();
    let tokens = prompt(4, 3);
    let h = vllm_hashes(&tokens);
    for pod in ["a:8000", "b:8000"] {
        ix.ingestor()
            .apply(
                &source(pod),
                &batch(vec![stored(&h, None, &tokens[..64], None)]),
            )
            .await;
    }
    ix.ingestor()
        .apply(
            &source("a:8000"),
            &batch(vec![stored(&h[..1], None, &tokens[..16], Some("CPU"))]),
        )
        .await;
    // Same engine hashes on both pods: a removal on a touches only a.
    ix.ingestor()
        .apply(&source("a:8000"), &batch(vec![removed(&[h[2]], None)]))
        .await;
    // A CPU removal leaves the GPU copy of block 0.
    ix.ingestor()
        .apply(
            &source("a:8000"),
            &batch(vec![removed(&[h[0]], Some("CPU"))]),
        )
        .await;
    let model = Identifier::new(MODEL);
    let scores = ix
        .get_scores(&model, &tokens, &pods(&["a:8000", "b:8000"]))
        .await
        .unwrap();
    assert_eq!((scores.pods[0].blocks, scores.pods[1].blocks), (2, 4));
    assert_eq!(ix.ingest_stats().blocks_removed, 2);
    // Removing the GPU copy of block 0 leaves a with nothing in its prefix.
    ix.ingestor()
        .apply(
            &source("a:8000"),
            &batch(vec![removed(&[h[0]], Some("GPU"))]),
        )
        .await;
    let scores = ix
        .get_scores(&model, &tokens, &pods(&["a:8000"]))
        .await
        .unwrap();
    assert_eq!(scores.pods[0].blocks, 0);
}

#[tokio::test]
async fn all_blocks_cleared_empties_the_pod() {
    let ix = indexer();
    let tokens = prompt(3, 4);
    let h = vllm_hashes(&tokens);
    for pod in ["a:8000", "b:8000"] {
        ix.ingestor()
            .apply(
                &source(pod),
                &batch(vec![stored(&h[..2], None, &tokens[..32], None)]),
            )
            .await;
    }
    ix.ingestor()
        .apply(
            &source("a:8000"),
            &batch(vec![llmd_kv_cache::events::KvEvent::AllBlocksCleared]),
        )
        .await;
    let scores = ix
        .get_scores(
            &Identifier::new(MODEL),
            &tokens,
            &pods(&["a:8000", "b:8000"]),
        )
        .await
        .unwrap();
    assert_eq!((scores.pods[0].blocks, scores.pods[1].blocks), (0, 2));
    assert_eq!(ix.ingest_stats().pods_cleared, 1);
    // The cleared pod's engine hashes are forgotten: a child event is orphaned.
    ix.ingestor()
        .apply(
            &source("a:8000"),
            &batch(vec![stored(&[99], Some(h[1]), &tokens[32..48], None)]),
        )
        .await;
    assert_eq!(ix.ingest_stats().blocks_skipped, 1);
}

#[tokio::test]
async fn events_that_cannot_be_keyed_are_counted_not_indexed() {
    let ix = indexer();
    let tokens = prompt(2, 5);
    let src = source("a:8000");
    let mut wrong_size = stored(&[1], None, &tokens[..8], None);
    if let llmd_kv_cache::events::KvEvent::BlockStored(s) = &mut wrong_size {
        s.block_size = 8;
    }
    let mut other_group = stored(&[2], None, &tokens[..16], None);
    if let llmd_kv_cache::events::KvEvent::BlockStored(s) = &mut other_group {
        s.group_idx = Some(1);
    }
    let events = vec![
        wrong_size,
        stored(&[3, 4], None, &tokens[..16], None), // tokens for one block only
        stored(&[5], Some(777), &tokens[16..32], None), // unknown parent
        other_group,
    ];
    ix.ingestor().apply(&src, &batch(events)).await;
    let stats = ix.ingest_stats();
    assert_eq!(
        (stats.blocks_skipped, stats.blocks_stored, stats.events),
        (5, 0, 4)
    );
    let scores = ix
        .get_scores(&Identifier::new(MODEL), &tokens, &pods(&["a:8000"]))
        .await
        .unwrap();
    assert_eq!(scores.blocks_found, 0);
}

#[tokio::test]
async fn lora_name_scopes_the_keys() {
    let ix = indexer();
    let tokens = prompt(1, 6);
    let mut event = stored(&[1], None, &tokens[..16], None);
    if let llmd_kv_cache::events::KvEvent::BlockStored(s) = &mut event {
        s.lora_name = Some("sql-adapter".into());
    }
    ix.ingestor()
        .apply(&source("a:8000"), &batch(vec![event]))
        .await;
    let candidates = pods(&["a:8000"]);
    let lora = ix
        .get_scores(&Identifier::new("sql-adapter"), &tokens, &candidates)
        .await
        .unwrap();
    let base = ix
        .get_scores(&Identifier::new(MODEL), &tokens, &candidates)
        .await
        .unwrap();
    assert_eq!((lora.blocks_found, base.blocks_found), (1, 0));
}

/// A stored event of `tokens`' two blocks whose extra keys are `keys`.
fn with_extra_keys(
    tokens: &[u32],
    keys: Vec<Option<Vec<ExtraKey>>>,
    lora: Option<&str>,
) -> llmd_kv_cache::events::KvEvent {
    let mut event = stored(&[1, 2], None, &tokens[..32], None);
    if let llmd_kv_cache::events::KvEvent::BlockStored(s) = &mut event {
        s.extra_keys = Some(keys);
        s.lora_name = lora.map(str::to_owned);
    }
    event
}

fn text(key: &str) -> ExtraKey {
    ExtraKey::Text(key.to_owned())
}

#[tokio::test]
async fn a_cache_salt_keys_blocks_apart_from_other_salts_and_unsalted_prompts() {
    let ix = indexer();
    let tokens = prompt(2, 6);
    let salted = with_extra_keys(&tokens, vec![Some(vec![text("tenant-a")]), None], None);
    ix.ingestor()
        .apply(&source("a:8000"), &batch(vec![salted]))
        .await;
    let model = Identifier::new(MODEL);
    let candidates = pods(&["a:8000"]);
    let found = |salt: Option<&'static str>| {
        let (ix, model, tokens, candidates) = (&ix, &model, &tokens, &candidates);
        async move {
            ix.get_salted_scores(model, salt, tokens, candidates)
                .await
                .unwrap()
                .blocks_found
        }
    };
    assert_eq!(found(Some("tenant-a")).await, 2);
    assert_eq!(found(Some("tenant-b")).await, 0);
    assert_eq!(found(None).await, 0, "an unsalted prompt cannot use them");
    assert_eq!(
        ix.get_scores(&model, &tokens, &candidates)
            .await
            .unwrap()
            .blocks_found,
        0
    );
}

#[tokio::test]
async fn a_lora_name_among_the_extra_keys_scopes_the_keys_as_before() {
    let ix = indexer();
    let tokens = prompt(2, 6);
    let lora_keys = vec![Some(vec![text("sql-adapter")]); 2];
    let event = with_extra_keys(&tokens, lora_keys, Some("sql-adapter"));
    ix.ingestor()
        .apply(&source("a:8000"), &batch(vec![event]))
        .await;
    let scores = ix
        .get_scores(&Identifier::new("sql-adapter"), &tokens, &pods(&["a:8000"]))
        .await
        .unwrap();
    assert_eq!(scores.blocks_found, 2);
}

#[tokio::test]
async fn blocks_with_extra_keys_tokens_cannot_stand_for_are_not_indexed() {
    let ix = indexer();
    let tokens = prompt(2, 6);
    let image = ExtraKey::Tuple(vec![text("image-hash"), ExtraKey::Int(0)]);
    let multimodal = with_extra_keys(&tokens, vec![None, Some(vec![image])], None);
    let salt_not_first = with_extra_keys(&tokens, vec![None, Some(vec![text("s")])], None);
    ix.ingestor()
        .apply(&source("a:8000"), &batch(vec![multimodal, salt_not_first]))
        .await;
    let scores = ix
        .get_scores(&Identifier::new(MODEL), &tokens, &pods(&["a:8000"]))
        .await
        .unwrap();
    assert_eq!(
        scores.blocks_found, 0,
        "no false hit for a text-only prompt"
    );
    assert_eq!(ix.ingest_stats().blocks_skipped, 4);
}

#[tokio::test]
async fn the_index_is_bounded_by_least_recent_use() {
    let ix = InMemoryIndex::new(&InMemoryConfig {
        max_keys: 4,
        shards: 1,
        max_pods_per_key: 2,
    })
    .unwrap();
    let pod = PodId::new("a:8000");
    let blocks: Vec<StoredBlock> = (0..6u64)
        .map(|i| StoredBlock {
            engine_hash: i,
            key: BlockKey(1000 + i),
        })
        .collect();
    ix.add(&pod, Tier::Gpu, &blocks).await.unwrap();
    assert_eq!(ix.key_count(), 4);
    let mut hits = Vec::new();
    let first = ix
        .lookup(&[BlockKey(1000)], std::slice::from_ref(&pod), &mut hits)
        .await
        .unwrap();
    let last = ix
        .lookup(&[BlockKey(1005)], std::slice::from_ref(&pod), &mut hits)
        .await
        .unwrap();
    assert_eq!((first, last), (0, 1));
    // Three pods on one key with room for two: the oldest entry goes.
    for p in ["x", "y", "z"] {
        ix.add(&PodId::new(p), Tier::Gpu, &blocks[5..])
            .await
            .unwrap();
    }
    hits.clear();
    let candidates = pods(&["a:8000", "x", "y", "z"]);
    ix.lookup(&[BlockKey(1005)], &candidates, &mut hits)
        .await
        .unwrap();
    let held: Vec<u16> = hits.iter().map(|h| h.candidate).collect();
    assert_eq!(held, vec![2, 3]);
    assert!(ix.heap_bytes() > 0);
}

#[tokio::test]
async fn lookups_stop_at_the_first_block_no_candidate_holds() {
    let ix = indexer();
    let tokens = prompt(4, 7);
    let h = vllm_hashes(&tokens);
    // Blocks 0, 1 and 3 on a (3 chained through 2, which is then removed).
    ix.ingestor()
        .apply(
            &source("a:8000"),
            &batch(vec![stored(&h, None, &tokens[..64], None)]),
        )
        .await;
    ix.ingestor()
        .apply(&source("a:8000"), &batch(vec![removed(&[h[2]], None)]))
        .await;
    let keys = ix.block_keys(MODEL, &tokens);
    let mut hits = Vec::new();
    let found = ix
        .index()
        .lookup(&keys, &pods(&["a:8000"]), &mut hits)
        .await
        .unwrap();
    assert_eq!(found, 2);
    assert_eq!(hits.iter().map(|h| h.block).collect::<Vec<_>>(), vec![0, 1]);
    // Non-candidates do not count.
    hits.clear();
    assert_eq!(
        ix.index()
            .lookup(&keys, &pods(&["b:8000"]), &mut hits)
            .await
            .unwrap(),
        0
    );
}

#[test]
fn configuration_is_strict_and_validated() {
    let config: KvCacheConfig = serde_json::from_str(
        r#"{"block_size": 32, "index": {"redis": {"url": "redis://10.0.0.1:6379", "key_prefix": "x:"}},
            "tier_weights": {"cpu": 0.5}}"#,
    )
    .unwrap();
    assert_eq!(config.block_size, 32);
    assert!(
        matches!(&config.index, IndexConfig::Redis(r) if r.key_prefix == "x:" && r.max_pods_per_key == 8)
    );
    assert_eq!(
        (config.tier_weights.gpu, config.tier_weights.cpu),
        (1.0, 0.5)
    );
    assert!(serde_json::from_str::<KvCacheConfig>(r#"{"blocksize": 16}"#).is_err());
    assert!(
        serde_json::from_str::<KvCacheConfig>(r#"{"index": {"in_memory": {"max_key": 1}}}"#)
            .is_err()
    );
    let zero = KvCacheConfig {
        block_size: 0,
        ..KvCacheConfig::default()
    };
    assert_eq!(
        KvCacheIndexer::new(&zero).unwrap_err(),
        ConfigError::ZeroBlockSize
    );
    let too_many = KvCacheConfig {
        index: IndexConfig::InMemory(InMemoryConfig {
            max_pods_per_key: 9,
            ..InMemoryConfig::default()
        }),
        ..KvCacheConfig::default()
    };
    assert!(matches!(
        KvCacheIndexer::new(&too_many),
        Err(ConfigError::Index(_))
    ));
}

#[tokio::test]
async fn a_model_name_that_is_not_an_identifier_matches_nothing() {
    let ix = indexer();
    let tokens = prompt(1, 8);
    let src = llmd_kv_cache::events::EventSource {
        pod: PodId::new("a:8000"),
        model: "bad model".into(),
    };
    ix.ingestor()
        .apply(&src, &batch(vec![stored(&[1], None, &tokens[..16], None)]))
        .await;
    assert_eq!(ix.ingest_stats().blocks_stored, 1);
    let scores = ix
        .get_scores(&Identifier::new("bad model"), &tokens, &pods(&["a:8000"]))
        .await
        .unwrap();
    assert_eq!((scores.block_count, scores.blocks_found), (1, 0));
}
