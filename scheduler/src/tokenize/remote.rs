//! vLLM's `POST /tokenize`: `{"model", "prompt"}` or `{"model", "messages",
//! "add_generation_prompt": true}` in, `{"count", "max_model_len", "tokens"}` out.

use super::{Prompt, TokenizeError};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// A client of vLLM's tokenizer endpoint.
#[derive(Clone, Debug)]
pub struct VllmTokenizer {
    client: reqwest::Client,
    timeout: Duration,
}

#[derive(Deserialize)]
struct TokenizeResponse {
    tokens: Vec<u32>,
}

impl VllmTokenizer {
    /// A tokenizer client giving up after `timeout`.
    pub fn new(client: reqwest::Client, timeout: Duration) -> VllmTokenizer {
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
        let response = self
            .client
            .post(format!("http://{pod}/tokenize"))
            .timeout(self.timeout)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                TokenizeError::Remote(if e.is_timeout() { "timeout" } else { "connect" })
            })?;
        if !response.status().is_success() {
            return Err(TokenizeError::Remote("status"));
        }
        let parsed: TokenizeResponse = response
            .json()
            .await
            .map_err(|_| TokenizeError::Remote("body"))?;
        Ok(parsed.tokens)
    }
}
