//! Forwarding a request to the decoder unchanged, streaming both ways.

use crate::errors::ProxyError;
use crate::state::Decoder;
use crate::upstream::{self, Failure, Upstreams};
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::Uri;
use http_body::Body as _;
use http_body_util::BodyExt;
use llmd_runtime::http::OriginPool;

/// Request bodies of at most this many bytes, with a known length, are
/// read before sending (they are in the first packets anyway); longer or
/// chunked ones are streamed.
const SMALL_BODY: u64 = 256 * 1024;

/// Sends `request` to `decoder` and streams the answer back.
pub async fn forward(upstreams: &Upstreams, decoder: &Decoder, request: Request) -> Response {
    match &decoder.plain {
        Some(pool) => forward_plain(pool, decoder, request).await,
        // Boxed: reqwest's future is over a kilobyte, which the plain
        // path, sharing this future, should not carry.
        None => Box::pin(forward_tls(&upstreams.decoder, decoder, request)).await,
    }
}

/// The plain-HTTP path: the body streams both ways with its length kept.
async fn forward_plain(pool: &OriginPool, decoder: &Decoder, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    upstream::prepare_pass_through(&mut parts.headers, &decoder.host);
    let mut outbound = http::Request::new(body);
    *outbound.method_mut() = parts.method;
    *outbound.uri_mut() = origin_form(parts.uri);
    *outbound.headers_mut() = parts.headers;
    match pool.send(outbound).await {
        Ok(mut response) => {
            upstream::strip_response_headers(response.headers_mut());
            response.map(Body::new)
        }
        Err(error) if error.is_refused() => ProxyError::DecoderUnavailable.into_response(),
        Err(_) => ProxyError::DecoderFailed.into_response(),
    }
}

/// `uri` in origin form (`/path?query`), as HTTP/1 sends it to an origin
/// server: an absolute-form request target (or an HTTP/2 request's full
/// URI) keeps only its path and query, `/` when it has none.
fn origin_form(uri: Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return uri;
    }
    match uri.path_and_query() {
        Some(path_and_query) => Uri::from(path_and_query.clone()),
        None => Uri::from_static("/"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_targets_go_upstream_in_origin_form() {
        let origin = |target: &str| origin_form(target.parse().unwrap()).to_string();
        assert_eq!(origin("/v1/models?x=1"), "/v1/models?x=1");
        assert_eq!(
            origin("http://client.example/v1/models?x=1"),
            "/v1/models?x=1"
        );
        assert_eq!(origin("https://client.example:8443"), "/");
        assert_eq!(origin("*"), "*");
    }
}
