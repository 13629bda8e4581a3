//! Forwarding a request to the decoder unchanged, streaming both ways.

use crate::errors::ProxyError;
use crate::state::Decoder;
use crate::upstream::{self, Failure};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};

/// Sends `request` to `decoder` and streams the answer back.
pub async fn forward(decoder: &Decoder, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    upstream::prepare_pass_through(&mut parts.headers);
    let mut outbound = http::Request::new(body);
    *outbound.method_mut() = parts.method;
    *outbound.uri_mut() = upstream::origin_form(parts.uri);
    *outbound.headers_mut() = parts.headers;
    match decoder.origin.send(outbound).await {
        Ok(mut response) => {
            upstream::strip_response_headers(response.headers_mut());
            response
        }
        Err(Failure::Refused) => ProxyError::DecoderUnavailable.into_response(),
        Err(Failure::RequestBody) => ProxyError::BodyRead.into_response(),
        Err(_) => ProxyError::DecoderFailed.into_response(),
    }
}
