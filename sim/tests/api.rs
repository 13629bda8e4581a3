//! The OpenAI API as vLLM shapes it: chat and completions, streamed and
//! not, usage with cached tokens, `/v1/models`, `/tokenize`, `/health`
//! and errors.

mod common;

use common::{Sim, sse_data, words};
use llmd_sim::SimConfig;
use llmd_sim::filler::Filler;
use serde_json::{Value, json};

#[tokio::test]
async fn chat_completion_has_vllm_shape_and_usage() {
    let sim = Sim::start(SimConfig::new("m")).await;
    let (status, body) = sim
        .post(
            "/v1/chat/completions",
            &json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], "m");
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], Filler::new(0).text(5));
    assert_eq!(choice["finish_reason"], "length");
    // "<|user|>", "hello", "there", "<|assistant|>"
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    assert_eq!(body["usage"]["completion_tokens"], 5);
    assert_eq!(body["usage"]["total_tokens"], 9);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(body["kv_transfer_params"], Value::Null);
}

#[tokio::test]
async fn without_max_tokens_the_answer_stops_at_the_default_length() {
    let mut config = SimConfig::new("m");
    config.default_output_tokens = 3;
    let sim = Sim::start(config).await;
    let (_, body) = sim
        .post("/v1/completions", &json!({"prompt": "a b c"}))
        .await;
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn completion_has_vllm_shape_and_request_id_from_header() {
    let sim = Sim::start(SimConfig::new("m")).await;
    let response = sim
        .client
        .post(format!("{}/v1/completions", sim.base))
        .header("x-request-id", "abc-123")
        .json(&json!({"prompt": "one two three", "max_tokens": 2, "seed": 1}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], "cmpl-abc-123");
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], Filler::new(0).text(2));
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["prompt_tokens"], 3);
}

#[tokio::test]
async fn completion_accepts_token_ids() {
    let sim = Sim::start(SimConfig::new("m")).await;
    let (status, body) = sim
        .post(
            "/v1/completions",
            &json!({"prompt": [5, 6, 7, 8], "max_tokens": 1}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["usage"]["prompt_tokens"], 4);
}

#[tokio::test]
async fn streamed_chat_sends_role_tokens_finish_usage_and_done() {
    let sim = Sim::start(SimConfig::new("m")).await;
    let response = sim
        .client
        .post(format!("{}/v1/chat/completions", sim.base))
        .json(
            &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
                      "stream": true, "stream_options": {"include_usage": true}}),
        )
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let data = sse_data(&response.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert!(chunks.windows(2).all(|w| w[0]["id"] == w[1]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, Filler::new(0).text(3));
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    assert_eq!(usage["usage"]["prompt_tokens"], 3);
    assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
}

#[tokio::test]
async fn streamed_completion_without_usage_option_has_no_usage_chunk() {
    let sim = Sim::start(SimConfig::new("m")).await;
    let response = sim
        .client
        .post(format!("{}/v1/completions", sim.base))
        .json(&json!({"prompt": "x y", "max_tokens": 2, "stream": true}))
        .send()
        .await
        .unwrap();
    let data = sse_data(&response.text().await.unwrap());
    assert_eq!(data.len(), 4, "{data:?}");
    let chunks: Vec<Value> = data[..3]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "text_completion" && c.get("usage").is_none())
    );
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "length");
    assert_eq!(data[3], "[DONE]");
}

#[tokio::test]
async fn a_repeated_prompt_reports_its_cached_tokens() {
    let sim = Sim::start(SimConfig::new("m")).await;
    // 40 tokens: two full blocks of 16 and a partial one.
    let request = json!({"prompt": words(0, 40), "max_tokens": 1});
    let (_, first) = sim.post("/v1/completions", &request).await;
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let (_, second) = sim.post("/v1/completions", &request).await;
    assert_eq!(
        second["usage"]["prompt_tokens_details"]["cached_tokens"],
        32
    );
}

#[tokio::test]
async fn a_cache_salt_shares_cached_blocks_only_with_the_same_salt() {
    let sim = Sim::start(SimConfig::new("m")).await;
    // 40 tokens: two full blocks of 16 and a partial one.
    let prompt = words(0, 40);
    let cached = |salt: Option<&str>| {
        let request = match salt {
            Some(salt) => json!({"prompt": prompt, "max_tokens": 1, "cache_salt": salt}),
            None => json!({"prompt": prompt, "max_tokens": 1, "cache_salt": null}),
        };
        let sim = &sim;
        async move {
            let (status, body) = sim.post("/v1/completions", &request).await;
            assert_eq!(status, 200, "{body}");
            body["usage"]["prompt_tokens_details"]["cached_tokens"].clone()
        }
    };
    assert_eq!(cached(None).await, 0);
    assert_eq!(
        cached(Some("tenant-a")).await,
        0,
        "unsalted blocks not shared"
    );
    assert_eq!(cached(Some("tenant-a")).await, 32, "same salt shares");
    assert_eq!(cached(Some("tenant-b")).await, 0, "another salt does not");
    assert_eq!(cached(None).await, 32, "unsalted blocks still cached");
}

