//! `POST /v1/chat/completions`: messages are rendered with the built-in
//! template, then tokenized.

use super::AppState;
use super::error::ApiError;
use super::generation::{Endpoint, respond};
use super::request::{CommonParams, parse_json};
use crate::template::{self, ChatMessage};
use crate::tokenizer;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use http::HeaderMap;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct ChatRequest {
    messages: Vec<ChatMessage>,
    #[serde(default)]
    max_completion_tokens: Option<usize>,
    #[serde(default = "yes")]
    add_generation_prompt: bool,
    #[serde(flatten)]
    common: CommonParams,
}

fn yes() -> bool {
    true
}

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: ChatRequest = parse_json(&body)?;
    let prompt = tokenizer::encode(&template::render(
        &request.messages,
        request.add_generation_prompt,
    ));
    let max_tokens = request.max_completion_tokens.or(request.common.max_tokens);
    respond(
        &state,
        &headers,
        Endpoint::Chat,
        request.common,
        max_tokens,
        prompt,
    )
    .await
}
