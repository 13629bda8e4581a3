//! The request handlers: the P/D handler of the OpenAI inference routes
//! and the pass-through of everything else.

use crate::connectors::{self, PdRequest};
use crate::errors::ProxyError;
use crate::passthrough;
use crate::request::{self, Api};
use crate::state::Listener;
use crate::target;
use crate::upstream;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use llmd_runtime::{ErrorType, record, span};
use std::time::Instant;

/// Everything that is not a P/D request: to the decoder, unchanged.
pub async fn forward(listener: Listener, request: Request) -> Response {
    let (decoder, _) = match listener.decoder_for(request.headers()) {
        Ok(found) => found,
        Err(error) => return error.into_response(),
    };
    passthrough::forward(decoder, request).await
}

/// `POST` to `api` (`/v1/chat/completions`, `/v1/completions` or
/// `/v1/responses`): decode only without a prefill target, else the
/// connector's P/D flow.
pub async fn pd(listener: Listener, api: Api, request: Request) -> Response {
    let start = Instant::now();
    let connector = listener.shared.connector();
    // Each outcome records the route's attributes with its own in one
    // call: one lock of the span per request on the decode-only path.
    let routed = listener
        .decoder_for(request.headers())
        .and_then(|(decoder, data_parallel)| {
            let target = target::prefill_target(request.headers(), listener.shared.selection())?;
            Ok((decoder, data_parallel, target))
        });
    let (decoder, data_parallel, target) = match routed {
        Ok((decoder, data_parallel, Some(target))) => {
            record!(
                llm_d.pd_proxy.connector = connector,
                llm_d.pd_proxy.request_path = api,
                llm_d.pd_proxy.disaggregation_used = true,
                llm_d.pd_proxy.prefill_target = target.identifier(),
                llm_d.pd_proxy.prefill_candidates = target.candidates,
            );
            (decoder.clone(), data_parallel, target)
        }
        Ok((decoder, _, None)) => {
            record!(
                llm_d.pd_proxy.connector = connector,
                llm_d.pd_proxy.request_path = api,
                llm_d.pd_proxy.disaggregation_used = false,
                llm_d.pd_proxy.reason = "no_prefill_header",
            );
            return passthrough::forward(decoder, request).await;
        }
        Err(error) => {
            record!(
                llm_d.pd_proxy.connector = connector,
                llm_d.pd_proxy.request_path = api
            );
            return error.into_response();
        }
    };
    if !listener.shared.allowlist.allows(&target) {
        let error = ProxyError::SsrfDenied;
        record!(
            llm_d.pd_proxy.error = error.error_type(),
            llm_d.pd_proxy.denied_target = target.identifier(),
        );
        span::mark_current_error(error.error_type());
        tracing::warn!(
            target = target.host_port(),
            "SSRF protection: prefill target not in allowlist"
        );
        return error.into_response();
    }

    let (parts, body) = request.into_parts();
    let body = match request::read_json(body, listener.shared.config.max_body_bytes).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let mut headers = parts.headers;
    // Both legs' answers are read (kv_transfer_params, usage): ask for them
    // uncompressed.
    headers.remove(http::header::ACCEPT_ENCODING);
    let request_id = request::ensure_request_id(&mut headers);
    record!(
        gen_ai.operation.name = api.operation(),
        gen_ai.request.id = request_id.clone(),
    );
    if let Some(model) = request::model(&body) {
        record!(gen_ai.request.model = model);
    }
    // Boxed: the P/D flows' state is kilobytes that the decode-only path,
    // which shares this future, should not carry.
    Box::pin(connectors::run(PdRequest {
        listener,
        decoder,
        data_parallel,
        api,
        uri: upstream::origin_form(parts.uri),
        headers,
        body,
        target,
        request_id,
        start,
    }))
    .await
}
