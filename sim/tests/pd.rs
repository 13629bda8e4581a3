//! Prefill/decode roles through `kv_transfer_params`, as an llm-d sidecar
//! drives a NIXL prefiller and decoder.

mod common;

use common::{Sim, words};
use llmd_sim::SimConfig;
use llmd_sim::config::{KvRole, KvTransferConfig};
use serde_json::{Value, json};
use std::time::Duration;

fn config(role: KvRole) -> SimConfig {
    let mut config = SimConfig::new("m");
    config.kv_transfer = Some(KvTransferConfig {
        kv_connector: "NixlConnector".into(),
        kv_role: role,
        engine_id: Some(format!("{role:?}-engine")),
    });
    config
}

fn side_channel(name: &str) -> Option<String> {
    match name {
        "VLLM_NIXL_SIDE_CHANNEL_HOST" => Some("10.0.0.5".into()),
        "VLLM_NIXL_SIDE_CHANNEL_PORT" => Some("5601".into()),
        _ => None,
    }
}

/// What the llm-d sidecar sends to the prefiller.
fn prefill_request(prompt: &str) -> Value {
    json!({
        "prompt": prompt, "max_tokens": 1, "stream": false,
        "kv_transfer_params": {"do_remote_decode": true, "do_remote_prefill": false,
            "remote_engine_id": null, "remote_block_ids": null, "remote_host": null, "remote_port": null}
    })
}

fn cached_tokens(body: &Value) -> &Value {
    &body["usage"]["prompt_tokens_details"]["cached_tokens"]
}

#[tokio::test]
async fn prefill_answers_nixl_params_and_decode_skips_the_prompt() {
    let prefill = Sim::start_with_env(config(KvRole::KvProducer), side_channel).await;
    let decode = Sim::start(config(KvRole::KvConsumer)).await;
    let prompt = words(0, 40);

    let response = prefill
        .client
        .post(format!("{}/v1/completions", prefill.base))
        .header("x-request-id", "pd-1")
        .json(&prefill_request(&prompt))
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    let params = &answer["kv_transfer_params"];
    assert_eq!(params["do_remote_prefill"], true);
    assert_eq!(params["do_remote_decode"], false);
    assert_eq!(params["remote_engine_id"], "KvProducer-engine");
    assert_eq!(params["remote_request_id"], "cmpl-pd-1");
    assert_eq!(params["remote_host"], "10.0.0.5");
    assert_eq!(params["remote_port"], 5601);
    assert_eq!(params["tp_size"], 1);
    assert_eq!(
        params["remote_block_ids"].as_array().unwrap().len(),
        3,
        "40 tokens in blocks of 16"
    );

    let (status, decoded) = decode
        .post(
            "/v1/completions",
            &json!({"prompt": prompt, "max_tokens": 4, "kv_transfer_params": params}),
        )
        .await;
    assert_eq!(status, 200, "{decoded}");
    assert_eq!(decoded["usage"]["prompt_tokens"], 40);
    assert_eq!(
        cached_tokens(&decoded),
        40,
        "the whole prompt came from the prefiller"
    );
    assert_eq!(decoded["usage"]["completion_tokens"], 4);
    assert_eq!(decoded["kv_transfer_params"], Value::Null);

    // The transferred blocks are now in the decoder's own prefix cache.
    let (_, local) = decode
        .post(
            "/v1/completions",
            &json!({"prompt": prompt, "max_tokens": 1}),
        )
        .await;
    assert_eq!(cached_tokens(&local), 32);
}

/// A decode after a remote prefill does not pay the prefill cost: with an
/// hour per prompt token it still answers (the timeout only guards
/// against a hang).
#[tokio::test]
async fn decode_after_remote_prefill_skips_the_prefill_cost() {
    let prefill = Sim::start(config(KvRole::KvProducer)).await;
    let mut slow = config(KvRole::KvConsumer);
    slow.timing.prefill_time_per_token = Duration::from_secs(3600);
    let decode = Sim::start(slow).await;
    let prompt = words(0, 20);
    let (_, answer) = prefill
        .post("/v1/completions", &prefill_request(&prompt))
        .await;
    let request = json!({"prompt": prompt, "max_tokens": 2, "kv_transfer_params": answer["kv_transfer_params"]});
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(600),
        decode.post("/v1/completions", &request),
    )
    .await
    .expect("the decoder computed the prompt instead of loading it");
    assert_eq!(status, 200, "{body}");
    assert_eq!(cached_tokens(&body), 20);
}

#[tokio::test]
async fn invalid_decode_params_fall_back_to_local_prefill() {
    let decode = Sim::start(config(KvRole::KvBoth)).await;
    let params = json!({"do_remote_prefill": true, "do_remote_decode": false,
                        "remote_block_ids": [1, 2], "remote_host": "10.0.0.5", "remote_port": 5601});
    let (status, body) = decode
        .post(
            "/v1/completions",
            &json!({"prompt": words(0, 40), "max_tokens": 2, "kv_transfer_params": params}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(cached_tokens(&body), 0, "prefilled locally");
    assert_eq!(body["kv_transfer_params"], Value::Null);
}

#[tokio::test]
async fn without_a_connector_kv_transfer_params_are_ignored() {
    let plain = Sim::start(SimConfig::new("m")).await;
    let (_, body) = plain
        .post("/v1/completions", &prefill_request(&words(0, 40)))
        .await;
    assert_eq!(body["kv_transfer_params"], Value::Null);
    assert_eq!(cached_tokens(&body), 0);
}
