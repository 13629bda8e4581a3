//! Shared storage (llm-d `shared-storage`, formerly `lmcache`): the
//! prefiller computes the KV cache into storage both servers share (one
//! token generated), then the decoder gets the original request.
//!
//! A request with `cache_hit_threshold` is tried on the decoder first; only
//! when the decoder refuses it (finish reason `cache_threshold`: its cache
//! hit is below the threshold) is the prefill run, and then both legs get
//! `cache_hit_threshold: 0` so the decoder does not refuse it again.

use super::{PdRequest, limit_tokens_to_one};
use crate::decode;
use crate::prefill::prefill;
use axum::response::{IntoResponse, Response};

/// vLLM's per-request cache-hit threshold.
const CACHE_HIT_THRESHOLD: &str = "cache_hit_threshold";

/// Runs the shared-storage flow.
pub async fn run(request: PdRequest) -> Response {
    let mut decode_body = request.body.clone();
    if decode_body.contains(CACHE_HIT_THRESHOLD) {
        let first_try = request.decode_plan(&request.body, None, None);
        if let Some(response) = decode::try_without_prefill(first_try).await {
            return response;
        }
        decode_body.set(CACHE_HIT_THRESHOLD, &0);
    }
    let mut prefill_body = decode_body.clone();
    limit_tokens_to_one(&mut prefill_body, request.api);
    let prefilled = match prefill(request.prefill_call(&prefill_body, false)).await {
        Ok(prefilled) => prefilled,
        Err(failure) => return failure.into_response(),
    };
    decode::run(request.decode_plan(&decode_body, None, Some(prefilled.timing))).await
}
