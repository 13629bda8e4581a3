//! Running a generation request and answering it, as one JSON response
//! or as server-sent events ending with `data: [DONE]`.

use super::AppState;
use super::error::ApiError;
use super::request::{CommonParams, base_request_id};
use crate::engine::{Completion, GenerationRequest, StreamItem};
use axum::Json;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use http::HeaderMap;
use opentelemetry::Context;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Which OpenAI endpoint is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
}

impl Endpoint {
    fn id_prefix(self) -> &'static str {
        match self {
            Endpoint::Chat => "chatcmpl-",
            Endpoint::Completions => "cmpl-",
        }
    }

    fn object(self, streamed: bool) -> &'static str {
        match (self, streamed) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completions, _) => "text_completion",
        }
    }
}

/// Seconds since the epoch, for `created`.
pub fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The fields every response and chunk of one request repeats.
#[derive(Debug, Clone)]
struct Envelope {
    endpoint: Endpoint,
    id: String,
    created: u64,
    model: String,
}

impl Envelope {
    fn wrap(&self, streamed: bool, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": self.endpoint.object(streamed),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }
}

/// Runs `prompt` and answers in the form the request asked for.
pub async fn respond(
    state: &AppState,
    headers: &HeaderMap,
    endpoint: Endpoint,
    params: CommonParams,
    max_tokens: Option<usize>,
    prompt: Vec<u32>,
) -> Result<Response, ApiError> {
    let arrival = Instant::now();
    let engine = &state.engine;
    let config = engine.config();
    params.check(config)?;
    let id = format!(
        "{}{}",
        endpoint.id_prefix(),
        base_request_id(headers, params.request_id.as_deref())
    );
    let trace_parent = if config.trace_requests {
        llmd_runtime::propagation::extract(headers)
    } else {
        Context::new()
    };
    let rx = engine.submit(GenerationRequest {
        request_id: id.clone(),
        prompt,
        max_tokens,
        temperature: params.temperature,
        top_p: params.top_p,
        cache_salt: params.salt()?.map(str::to_owned),
        kv_transfer_params: params.kv_transfer_params,
        trace_parent,
        arrival,
    })?;
    let envelope = Envelope {
        endpoint,
        id,
        created: unix_time(),
        model: config.served_model_name().to_owned(),
    };
    if params.stream.unwrap_or(false) {
        let include_usage = params.stream_options.is_some_and(|o| o.include_usage);
        Ok(stream_response(envelope, include_usage, rx))
    } else {
        collect_response(envelope, rx).await
    }
}

fn usage(completion: &Completion) -> Value {
    json!({
        "prompt_tokens": completion.prompt_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        "completion_tokens": completion.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": completion.cached_tokens},
    })
}

async fn collect_response(
    envelope: Envelope,
    mut rx: mpsc::Receiver<StreamItem>,
) -> Result<Response, ApiError> {
    let mut text = String::new();
    while let Some(item) = rx.recv().await {
        match item {
            StreamItem::Token(piece) => text.push_str(&piece),
            StreamItem::Finished(completion) => {
                let reason = completion.finish_reason.as_str();
                let choice = match envelope.endpoint {
                    Endpoint::Chat => json!({
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "reasoning_content": null, "tool_calls": []},
                        "logprobs": null,
                        "finish_reason": reason,
                        "stop_reason": null,
                    }),
                    Endpoint::Completions => json!({
                        "index": 0,
                        "text": text,
                        "logprobs": null,
                        "finish_reason": reason,
                        "stop_reason": null,
                        "prompt_logprobs": null,
                    }),
                };
                let mut body = envelope.wrap(false, json!([choice]));
                body["usage"] = usage(&completion);
                body["kv_transfer_params"] = completion.kv_transfer_params.unwrap_or(Value::Null);
                return Ok(Json(body).into_response());
            }
        }
    }
    Err(ApiError::internal("the request ended without a result"))
}

fn stream_response(
    envelope: Envelope,
    include_usage: bool,
    rx: mpsc::Receiver<StreamItem>,
) -> Response {
    let mut frames = VecDeque::new();
    if envelope.endpoint == Endpoint::Chat {
        frames.push_back(chunk(
            &envelope,
            json!({"role": "assistant", "content": ""}),
            None,
        ));
    }
    let state = ChunkStream {
        envelope,
        include_usage,
        rx,
        frames,
        done: false,
    };
    let events = stream::unfold(state, |mut s| async move {
        loop {
            if let Some(frame) = s.frames.pop_front() {
                return Some((Ok::<_, Infallible>(Event::default().data(frame)), s));
            }
            if s.done {
                return None;
            }
            match s.rx.recv().await {
                Some(StreamItem::Token(piece)) => {
                    let frame = chunk(&s.envelope, piece_delta(s.envelope.endpoint, &piece), None);
                    s.frames.push_back(frame);
                }
                Some(StreamItem::Finished(completion)) => s.finish(&completion),
                None => s.done = true,
            }
        }
    });
    Sse::new(events).into_response()
}

struct ChunkStream {
    envelope: Envelope,
    include_usage: bool,
    rx: mpsc::Receiver<StreamItem>,
    frames: VecDeque<String>,
    done: bool,
}

impl ChunkStream {
    fn finish(&mut self, completion: &Completion) {
        let empty = piece_delta(self.envelope.endpoint, "");
        let reason = completion.finish_reason.as_str();
        self.frames
            .push_back(chunk(&self.envelope, empty, Some(reason)));
        if self.include_usage {
            let mut last = self.envelope.wrap(true, json!([]));
            last["usage"] = usage(completion);
            self.frames.push_back(last.to_string());
        }
        self.frames.push_back("[DONE]".to_owned());
        self.done = true;
    }
}

/// The per-token payload: a chat `delta` or a completion's `text`.
fn piece_delta(endpoint: Endpoint, piece: &str) -> Value {
    match endpoint {
        Endpoint::Chat if piece.is_empty() => json!({}),
        Endpoint::Chat => json!({"content": piece}),
        Endpoint::Completions => json!(piece),
    }
}

fn chunk(envelope: &Envelope, payload: Value, finish_reason: Option<&str>) -> String {
    let choice = match envelope.endpoint {
        Endpoint::Chat => json!({
            "index": 0,
            "delta": payload,
            "logprobs": null,
            "finish_reason": finish_reason,
        }),
        Endpoint::Completions => json!({
            "index": 0,
            "text": payload,
            "logprobs": null,
            "finish_reason": finish_reason,
            "stop_reason": null,
        }),
    };
    envelope.wrap(true, json!([choice])).to_string()
}
