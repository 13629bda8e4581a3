//! `POST /v1/completions`: a text prompt (or one list of token ids).

use super::AppState;
use super::error::ApiError;
use super::generation::{Endpoint, respond};
use super::request::{CommonParams, parse_json};
use crate::tokenizer;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use http::HeaderMap;
use serde::Deserialize;

/// The prompt forms vLLM accepts, of which one prompt per request is
/// simulated.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
    Texts(Vec<String>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    prompt: Prompt,
    #[serde(flatten)]
    common: CommonParams,
}

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: CompletionRequest = parse_json(&body)?;
    let prompt = match request.prompt {
        Prompt::Text(text) => tokenizer::encode(&text),
        Prompt::Tokens(tokens) => tokens,
        Prompt::Texts(mut texts) if texts.len() == 1 => tokenizer::encode(&texts.remove(0)),
        Prompt::TokenLists(mut lists) if lists.len() == 1 => lists.remove(0),
        Prompt::Texts(_) | Prompt::TokenLists(_) => {
            return Err(ApiError::bad_request(
                "batched prompts are not supported by the simulator",
            ));
        }
    };
    let max_tokens = request.common.max_tokens;
    respond(
        &state,
        &headers,
        Endpoint::Completions,
        request.common,
        max_tokens,
        prompt,
    )
    .await
}