#[tokio::test]
async fn a_cache_salt_that_is_not_a_non_empty_string_is_refused_as_vllm_does() {
    let sim = Sim::start(SimConfig::new("m")).await;
    for salt in [json!(""), json!(7), json!(["a"])] {
        let (status, body) = sim
            .post(
                "/v1/chat/completions",
                &json!({"messages": [{"role": "user", "content": "hi"}], "cache_salt": salt}),
            )
            .await;
        assert_vllm_error(status, &body, 400, "BadRequestError");
        assert_eq!(
            body["message"], "Parameter 'cache_salt' must be a non-empty string if provided.",
            "{salt}"
        );
    }
}

#[tokio::test]
async fn a_fully_cached_prompt_still_computes_its_last_block() {
    let sim = Sim::start(SimConfig::new("m")).await;
    let request = json!({"prompt": words(0, 32), "max_tokens": 1});
    sim.post("/v1/completions", &request).await;
    let (_, second) = sim.post("/v1/completions", &request).await;
    assert_eq!(
        second["usage"]["prompt_tokens_details"]["cached_tokens"],
        16
    );
}

#[tokio::test]
async fn models_lists_every_served_name() {
    let mut config = SimConfig::new("org/model");
    config.served_model_names = vec!["alias-a".into(), "alias-b".into()];
    let sim = Sim::start(config).await;
    let (status, text) = sim.get_text("/v1/models").await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alias-a", "alias-b"]);
    assert_eq!(body["data"][0]["root"], "org/model");
    assert_eq!(body["data"][0]["owned_by"], "vllm");
    let (_, chat) = sim
        .post(
            "/v1/chat/completions",
            &json!({"model": "alias-b", "messages": [], "max_tokens": 1}),
        )
        .await;
    assert_eq!(chat["model"], "alias-a");
}

#[tokio::test]
async fn health_answers_200() {
    let sim = Sim::start(SimConfig::new("m")).await;
    assert_eq!(sim.get_text("/health").await, (200, String::new()));
}

#[tokio::test]
async fn tokenize_matches_the_prompt_the_engine_counts() {
    let sim = Sim::start(SimConfig::new("m")).await;
    let messages =
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "what now"}]);
    let (status, tokens) = sim
        .post(
            "/tokenize",
            &json!({"messages": messages, "return_token_strs": true}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(tokens["count"], 7);
    assert_eq!(tokens["max_model_len"], 4096);
    assert_eq!(tokens["tokens"].as_array().unwrap().len(), 7);
    assert_eq!(tokens["token_strs"][0], "<|system|>");
    let (_, chat) = sim
        .post(
            "/v1/chat/completions",
            &json!({"messages": messages, "max_tokens": 1}),
        )
        .await;
    assert_eq!(chat["usage"]["prompt_tokens"], tokens["count"]);

    let (_, text) = sim.post("/tokenize", &json!({"prompt": "a b a"})).await;
    assert_eq!(text["count"], 3);
    assert_eq!(text["tokens"][0], text["tokens"][2]);
    assert_eq!(text["token_strs"], Value::Null);
    let (_, completion) = sim
        .post(
            "/v1/completions",
            &json!({"prompt": text["tokens"], "max_tokens": 1}),
        )
        .await;
    assert_eq!(completion["usage"]["prompt_tokens"], 3);
}

fn assert_vllm_error(status: u16, body: &Value, code: u16, kind: &str) {
    assert_eq!(status, code, "{body}");
    assert_eq!(body["object"], "error");
    assert_eq!(body["type"], kind);
    assert_eq!(body["code"], code);
    assert_eq!(body["param"], "");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn bad_requests_get_vllm_errors() {
    let mut config = SimConfig::new("m");
    config.max_model_len = 8;
    let sim = Sim::start(config).await;
    let (status, body) = sim
        .post("/v1/completions", &json!({"model": "other", "prompt": "a"}))
        .await;
    assert_vllm_error(status, &body, 404, "NotFoundError");
    let (status, body) = sim
        .post(
            "/v1/completions",
            &json!({"prompt": words(0, 6), "max_tokens": 3}),
        )
        .await;
    assert_vllm_error(status, &body, 400, "BadRequestError");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("maximum context length is 8 tokens")
    );
    let (status, body) = sim
        .post("/v1/completions", &json!({"prompt": "", "max_tokens": 1}))
        .await;
    assert_vllm_error(status, &body, 400, "BadRequestError");
    let (status, body) = sim
        .post("/v1/completions", &json!({"prompt": "a", "max_tokens": 0}))
        .await;
    assert_vllm_error(status, &body, 400, "BadRequestError");
    let (status, body) = sim
        .post("/v1/chat/completions", &json!({"messages": "not a list"}))
        .await;
    assert_vllm_error(status, &body, 400, "BadRequestError");
    let (status, body) = sim
        .post("/v1/completions", &json!({"prompt": "a", "n": 2}))
        .await;
    assert_vllm_error(status, &body, 400, "BadRequestError");
    let (status, body) = sim.post("/tokenize", &json!({"model": "m"})).await;
    assert_vllm_error(status, &body, 400, "BadRequestError");
    let response = sim
        .client
        .post(format!("{}/v1/completions", sim.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_vllm_error(
        status,
        &response.json().await.unwrap(),
        400,
        "BadRequestError",
    );
}
