//! How the proxy reaches its upstreams (prefillers and decoders), and what
//! is forwarded to them.
//!
//! Every upstream call goes through the runtime's kept-alive connection
//! pools, plain HTTP or HTTPS alike: one per decoder rank, one per
//! prefiller a request names. A call is an `http::Request` in origin form
//! and an `http::Response` whose body streams from the upstream.

use crate::config::UpstreamTls;
use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::uri::Authority;
use http::{Method, Request, Response, Uri};
use llmd_runtime::http::{OriginError, OriginPool, OriginPools};
use llmd_runtime::propagation;
use rustls::ClientConfig;
use std::sync::Arc;
use std::time::Duration;

/// How the proxy reaches one kind of upstream whose origins vary per
/// request (the prefillers): a pool of kept-alive connections per origin.
#[derive(Clone, Debug)]
pub struct Upstream(OriginPools<Authority>);

impl Upstream {
    /// The upstream for `tls` settings, whose connections must open within
    /// `connect_timeout` (the TLS handshake included).
    pub fn new(tls: UpstreamTls, connect_timeout: Duration) -> Result<Upstream, rustls::Error> {
        Ok(Upstream(match tls_config(tls)? {
            Some(config) => OriginPools::with_tls(Some(connect_timeout), config),
            None => OriginPools::new(Some(connect_timeout)),
        }))
    }

    /// Keeps at most `max_idle` idle connections per origin
    /// (`--max-idle-conns-per-host`).
    pub fn with_max_idle(self, max_idle: usize) -> Upstream {
        Upstream(self.0.with_max_idle(max_idle))
    }

    /// Whether its origins are reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.0.is_tls()
    }

    /// The origin at `authority`.
    pub fn origin(&self, authority: &Authority) -> Result<Origin, Failure> {
        self.0
            .pool(authority)
            .map(Origin)
            .map_err(|error| classify_origin(&error))
    }
}

/// The TLS client configuration of upstreams with `tls` settings; `None`
/// for plain HTTP.
pub fn tls_config(tls: UpstreamTls) -> Result<Option<Arc<ClientConfig>>, rustls::Error> {
    tls.enabled
        .then(|| llmd_runtime::http::upstream_tls_config(tls.insecure_skip_verify))
        .transpose()
}

/// One upstream origin and its kept-alive connections; clones share them.
#[derive(Clone, Debug)]
pub struct Origin(OriginPool);

impl Origin {
    /// The origin at `authority`, over TLS with `tls` when given, whose
    /// connections must open within `connect_timeout` (the TLS handshake
    /// included).
    pub fn new(
        authority: Authority,
        connect_timeout: Duration,
        tls: Option<Arc<ClientConfig>>,
    ) -> Result<Origin, OriginError> {
        Ok(Origin(match tls {
            Some(config) => OriginPool::with_tls(authority, Some(connect_timeout), config)?,
            None => OriginPool::new(authority, Some(connect_timeout)),
        }))
    }

    /// Keeps at most `max_idle` idle connections
    /// (`--max-idle-conns-per-host`).
    pub fn with_max_idle(self, max_idle: usize) -> Origin {
        Origin(self.0.with_max_idle(max_idle))
    }

    /// Whether it is reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.0.is_tls()
    }

    /// Sends `request` (its URI in origin form, `/path?query`; the origin's
    /// `host:port` goes in `Host` when it names none) and returns the
    /// response head; the body streams from the upstream.
    pub async fn send(&self, request: Request<Body>) -> Result<Response<Body>, Failure> {
        match self.0.send(request).await {
            Ok(response) => Ok(response.map(Body::new)),
            Err(error) => Err(classify_origin(&error)),
        }
    }
}

/// `uri` in origin form (`/path?query`), as HTTP/1 sends it to an origin
/// server: an absolute-form request target (or an HTTP/2 request's full
/// URI) keeps only its path and query, `/` when it has none.
pub fn origin_form(uri: Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return uri;
    }
    match uri.path_and_query() {
        Some(path_and_query) => Uri::from(path_and_query.clone()),
        None => Uri::from_static("/"),
    }
}

/// Whether a request header is never forwarded: hop-by-hop headers, those
/// the client recomputes (`host`, `content-length`), and the one the proxy
/// itself consumes (the prefiller's address, in either spelling).
fn not_forwarded(name: &HeaderName) -> bool {
    not_forwarded_on_pass_through(name) || *name == header::HOST || *name == header::CONTENT_LENGTH
}

/// [`not_forwarded`] for the pass-through, which keeps the body's length
/// and sets `host` itself.
fn not_forwarded_on_pass_through(name: &HeaderName) -> bool {
    is_hop_by_hop(name)
        || *name == header::PROXY_AUTHORIZATION
        || llmd_runtime::routing::PREFILLER_HEADERS.contains(&name.as_str())
}

/// The hop-by-hop headers of RFC 9110 (section 7.6.1) and the obsolete
/// `keep-alive`; the `Connection` header's own list is handled by
/// [`remove_headers`].
fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::TRANSFER_ENCODING
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::UPGRADE
        || name.as_str() == "keep-alive"
}

/// The most distinct header names [`remove_headers`] drops without
/// allocating (more are collected in a list).
const DROPPED_INLINE: usize = 8;

/// Removes every header `drop` selects, and those the `Connection` header
/// names as connection options (RFC 9110, section 7.6.1). The names are
/// read in one pass and only headers actually present are removed, instead
/// of a lookup per candidate name.
fn remove_headers(headers: &mut HeaderMap, drop: fn(&HeaderName) -> bool) {
    let mut inline: [Option<HeaderName>; DROPPED_INLINE] = Default::default();
    let mut found = 0;
    let mut more = Vec::new();
    for name in headers.keys() {
        if drop(name) {
            match inline.get_mut(found) {
                Some(slot) => *slot = Some(name.clone()),
                None => more.push(name.clone()),
            }
            found += 1;
        }
    }
    if found == 0 {
        return;
    }
    let options = connection_options(headers);
    for name in inline.into_iter().flatten().chain(more).chain(options) {
        headers.remove(name);
    }
}

