//! The pooled HTTP clients to prefillers and decoders, and what is
//! forwarded to them.

use crate::config::{Config, UpstreamTls};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use llmd_runtime::propagation;

/// The clients the proxy calls its upstreams with (one connection pool each).
#[derive(Clone, Debug)]
pub struct Upstreams {
    /// Towards prefillers.
    pub prefiller: reqwest::Client,
    /// Towards the local decoder ranks.
    pub decoder: reqwest::Client,
    /// `http` or `https` for prefillers.
    pub prefiller_scheme: &'static str,
    /// `http` or `https` for the decoder.
    pub decoder_scheme: &'static str,
}

impl Upstreams {
    /// Builds the clients for `config`.
    pub fn new(config: &Config) -> Result<Upstreams, reqwest::Error> {
        llmd_runtime::http::install_crypto_provider();
        Ok(Upstreams {
            prefiller: client(config.prefiller_tls)?,
            decoder: client(config.decoder_tls)?,
            prefiller_scheme: scheme(config.prefiller_tls),
            decoder_scheme: scheme(config.decoder_tls),
        })
    }
}

fn scheme(tls: UpstreamTls) -> &'static str {
    if tls.enabled { "https" } else { "http" }
}

fn client(tls: UpstreamTls) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .no_proxy()
        .tls_danger_accept_invalid_certs(tls.insecure_skip_verify)
        .build()
}

/// Whether a request header is never forwarded: hop-by-hop headers, those
/// the client recomputes (`host`, `content-length`), and the one the proxy
/// itself consumes (the prefiller's address).
fn not_forwarded(name: &HeaderName) -> bool {
    not_forwarded_on_pass_through(name) || *name == header::HOST || *name == header::CONTENT_LENGTH
}

/// [`not_forwarded`] for the pass-through, which keeps the body's length
/// and sets `host` itself.
fn not_forwarded_on_pass_through(name: &HeaderName) -> bool {
    is_hop_by_hop(name)
        || *name == header::PROXY_AUTHORIZATION
        || name.as_str() == crate::target::PREFILLER_HEADER
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

/// The headers an upstream gets: the client's, minus hop-by-hop and proxy
/// headers, with the trace context of the *current* span (the one making
/// the call) in place of the caller's.
pub fn outbound_headers(inbound: &HeaderMap) -> HeaderMap {
    let mut headers = inbound.clone();
    remove_headers(&mut headers, not_forwarded);
    propagation::inject_current(&mut headers);
    headers
}

/// Turns the client's headers, in place, into those the decoder gets on
/// the pass-through: as [`outbound_headers`], except that the body's
/// `content-length` is kept (the body is forwarded as it is) and `host`
/// is set to the decoder's (`host`).
pub fn prepare_pass_through(headers: &mut HeaderMap, host: &HeaderValue) {
    remove_headers(headers, not_forwarded_on_pass_through);
    headers.insert(header::HOST, host.clone());
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
}

/// Classifies a client error.
pub fn classify(error: &reqwest::Error) -> Failure {
    if error.is_timeout() {
        Failure::Timeout
    } else if llmd_runtime::http::is_connection_refused(error) {
        Failure::Refused
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
    const NEVER_FORWARDED: [(&str, &str); 10] = [
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
    ];

    #[test]
    fn hop_by_hop_and_proxy_headers_are_dropped() {
        let inbound = headers(&[
            ("connection", "keep-alive"),
            ("host", "proxy:8000"),
            ("content-length", "3"),
            ("x-prefiller-host-port", "p:1"),
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
            "traceparent",
        ] {
            assert!(!out.contains_key(gone), "{gone}");
        }
        assert_eq!(out["authorization"], "Bearer t");
        assert_eq!(out["x-request-id"], "r1");
    }

    #[test]
    fn the_pass_through_keeps_the_length_and_sets_the_decoders_host() {
        let mut map = headers(&NEVER_FORWARDED);
        map.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        prepare_pass_through(&mut map, &HeaderValue::from_static("decoder:8200"));
        assert_eq!(map["host"], "decoder:8200");
        assert_eq!(map["content-length"], "42");
        assert_eq!(map["content-type"], "application/json");
        assert_eq!(map.len(), 3, "{map:?}");
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
