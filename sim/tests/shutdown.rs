//! Stopping a simulator: idle kept-alive connections do not hold it, and a
//! request that outlasts the drain time is reported, not waited for.

mod common;

use common::Sim;
use llmd_sim::SimConfig;
use serde_json::json;
use std::time::Duration;

/// Bounds waits that only a broken shutdown would make endless.
const UNLESS_BROKEN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn an_idle_kept_alive_connection_does_not_hold_the_shutdown() {
    let sim = Sim::start(SimConfig::new("m")).await;
    let (status, _) = sim.get_text("/health").await;
    assert_eq!(status, 200);

    let drained = tokio::time::timeout(UNLESS_BROKEN, sim.server.shutdown(UNLESS_BROKEN))
        .await
        .expect("the shutdown does not wait for the idle connection")
        .unwrap();
    assert!(drained);
}

#[tokio::test]
async fn a_stream_that_outlasts_the_drain_is_reported_not_waited_for() {
    let mut config = SimConfig::new("m");
    config.timing.inter_token_latency = UNLESS_BROKEN;
    let sim = Sim::start(config).await;
    let mut response = sim
        .client
        .post(format!("{}/v1/completions", sim.base))
        .json(&json!({"prompt": "hi", "max_tokens": 3, "stream": true}))
        .send()
        .await
        .unwrap();
    assert!(response.chunk().await.unwrap().is_some(), "the first token");

    let drained = tokio::time::timeout(UNLESS_BROKEN, sim.server.shutdown(Duration::ZERO))
        .await
        .expect("the drain ends")
        .unwrap();
    assert!(!drained);
}
