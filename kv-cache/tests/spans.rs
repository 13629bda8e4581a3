//! The spans of a scoring request: `llm_d.kv_cache.get_scores` with its
//! `storage.lookup` and `scorer.compute` children, metadata only.

mod common;

use common::{MODEL, batch, prompt, source, stored};
use llmd_kv_cache::index::RedisConfig;
use llmd_kv_cache::{IndexConfig, KvCacheConfig, KvCacheIndexer, PodId};
use llmd_runtime::Identifier;
use llmd_runtime::testing::{attribute, capture};
use opentelemetry::Value;
use opentelemetry::trace::Status;

fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::I64(i)) => *i,
        other => panic!("expected an int, got {other:?}"),
    }
}

fn float(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::F64(f)) => *f,
        other => panic!("expected a float, got {other:?}"),
    }
}

#[tokio::test]
async fn get_scores_records_the_span_tree() {
    let ix = KvCacheIndexer::new(&KvCacheConfig::default()).unwrap();
    let tokens = prompt(4, 21);
    ix.ingestor()
        .apply(
            &source("a:8000"),
            &batch(vec![stored(&[1, 2], None, &tokens[..32], None)]),
        )
        .await;
    let pods = [
        PodId::new("a:8000"),
        PodId::new("b:8000"),
        PodId::new("c:8000"),
    ];

    let spans = capture();
    let scores = ix
        .get_scores(&Identifier::new(MODEL), &tokens, &pods)
        .await
        .unwrap();
    assert_eq!(scores.blocks_found, 2);

    let root = spans.one("llm_d.kv_cache.get_scores");
    let lookup = spans.one("llm_d.kv_cache.storage.lookup");
    let compute = spans.one("llm_d.kv_cache.scorer.compute");
    assert_eq!(lookup.parent_span_id, root.span_context.span_id());
    assert_eq!(compute.parent_span_id, root.span_context.span_id());
    assert_eq!(lookup.span_context.trace_id(), root.span_context.trace_id());

    assert_eq!(
        attribute(&root, "gen_ai.request.model"),
        Some(&Value::from(MODEL))
    );
    assert_eq!(int(attribute(&root, "llm_d.kv_cache.pod_count")), 3);
    assert_eq!(
        int(attribute(&root, "llm_d.kv_cache.token_count")),
        tokens.len() as i64
    );
    assert_eq!(int(attribute(&root, "llm_d.kv_cache.block_keys.count")), 4);
    assert_eq!(int(attribute(&root, "llm_d.kv_cache.blocks_found")), 2);
    assert_eq!(
        float(attribute(&root, "llm_d.kv_cache.block_hit_ratio")),
        0.5
    );
    assert_eq!(root.status, Status::Unset);

    assert_eq!(
        int(attribute(&lookup, "llm_d.kv_cache.lookup.pod_filter_count")),
        3
    );
    assert_eq!(
        attribute(&lookup, "llm_d.kv_cache.lookup.cache_hit"),
        Some(&Value::Bool(true))
    );
    assert_eq!(
        int(attribute(&lookup, "llm_d.kv_cache.lookup.blocks_found")),
        2
    );

    assert_eq!(
        attribute(&compute, "llm_d.kv_cache.scorer.algorithm"),
        Some(&Value::from("longest_prefix"))
    );
    assert_eq!(
        int(attribute(&compute, "llm_d.kv_cache.scorer.key_count")),
        4
    );
    assert_eq!(float(attribute(&compute, "llm_d.kv_cache.score.max")), 0.5);
    assert!((float(attribute(&compute, "llm_d.kv_cache.score.avg")) - 0.5 / 3.0).abs() < 1e-12);
    assert_eq!(
        int(attribute(&compute, "llm_d.kv_cache.scorer.pods_scored")),
        1
    );

    // Metadata only: no token ids or pod lists on any span.
    for span in spans.spans() {
        for kv in &span.attributes {
            assert!(
                !kv.value.as_str().contains("a:8000"),
                "{}: {:?}",
                span.name,
                kv
            );
        }
    }
}

#[tokio::test]
async fn an_unreachable_index_marks_the_lookup_failed_not_the_request() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ix = KvCacheIndexer::new(&KvCacheConfig {
        index: IndexConfig::Redis(RedisConfig {
            url: format!("redis://127.0.0.1:{port}"),
            connect_timeout_ms: 200,
            ..RedisConfig::default()
        }),
        ..KvCacheConfig::default()
    })
    .unwrap();
    let spans = capture();
    let scores = ix
        .get_scores(
            &Identifier::new(MODEL),
            &prompt(2, 1),
            &[PodId::new("a:8000")],
        )
        .await
        .unwrap();
    assert!(!scores.index_available);
    let lookup = spans.one("llm_d.kv_cache.storage.lookup");
    assert!(matches!(lookup.status, Status::Error { .. }));
    assert_eq!(
        attribute(&lookup, "error.type"),
        Some(&Value::from("redis"))
    );
    assert_eq!(spans.one("llm_d.kv_cache.get_scores").status, Status::Unset);
}
