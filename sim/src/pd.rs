//! Prefill/decode disaggregation as vLLM's `NixlConnector` does it, seen
//! from the `kv_transfer_params` of requests and responses.
//!
//! - A request with `do_remote_decode: true` is a prefill for another
//!   server: it finishes with reason `length` (the sidecar sets
//!   `max_tokens: 1`) and answers with the parameters a decoder needs to
//!   pull its blocks.
//! - A request with `do_remote_prefill: true` and complete parameters was
//!   prefilled elsewhere: its prompt is loaded, not computed. Incomplete
//!   parameters are ignored and the prompt is prefilled locally, as vLLM
//!   does ("Got invalid KVTransferParams").

use crate::config::KvRole;
use crate::prefix_cache::BlockId;
use serde_json::{Value, json};

/// What a request's `kv_transfer_params` ask of this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PdMode {
    /// An ordinary request.
    Local,
    /// A prefill whose KV a remote decoder will pull.
    PrefillForRemoteDecode,
    /// A decode whose prompt KV was computed by a remote prefiller.
    DecodeAfterRemotePrefill,
}

/// Where decoders reach this server's KV blocks (vLLM reads
/// `VLLM_NIXL_SIDE_CHANNEL_HOST` and `VLLM_NIXL_SIDE_CHANNEL_PORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideChannel {
    /// Host reported as `remote_host`.
    pub host: String,
    /// Port reported as `remote_port`.
    pub port: u16,
}

impl SideChannel {
    /// Reads the side channel from environment-like `lookup`, with vLLM's
    /// defaults (`localhost`, 5600) for missing or unparsable values.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> SideChannel {
        SideChannel {
            host: lookup("VLLM_NIXL_SIDE_CHANNEL_HOST").unwrap_or_else(|| "localhost".into()),
            port: lookup("VLLM_NIXL_SIDE_CHANNEL_PORT")
                .and_then(|p| p.parse().ok())
                .unwrap_or(5600),
        }
    }
}

/// The mode of a request with `params` on a server of `role` (`None`: no
/// KV connector, so the parameters are ignored as vLLM ignores them).
pub fn mode(params: Option<&Value>, role: Option<KvRole>) -> PdMode {
    let (Some(params), Some(role)) = (params, role) else {
        return PdMode::Local;
    };
    let flag = |key: &str| params.get(key).and_then(Value::as_bool).unwrap_or(false);
    if flag("do_remote_prefill") && role != KvRole::KvProducer && is_complete(params) {
        PdMode::DecodeAfterRemotePrefill
    } else if flag("do_remote_decode") && role != KvRole::KvConsumer {
        PdMode::PrefillForRemoteDecode
    } else {
        PdMode::Local
    }
}

/// Whether decode-side parameters name a prefiller and blocks to pull.
fn is_complete(params: &Value) -> bool {
    let is_str = |key: &str| params.get(key).is_some_and(Value::is_string);
    let port_ok = params
        .get("remote_port")
        .and_then(Value::as_u64)
        .is_some_and(|p| u16::try_from(p).is_ok());
    let blocks_ok = params
        .get("remote_block_ids")
        .and_then(Value::as_array)
        .is_some_and(|ids| !ids.is_empty() && ids.iter().all(Value::is_u64));
    is_str("remote_engine_id") && is_str("remote_host") && port_ok && blocks_ok
}

/// The `kv_transfer_params` a prefill answers with, shaped like
/// `NixlConnector`'s `request_finished`.
pub fn prefill_answer(
    engine_id: &str,
    request_id: &str,
    block_ids: &[BlockId],
    side_channel: &SideChannel,
) -> Value {
    json!({
        "do_remote_prefill": true,
        "do_remote_decode": false,
        "remote_block_ids": block_ids,
        "remote_engine_id": engine_id,
        "remote_request_id": request_id,
        "remote_host": side_channel.host,
        "remote_port": side_channel.port,
        "tp_size": 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_params() -> Value {
        json!({"do_remote_prefill": true, "do_remote_decode": false, "remote_engine_id": "e",
               "remote_block_ids": [1, 2], "remote_host": "10.0.0.1", "remote_port": 5600,
               "remote_request_id": "cmpl-1", "tp_size": 1})
    }

    #[test]
    fn requests_are_classified_by_their_params_and_the_role() {
        let prefill = json!({"do_remote_decode": true, "do_remote_prefill": false,
                             "remote_engine_id": null, "remote_block_ids": null,
                             "remote_host": null, "remote_port": null});
        assert_eq!(
            mode(Some(&prefill), Some(KvRole::KvBoth)),
            PdMode::PrefillForRemoteDecode
        );
        assert_eq!(
            mode(Some(&prefill), Some(KvRole::KvConsumer)),
            PdMode::Local
        );
        assert_eq!(mode(Some(&prefill), None), PdMode::Local);
        let decode = decode_params();
        assert_eq!(
            mode(Some(&decode), Some(KvRole::KvConsumer)),
            PdMode::DecodeAfterRemotePrefill
        );
        assert_eq!(mode(Some(&decode), Some(KvRole::KvProducer)), PdMode::Local);
        assert_eq!(mode(None, Some(KvRole::KvBoth)), PdMode::Local);
    }

    #[test]
    fn incomplete_decode_params_fall_back_to_local_prefill() {
        for key in [
            "remote_engine_id",
            "remote_host",
            "remote_port",
            "remote_block_ids",
        ] {
            let mut params = decode_params();
            params.as_object_mut().unwrap().remove(key);
            assert_eq!(
                mode(Some(&params), Some(KvRole::KvBoth)),
                PdMode::Local,
                "{key}"
            );
        }
        let mut params = decode_params();
        params["remote_block_ids"] = json!([]);
        assert_eq!(mode(Some(&params), Some(KvRole::KvBoth)), PdMode::Local);
        params["remote_block_ids"] = json!([1]);
        params["remote_port"] = json!(70000);
        assert_eq!(mode(Some(&params), Some(KvRole::KvBoth)), PdMode::Local);
    }

    #[test]
    fn the_prefill_answer_names_engine_blocks_and_side_channel() {
        let side = SideChannel::from_lookup(|k| {
            (k == "VLLM_NIXL_SIDE_CHANNEL_PORT").then(|| "6000".into())
        });
        let answer = prefill_answer("eng", "cmpl-9", &[3, 4], &side);
        assert_eq!(answer["do_remote_prefill"], true);
        assert_eq!(answer["do_remote_decode"], false);
        assert_eq!(answer["remote_block_ids"], json!([3, 4]));
        assert_eq!(answer["remote_host"], "localhost");
        assert_eq!(answer["remote_port"], 6000);
        assert_eq!(answer["remote_request_id"], "cmpl-9");
        assert_eq!(
            mode(Some(&answer), Some(KvRole::KvConsumer)),
            PdMode::DecodeAfterRemotePrefill
        );
    }
}
