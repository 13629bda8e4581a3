//! The KV connectors: how a P/D request is split into its prefill and
//! decode legs.

mod nixlv2;
mod sglang;
mod shared_storage;

use crate::config::KvConnector;
use crate::decode::DecodePlan;
use crate::json_body::JsonObject;
use crate::prefill::{PrefillCall, PrefillTiming};
use crate::request::{self, Api};
use crate::state::{Decoder, Listener};
use crate::target::PrefillTarget;
use axum::response::Response;
use http::{HeaderMap, Method, Uri};
use llmd_runtime::Identifier;
use std::time::Instant;

/// A request that runs a prefill leg.
#[derive(Debug)]
pub struct PdRequest {
    /// The listener that took it.
    pub listener: Listener,
    /// The decoder rank it goes to.
    pub decoder: Decoder,
    /// Whether data-parallel routing chose the decoder.
    pub data_parallel: bool,
    /// The API.
    pub api: Api,
    /// The path and query (origin form), forwarded unchanged.
    pub uri: Uri,
    /// The client's headers (with `x-request-id` set).
    pub headers: HeaderMap,
    /// The parsed body.
    pub body: JsonObject,
    /// The prefiller.
    pub target: PrefillTarget,
    /// The request id shared by both legs.
    pub request_id: Identifier,
    /// When the request reached the proxy.
    pub start: Instant,
}

/// Runs `request` with the configured connector.
pub async fn run(request: PdRequest) -> Response {
    match request.listener.shared.connector() {
        KvConnector::NixlV2 => nixlv2::run(request).await,
        KvConnector::SharedStorage => shared_storage::run(request).await,
        KvConnector::SgLang => sglang::run(request).await,
    }
}

impl PdRequest {
    fn prefill_call(&self, body: &JsonObject, asynchronous: bool) -> PrefillCall {
        let shared = &self.listener.shared;
        PrefillCall {
            upstream: shared.prefillers.clone(),
            target: self.target.clone(),
            api: self.api,
            headers: self.headers.clone(),
            body: body.to_bytes(),
            request_id: self.request_id.clone(),
            connector: shared.connector(),
            asynchronous,
            retry: shared.config.prefill_retry,
        }
    }

    fn decode_plan(
        &self,
        body: &JsonObject,
        cached_tokens: Option<i64>,
        prefill: Option<PrefillTiming>,
    ) -> DecodePlan {
        let shared = &self.listener.shared;
        DecodePlan {
            origin: self.decoder.origin.clone(),
            method: Method::POST,
            uri: self.uri.clone(),
            headers: self.headers.clone(),
            body: body.to_bytes(),
            request_id: self.request_id.clone(),
            connector: shared.connector(),
            streaming: self.body.get_bool("stream").unwrap_or(false),
            data_parallel: self.data_parallel,
            target: self.decoder.target.clone(),
            model: request::model(&self.body),
            cached_tokens,
            concurrent_with_prefill: shared.connector() == KvConnector::SgLang,
            request_start: self.start,
            prefill,
            probe_cache_threshold: false,
        }
    }
}

/// Sets the API's token limits to 1 for a prefill: the first field always,
/// the others only when the client sent them.
fn limit_tokens_to_one(body: &mut JsonObject, api: Api) {
    for (i, field) in api.token_limit_fields().iter().enumerate() {
        if i == 0 || body.contains(field) {
            body.set(field, &1);
        }
    }
}
