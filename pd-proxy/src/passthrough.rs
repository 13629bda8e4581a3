//! Forwarding a request to the decoder unchanged, streaming both ways.

use crate::errors::ProxyError;
use crate::state::Decoder;
use crate::upstream::{self, Failure, Upstreams};
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use llmd_runtime::http::PlainClient;

/// Request bodies of at most this many bytes, with a known length, are
/// read before sending (they are in the first packets anyway); longer or
/// chunked ones are streamed.
const SMALL_BODY: u64 = 256 * 1024;

/// Sends `request` to `decoder` and streams the answer back.
pub async fn forward(upstreams: &Upstreams, decoder: &Decoder, request: Request) -> Response {
    match &upstreams.decoder_plain {
        Some(plain) => forward_plain(plain, decoder, request).await,
        // Boxed: reqwest's future is over a kilobyte, which the plain
        // path, sharing this future, should not carry.
        None => Box::pin(forward_tls(&upstreams.decoder, decoder, request)).await,
    }
}

/// The plain-HTTP path: the body streams both ways with its length kept.
async fn forward_plain(client: &PlainClient, decoder: &Decoder, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let Ok(uri) = plain_upstream_uri(&decoder.authority, &parts.uri) else {
        return ProxyError::DecoderFailed.into_response();
    };
    upstream::prepare_pass_through(&mut parts.headers, &decoder.host);
    let mut outbound = http::Request::new(body);
    *outbound.method_mut() = parts.method;
    *outbound.uri_mut() = uri;
    *outbound.headers_mut() = parts.headers;
    match client.request(outbound).await {
        Ok(mut response) => {
            upstream::strip_response_headers(response.headers_mut());
            response.map(Body::new)
        }
        Err(error) => match upstream::classify_plain(&error) {
            Failure::Refused => ProxyError::DecoderUnavailable.into_response(),
            _ => ProxyError::DecoderFailed.into_response(),
        },
    }
}

/// The plain-HTTP URI of `inbound`'s path and query (`/` when it has
/// none) at `authority`.
pub fn plain_upstream_uri(
    authority: &http::uri::Authority,
    inbound: &http::Uri,
) -> Result<http::Uri, http::uri::InvalidUriParts> {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(http::uri::Scheme::HTTP);
    uri.authority = Some(authority.clone());
    uri.path_and_query = Some(
        inbound
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    http::Uri::from_parts(uri)
}

/// The TLS path, through reqwest.
async fn forward_tls(client: &reqwest::Client, decoder: &Decoder, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{}", decoder.base_url, path);
    let builder = client
        .request(parts.method, url)
        .headers(upstream::outbound_headers(&parts.headers));
    let builder = match body.size_hint().exact() {
        Some(0) => builder,
        Some(len) if len <= SMALL_BODY => match body.collect().await {
            Ok(collected) => builder.body(collected.to_bytes()),
            Err(_) => return ProxyError::BodyRead.into_response(),
        },
        _ => builder.body(reqwest::Body::wrap_stream(body.into_data_stream())),
    };
    match builder.send().await {
        Ok(response) => {
            let mut response: http::Response<reqwest::Body> = response.into();
            upstream::strip_response_headers(response.headers_mut());
            response.map(Body::new)
        }
        Err(error) => match upstream::classify(&error) {
            Failure::Refused => ProxyError::DecoderUnavailable.into_response(),
            _ => ProxyError::DecoderFailed.into_response(),
        },
    }
}
