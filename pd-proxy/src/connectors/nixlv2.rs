//! vLLM NixlConnector (llm-d `nixlv2`): prefill with `kv_transfer_params`
//! asking for a remote decode, then decode the original request with the
//! prefiller's `kv_transfer_params`.

use super::{PdRequest, limit_tokens_to_one};
use crate::decode;
use crate::errors::ProxyError;
use crate::json_body::{JsonObject, RawJson};
use crate::prefill::prefill;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::sync::LazyLock;

/// The member both legs' `kv_transfer_params` go in.
const KV_TRANSFER_PARAMS: &str = "kv_transfer_params";

/// The prefill leg's `kv_transfer_params`: a remote decode asked for, no
/// remote prefill (as llm-d's sidecar sends them); checked once.
static PREFILL_KV_TRANSFER_PARAMS: LazyLock<Option<RawJson>> = LazyLock::new(|| {
    RawJson::new(Bytes::from_static(
        concat!(
            r#"{"do_remote_decode":true,"do_remote_prefill":false,"remote_engine_id":null,"#,
            r#""remote_block_ids":null,"remote_host":null,"remote_port":null}"#
        )
        .as_bytes(),
    ))
});

/// Runs the nixlv2 flow.
pub async fn run(request: PdRequest) -> Response {
    let prefill_body = prefill_body(&request);
    let prefilled = match prefill(request.prefill_call(&prefill_body, false)).await {
        Ok(prefilled) => prefilled,
        Err(failure) => return failure.into_response(),
    };
    let Ok(answer) = JsonObject::parse(&prefilled.body) else {
        return ProxyError::PrefillBadResponse.into_response();
    };
    let mut decode_body = request.body.clone();
    match answer.get(KV_TRANSFER_PARAMS) {
        Some(params) => decode_body.set_raw(KV_TRANSFER_PARAMS, params.clone()),
        None => {
            tracing::warn!("prefiller response has no kv_transfer_params");
            decode_body.set(KV_TRANSFER_PARAMS, &serde_json::Value::Null);
        }
    }
    let cached_tokens = cached_tokens(&answer);
    decode::run(request.decode_plan(&decode_body, Some(cached_tokens), Some(prefilled.timing)))
        .await
}

/// The prefill request: remote decode asked for, no stream, one token.
fn prefill_body(request: &PdRequest) -> JsonObject {
    let mut body = request.body.clone();
    if let Some(params) = &*PREFILL_KV_TRANSFER_PARAMS {
        body.set_raw(KV_TRANSFER_PARAMS, params.clone());
    }
    body.set("stream", &false);
    body.remove("stream_options");
    limit_tokens_to_one(&mut body, request.api);
    body
}

/// The prefiller's `usage.prompt_tokens_details.cached_tokens`; vLLM sends
/// null details when there were none, which counts as 0.
fn cached_tokens(answer: &JsonObject) -> i64 {
    answer
        .get_object("usage")
        .and_then(|usage| usage.get_object("prompt_tokens_details"))
        .and_then(|details| details.get_i64("cached_tokens"))
        .unwrap_or(0)
}
