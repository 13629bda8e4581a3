//! A small OpenAI chat-completions client: one request, streamed or not,
//! with optional `x-request-id` and `traceparent` headers; it reads the
//! whole answer and keeps only what the demo and tests check (status,
//! usage, chunk count, completion).

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use std::time::Duration;

/// Longest one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Build(reqwest::Error),
    /// The request failed before or while reading the answer.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
}

/// One chat completion to send.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    /// `model`.
    pub model: String,
    /// The single user message.
    pub prompt: String,
    /// `stream` (with `stream_options.include_usage`).
    pub stream: bool,
    /// `max_tokens`.
    pub max_tokens: u32,
    /// `x-request-id`, if any.
    pub request_id: Option<String>,
    /// `traceparent`, if any.
    pub traceparent: Option<String>,
    /// Other headers (e.g. `x-prefiller-host-port` straight to a pd-proxy).
    pub headers: Vec<(String, String)>,
    /// vLLM's `cache_salt`, if any.
    pub cache_salt: Option<String>,
}

impl ChatRequest {
    /// A request of `prompt` for `model`, 8 tokens, not streamed, no
    /// extra headers.
    pub fn new(model: &str, prompt: &str) -> ChatRequest {
        ChatRequest {
            model: model.to_owned(),
            prompt: prompt.to_owned(),
            stream: false,
            max_tokens: 8,
            request_id: None,
            traceparent: None,
            headers: Vec::new(),
            cache_salt: None,
        }
    }

    fn body(&self) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": [{"role": "user", "content": self.prompt}],
            "max_tokens": self.max_tokens,
            "stream": self.stream,
        });
        if self.stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        if let Some(salt) = &self.cache_salt {
            body["cache_salt"] = json!(salt);
        }
        body
    }
}

/// Token usage as the answer reported it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// `prompt_tokens`.
    pub prompt_tokens: u64,
    /// `completion_tokens`.
    pub completion_tokens: u64,
}

/// What came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatOutcome {
    /// The HTTP status.
    pub status: u16,
    /// Usage, when the answer carried it.
    pub usage: Option<Usage>,
    /// Streamed chunks with choices (0 for a non-streamed answer).
    pub chunks: usize,
    /// Whether the answer was complete: a JSON completion with choices, or
    /// a stream ending with `data: [DONE]`.
    pub complete: bool,
    /// The answer's `x-request-id` header.
    pub request_id: Option<String>,
}

impl ChatOutcome {
    /// A 2xx status and a complete answer.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status) && self.complete
    }
}

/// An HTTP client for the stack (plain HTTP, HTTP/1.1).
pub fn http_client() -> Result<reqwest::Client, ClientError> {
    llmd_runtime::http::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(ClientError::Build)
}

/// Sends `request` to `<base_url>/v1/chat/completions` and reads the
/// whole answer.
pub async fn chat(
    client: &reqwest::Client,
    base_url: &str,
    request: &ChatRequest,
) -> Result<ChatOutcome, ClientError> {
    let mut builder = client
        .post(format!("{base_url}/v1/chat/completions"))
        .json(&request.body());
    if let Some(id) = &request.request_id {
        builder = builder.header("x-request-id", id);
    }
    if let Some(traceparent) = &request.traceparent {
        builder = builder.header("traceparent", traceparent);
    }
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let response = builder.send().await?;
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let streamed = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let mut outcome = ChatOutcome {
        status,
        usage: None,
        chunks: 0,
        complete: false,
        request_id,
    };
    if streamed {
        read_stream(response, &mut outcome).await?;
    } else {
        let body: Value = serde_json::from_slice(&response.bytes().await?).unwrap_or(Value::Null);
        outcome.usage = usage_of(&body);
        outcome.complete = body["choices"].as_array().is_some_and(|c| !c.is_empty());
    }
    Ok(outcome)
}

async fn read_stream(
    response: reqwest::Response,
    outcome: &mut ChatOutcome,
) -> Result<(), ClientError> {
    let mut pending = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(bytes) = body.next().await {
        pending.extend_from_slice(&bytes?);
        while let Some(end) = find(&pending, b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            read_event(&event, outcome);
        }
    }
    Ok(())
}

fn read_event(event: &[u8], outcome: &mut ChatOutcome) {
    let text = String::from_utf8_lossy(event);
    for data in text.lines().filter_map(|line| line.strip_prefix("data:")) {
        let data = data.trim();
        if data == "[DONE]" {
            outcome.complete = true;
            continue;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        if chunk["choices"].as_array().is_some_and(|c| !c.is_empty()) {
            outcome.chunks += 1;
        }
        if let Some(usage) = usage_of(&chunk) {
            outcome.usage = Some(usage);
        }
    }
}

fn usage_of(body: &Value) -> Option<Usage> {
    let usage = body.get("usage")?;
    Some(Usage {
        prompt_tokens: usage.get("prompt_tokens")?.as_u64()?,
        completion_tokens: usage.get("completion_tokens")?.as_u64()?,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_events_give_chunks_usage_and_completion() {
        let mut outcome = ChatOutcome {
            status: 200,
            usage: None,
            chunks: 0,
            complete: false,
            request_id: None,
        };
        read_event(b"data: {\"choices\":[{\"delta\":{}}]}\n\n", &mut outcome);
        read_event(
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
            &mut outcome,
        );
        assert!(!outcome.succeeded());
        read_event(b"data: [DONE]\n\n", &mut outcome);
        assert_eq!(outcome.chunks, 1);
        assert_eq!(
            outcome.usage,
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 2
            })
        );
        assert!(outcome.succeeded());
    }

    #[test]
    fn streamed_requests_ask_for_usage() {
        let mut request = ChatRequest::new("m", "hi");
        assert!(request.body().get("stream_options").is_none());
        request.stream = true;
        assert_eq!(request.body()["stream_options"]["include_usage"], true);
    }
}
