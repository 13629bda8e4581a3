//! Sends the request to the chosen endpoint and streams its answer back as
//! it arrives.

use super::errors::ApiError;
use super::request::Route;
use crate::plugins::prerequest::PREFILLER_HEADER;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use llmd_runtime::http::RequestBuilderExt as _;
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
    /// `x-prefiller-host-port`, when disaggregated.
    pub prefiller: Option<&'a str>,
}

/// Forwards `body` to the upstream with the current trace context (the
/// `gateway.request` span); the response's status, content type and body
/// (streamed) are passed through.
pub async fn forward(
    client: &reqwest::Client,
    upstream: &Upstream<'_>,
    incoming: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let url = format!("http://{}{}", upstream.target, upstream.route.path());
    let mut request = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header(REQUEST_ID_HEADER, upstream.request_id)
        .body(body)
        .inject_context();
    for name in [AUTHORIZATION, ACCEPT] {
        if let Some(value) = incoming.get(&name) {
            request = request.header(name, value);
        }
    }
    if let Some(prefiller) = upstream.prefiller {
        request = request.header(PREFILLER_HEADER, prefiller);
    }
    let response = request.send().await.map_err(|e| {
        ApiError::Upstream(if e.is_connect() {
            "connect"
        } else if e.is_timeout() {
            "timeout"
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
        .body(Body::from_stream(response.bytes_stream()))
        .map_err(|_| ApiError::Upstream("response"))
}
