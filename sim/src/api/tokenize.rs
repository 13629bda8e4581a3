//! `POST /tokenize`, with vLLM's request and response shapes: a `prompt`
//! or chat `messages` in, `{count, max_model_len, tokens, token_strs}` out.

use super::AppState;
use super::error::ApiError;
use super::request::{check_model, parse_json};
use crate::template::{self, ChatMessage};
use crate::tokenizer;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
struct TokenizeRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<ChatMessage>>,
    #[serde(default = "yes")]
    add_generation_prompt: bool,
    #[serde(default)]
    return_token_strs: bool,
}

fn yes() -> bool {
    true
}

pub async fn handle(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let request: TokenizeRequest = parse_json(&body)?;
    let config = state.engine.config();
    check_model(config, request.model.as_deref())?;
    let text = match (request.prompt, request.messages) {
        (Some(prompt), None) => prompt,
        (None, Some(messages)) => template::render(&messages, request.add_generation_prompt),
        _ => return Err(ApiError::bad_request("give either `prompt` or `messages`")),
    };
    let tokens = tokenizer::encode(&text);
    let token_strs = request
        .return_token_strs
        .then(|| tokenizer::token_strs(&text));
    Ok(Json(json!({
        "count": tokens.len(),
        "max_model_len": config.max_model_len,
        "tokens": tokens,
        "token_strs": token_strs,
    })))
}
