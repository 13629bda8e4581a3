//! Sends the request to the chosen endpoint and streams its answer back as
//! it arrives.

use super::errors::ApiError;
use super::request::Route;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Request};
use llmd_runtime::http::{OriginPools, json_post};
use llmd_runtime::propagation;
use llmd_runtime::routing::PREFILLER_HEADERS;
use std::net::SocketAddr;

/// The request id header shared by every hop.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Where and how to forward one request.
#[derive(Debug)]
pub struct Upstream<'a> {
    /// The endpoint's serving address (its sidecar, if it has one).
    pub target: SocketAddr,
    /// The API route.
    pub route: Route,
    /// The request id.
    pub request_id: &'a str,
    /// The prefill target (`x-prefiller-host-port`), when disaggregated.
    pub prefiller: Option<&'a str>,
}

/// Forwards `body` to the upstream with the current trace context (the
/// `gateway.request` span); the response's status, content type and body
/// (streamed) are passed through.
pub async fn forward(
    client: &OriginPools,
    upstream: &Upstream<'_>,
    incoming: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request =
        upstream_request(upstream, incoming, body).map_err(|_| ApiError::Upstream("request"))?;
    let response = client
        .send(&upstream.target, request)
        .await
        .map_err(|error| {
            ApiError::Upstream(if error.is_connect() {
                "connect"
            } else {
                "request"
            })
        })?;
    let mut builder = Response::builder().status(response.status());
    if let Some(content_type) = response.headers().get(CONTENT_TYPE) {
        builder = builder.header(CONTENT_TYPE, content_type);
    }
    builder = builder.header(REQUEST_ID_HEADER, upstream.request_id);
    builder
        .body(Body::new(response.into_body()))
        .map_err(|_| ApiError::Upstream("response"))
}

/// The JSON `POST` of `body` to the upstream, with the request id, the
/// caller's `authorization` and `accept`, the prefiller when disaggregated
/// and the current trace context. Fails only on a request id or prefiller
/// that is not a valid header value.
fn upstream_request(
    upstream: &Upstream<'_>,
    incoming: &HeaderMap,
    body: Bytes,
) -> Result<Request<Body>, http::Error> {
    let mut request = json_post(upstream.route.path(), body)?;
    let headers = request.headers_mut();
    headers.reserve(8);
    headers.insert(
        HeaderName::from_static(REQUEST_ID_HEADER),
        HeaderValue::from_str(upstream.request_id)?,
    );
    for name in [AUTHORIZATION, ACCEPT] {
        if let Some(value) = incoming.get(&name) {
            headers.insert(name, value.clone());
        }
    }
    if let Some(prefiller) = upstream.prefiller {
        // Both spellings, as llm-d's endpoint picker writes them, so that a
        // sidecar from before or after llm-d's rename finds the target.
        let prefiller = HeaderValue::from_str(prefiller)?;
        for name in PREFILLER_HEADERS {
            headers.insert(HeaderName::from_static(name), prefiller.clone());
        }
    }
    propagation::inject_current(headers);
    Ok(request)
}
