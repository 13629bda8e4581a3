//! vLLM's `POST /tokenize`: `{"model", "prompt"}` or `{"model", "messages",
//! "add_generation_prompt": true}` in, `{"count", "max_model_len", "tokens"}` out.

use super::{Prompt, TokenizeError};
use axum::body::Body;
use http::Request;
use http_body_util::{BodyExt, Limited};
use llmd_runtime::http::{OriginPools, json_post};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The largest `/tokenize` answer read (a 128k-token prompt's ids take
/// about 1 MiB).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A client of vLLM's tokenizer endpoint.
#[derive(Clone, Debug)]
pub struct VllmTokenizer {
    client: OriginPools,
    timeout: Duration,
}

#[derive(Deserialize)]
struct TokenizeResponse {
    tokens: Vec<u32>,
}

impl VllmTokenizer {
    /// A tokenizer client giving up after `timeout`.
    pub fn new(client: OriginPools, timeout: Duration) -> VllmTokenizer {
        VllmTokenizer { client, timeout }
    }

    /// Asks the vLLM server at `pod` for the token ids of `prompt`.
    pub async fn tokenize(
        &self,
        pod: SocketAddr,
        model: &str,
        prompt: &Prompt,
    ) -> Result<Vec<u32>, TokenizeError> {
        let body = match prompt {
            Prompt::TokenIds(ids) => return Ok(ids.clone()),
            Prompt::Text(text) => serde_json::json!({ "model": model, "prompt": text }),
            Prompt::Chat(messages) => {
                serde_json::json!({ "model": model, "messages": messages, "add_generation_prompt": true })
            }
        };
        let request = serde_json::to_vec(&body)
            .ok()
            .and_then(|json| json_post("/tokenize", json).ok())
            .ok_or(TokenizeError::Remote("request"))?;
        let parsed = tokio::time::timeout(self.timeout, self.call(pod, request))
            .await
            .map_err(|_| TokenizeError::Remote("timeout"))??;
        Ok(parsed.tokens)
    }

    async fn call(
        &self,
        pod: SocketAddr,
        request: Request<Body>,
    ) -> Result<TokenizeResponse, TokenizeError> {
        let response = self
            .client
            .send(&pod, request)
            .await
            .map_err(|_| TokenizeError::Remote("connect"))?;
        if !response.status().is_success() {
            return Err(TokenizeError::Remote("status"));
        }
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|_| TokenizeError::Remote("body"))?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|_| TokenizeError::Remote("body"))
    }
}