/// The header names listed in `Connection` (besides `close` and
/// `keep-alive`, which name no header); malformed entries are skipped.
fn connection_options(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|option| {
            !option.eq_ignore_ascii_case("close") && !option.eq_ignore_ascii_case("keep-alive")
        })
        .filter_map(|option| HeaderName::try_from(option).ok())
        .collect()
}

/// A request to an upstream leg: `body` sent with `method` to `uri` (origin
/// form), with the [`outbound_headers`] of the client's `inbound` ones.
pub fn outbound_request(
    method: Method,
    uri: Uri,
    inbound: &HeaderMap,
    body: Bytes,
) -> Request<Body> {
    let mut request = Request::new(Body::from(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = outbound_headers(inbound);
    request
}

/// The headers an upstream gets: the client's, minus hop-by-hop and proxy
/// headers, with the trace context of the *current* span (the one making
/// the call) in place of the caller's.
fn outbound_headers(inbound: &HeaderMap) -> HeaderMap {
    let mut headers = inbound.clone();
    remove_headers(&mut headers, not_forwarded);
    propagation::inject_current(&mut headers);
    headers
}

/// Turns the client's headers, in place, into those the decoder gets on
/// the pass-through: as [`outbound_headers`], except that the body's
/// `content-length` is kept (the body is forwarded as it is); `host` is
/// removed, for the decoder's own.
pub fn prepare_pass_through(headers: &mut HeaderMap) {
    remove_headers(headers, not_forwarded_on_pass_through);
    headers.remove(header::HOST);
    propagation::inject_current(headers);
}

/// Drops the response headers not copied to the client: hop-by-hop ones
/// and those `Connection` names.
pub fn strip_response_headers(headers: &mut HeaderMap) {
    remove_headers(headers, is_hop_by_hop);
}

/// How an upstream call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The connection was refused (nothing listens).
    Refused,
    /// Another connection failure.
    Connect,
    /// The call timed out.
    Timeout,
    /// The connection broke during the exchange.
    Broken,
    /// The request's own body could not be read (its client went away).
    RequestBody,
}

/// Classifies a pooled connection's error.
fn classify_origin(error: &OriginError) -> Failure {
    if error.is_refused() {
        Failure::Refused
    } else if error.is_request_body() {
        Failure::RequestBody
    } else if error.is_connect() {
        Failure::Connect
    } else {
        Failure::Broken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(entries: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in entries {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    /// One of every request header a decoder never gets, `host` and
    /// `content-length` included (the pass-through sets or keeps those).
    const NEVER_FORWARDED: [(&str, &str); 11] = [
        ("connection", "keep-alive"),
        ("host", "proxy:8000"),
        ("content-length", "42"),
        ("transfer-encoding", "chunked"),
        ("te", "trailers"),
        ("trailer", "x-checksum"),
        ("upgrade", "h2c"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic x"),
        ("x-prefiller-host-port", "p:1"),
        ("x-llm-d-prefiller-host-port", "p:1"),
    ];

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

    #[test]
    fn hop_by_hop_and_proxy_headers_are_dropped() {
        let inbound = headers(&[
            ("connection", "keep-alive"),
            ("host", "proxy:8000"),
            ("content-length", "3"),
            ("x-prefiller-host-port", "p:1"),
            ("x-llm-d-prefiller-host-port", "p:1"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("authorization", "Bearer t"),
            ("x-request-id", "r1"),
        ]);
        let out = outbound_headers(&inbound);
        for gone in [
            "connection",
            "host",
            "content-length",
            "x-prefiller-host-port",
            "x-llm-d-prefiller-host-port",
            "traceparent",
        ] {
            assert!(!out.contains_key(gone), "{gone}");
        }
        assert_eq!(out["authorization"], "Bearer t");
        assert_eq!(out["x-request-id"], "r1");
    }

    #[test]
    fn the_pass_through_keeps_the_length_and_leaves_the_host_to_the_origin() {
        let mut map = headers(&NEVER_FORWARDED);
        map.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        prepare_pass_through(&mut map);
        assert_eq!(map["content-length"], "42");
        assert_eq!(map["content-type"], "application/json");
        assert_eq!(map.len(), 2, "{map:?}");
    }

    #[test]
    fn headers_named_by_connection_are_dropped_both_ways() {
        let inbound = headers(&[
            ("connection", "keep-alive, X-Hop"),
            ("connection", "close,x-other-hop , bad name"),
            ("x-hop", "1"),
            ("x-other-hop", "2"),
            ("x-kept", "3"),
        ]);
        let out = outbound_headers(&inbound);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out["x-kept"], "3");

        let mut response = inbound.clone();
        strip_response_headers(&mut response);
        assert_eq!(response.len(), 1, "{response:?}");
        assert_eq!(response["x-kept"], "3");
    }

    #[test]
    fn more_dropped_names_than_kept_inline_are_all_removed() {
        let mut inbound = headers(&NEVER_FORWARDED);
        inbound.insert(header::CONNECTION, HeaderValue::from_static("x-hop"));
        inbound.insert("x-hop", HeaderValue::from_static("1"));
        inbound.insert("x-kept", HeaderValue::from_static("3"));
        let out = outbound_headers(&inbound);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out["x-kept"], "3");
    }
}
