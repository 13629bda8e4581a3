//! `/metrics`: vLLM's names and labels, real running/waiting counts under
//! `--max-num-seqs`, KV usage and prefix-cache counters.

mod common;

use common::{Sim, words};
use llmd_sim::SimConfig;
use llmd_sim::config::Timing;
use serde_json::json;
use std::time::Duration;

const LABELS: &str = r#"{engine="0",model_name="m"}"#;

#[tokio::test]
async fn metrics_expose_vllm_names() {
    let sim = Sim::start(SimConfig::new("m")).await;
    let (status, text) = sim.get_text("/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
    ] {
        assert!(
            text.contains(&format!("\n{name}{LABELS} ")),
            "{name} missing:\n{text}"
        );
    }
    let info = text
        .lines()
        .find(|l| l.starts_with("vllm:cache_config_info{"))
        .unwrap();
    assert!(
        info.contains(r#"block_size="16""#) && info.contains(r#"num_gpu_blocks="2048""#),
        "{info}"
    );
    assert!(
        info.contains(r#"model_name="m""#) && info.contains(r#"engine="0""#),
        "{info}"
    );
}

#[tokio::test]
async fn prefix_cache_counters_count_tokens() {
    let sim = Sim::start(SimConfig::new("m")).await;
    let request = json!({"prompt": words(0, 40), "max_tokens": 1});
    sim.post("/v1/completions", &request).await;
    sim.post("/v1/completions", &request).await;
    assert_eq!(
        sim.metric(&format!("vllm:prefix_cache_queries_total{LABELS}"))
            .await,
        80.0
    );
    assert_eq!(
        sim.metric(&format!("vllm:prefix_cache_hits_total{LABELS}"))
            .await,
        32.0
    );
    assert_eq!(
        sim.metric(&format!("vllm:kv_cache_usage_perc{LABELS}"))
            .await,
        0.0
    );
}

/// With one running slot, a second request waits until the first ends
/// (here: until its client disconnects, which aborts it).
#[tokio::test]
async fn running_and_waiting_follow_admission() {
    let mut config = SimConfig::new("m");
    config.max_num_seqs = 1;
    config.timing = Timing {
        inter_token_latency: Duration::from_secs(3600),
        ..Timing::default()
    };
    let sim = Sim::start(config).await;
    let mut first = sim
        .client
        .post(format!("{}/v1/completions", sim.base))
        .json(&json!({"prompt": words(0, 20), "max_tokens": 2, "stream": true}))
        .send()
        .await
        .unwrap();
    // The first token arrives: the request is running, its second token
    // an hour away.
    first.chunk().await.unwrap().unwrap();
    assert_eq!(
        sim.metric(&format!("vllm:num_requests_running{LABELS}"))
            .await,
        1.0
    );
    let usage = sim
        .metric(&format!("vllm:kv_cache_usage_perc{LABELS}"))
        .await;
    assert!(usage > 0.0, "{usage}");

    let client = sim.client.clone();
    let url = format!("{}/v1/completions", sim.base);
    let second = tokio::spawn(async move {
        let response = client
            .post(url)
            .json(&json!({"prompt": "later", "max_tokens": 1}))
            .send()
            .await
            .unwrap();
        response.json::<serde_json::Value>().await.unwrap()
    });
    while sim
        .metric(&format!("vllm:num_requests_waiting{LABELS}"))
        .await
        < 1.0
    {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        sim.metric(&format!("vllm:num_requests_running{LABELS}"))
            .await,
        1.0
    );

    drop(first);
    let answer = second.await.unwrap();
    assert_eq!(answer["usage"]["completion_tokens"], 1);
    assert_eq!(
        sim.metric(&format!("vllm:num_requests_waiting{LABELS}"))
            .await,
        0.0
    );
    assert_eq!(
        sim.metric(&format!("vllm:num_requests_running{LABELS}"))
            .await,
        0.0
    );
    assert_eq!(
        sim.metric(&format!("vllm:kv_cache_usage_perc{LABELS}"))
            .await,
        0.0
    );
}
