//! The request handlers: the P/D handler of the OpenAI inference routes
//! and the pass-through of everything else.

use crate::connectors::{self, PdRequest};
use crate::errors::ProxyError;
use crate::passthrough;
use crate::request::{self, Api};
use crate::state::{Decoder, Listener};
use crate::target::{self, PrefillTarget};
use crate::upstream;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use llmd_runtime::{ErrorType, attributes, record, span};
use opentelemetry::KeyValue;
use std::time::Instant;

/// Everything that is not a P/D request: to the decoder, unchanged.
pub async fn forward(listener: &Listener, request: Request) -> Response {
    let (decoder, _) = match listener.decoder_for(request.headers()) {
        Ok(found) => found,
        Err(error) => return error.into_response(),
    };
    passthrough::forward(decoder, request).await
}

/// Where a P/D request goes: read from its headers before its span starts,
/// so that the span starts with the decision in its attributes.
#[derive(Debug)]
pub struct Route<'a> {
    /// The decoder the request goes to.
    decoder: &'a Decoder,
    /// Whether data-parallel routing chose the decoder.
    data_parallel: bool,
    /// The prefill target; none means decode only.
    target: Option<PrefillTarget>,
}

/// The route of a `POST` to an inference API on `listener`: its decoder
/// (by the data-parallel header) and its prefill target (by the prefill
/// header and the configured selection), or the header error to answer.
pub fn route<'a>(listener: &'a Listener, headers: &HeaderMap) -> Result<Route<'a>, ProxyError> {
    let (decoder, data_parallel) = listener.decoder_for(headers)?;
    let target = target::prefill_target(headers, listener.shared.selection())?;
    Ok(Route {
        decoder,
        data_parallel,
        target,
    })
}

/// Adds the request span's routing attributes to `list`: the connector and
/// the API always, the P/D decision and its target once routed.
pub fn route_attributes(
    listener: &Listener,
    api: Api,
    route: &Result<Route<'_>, ProxyError>,
    list: &mut Vec<KeyValue>,
) {
    list.extend(attributes!(
        llm_d.pd_proxy.connector = listener.shared.connector(),
        llm_d.pd_proxy.request_path = api,
    ));
    match route {
        Ok(Route {
            target: Some(target),
            ..
        }) => list.extend(attributes!(
            llm_d.pd_proxy.disaggregation_used = true,
            llm_d.pd_proxy.prefill_target = target.identifier(),
            llm_d.pd_proxy.prefill_candidates = target.candidates,
        )),
        Ok(Route { target: None, .. }) => list.extend(attributes!(
            llm_d.pd_proxy.disaggregation_used = false,
            llm_d.pd_proxy.reason = "no_prefill_header",
        )),
        Err(_) => {}
    }
}

/// `POST` to `api` (`/v1/chat/completions`, `/v1/completions` or
/// `/v1/responses`) on `route` (see [`route`]): decode only without a
/// prefill target, else the connector's P/D flow.
pub async fn pd(
    listener: &Listener,
    api: Api,
    route: Result<Route<'_>, ProxyError>,
    request: Request,
) -> Response {
    let start = Instant::now();
    let (decoder, data_parallel, target) = match route {
        Ok(Route {
            decoder,
            data_parallel,
            target: Some(target),
        }) => (decoder.clone(), data_parallel, target),
        Ok(Route {
            decoder,
            target: None,
            ..
        }) => return passthrough::forward(decoder, request).await,
        Err(error) => return error.into_response(),
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
        listener: listener.clone(),
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
