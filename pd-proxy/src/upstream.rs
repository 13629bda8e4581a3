//! The pooled HTTP clients to prefillers and decoders, and what is
//! forwarded to them.

use crate::config::{Config, UpstreamTls};
use http::header::{self, HeaderMap, HeaderName};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use llmd_runtime::propagation;
use std::error::Error as _;

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
    /// Towards a plain-HTTP decoder for pass-through: hyper's pooled client
    /// without reqwest's layers (the hot path of decode-only traffic).
    pub decoder_plain: Option<PlainClient>,
}

/// hyper's pooled HTTP/1 client, sending axum bodies as they stream.
pub type PlainClient = hyper_util::client::legacy::Client<HttpConnector, axum::body::Body>;

impl Upstreams {
    /// Builds the clients for `config`.
    pub fn new(config: &Config) -> Result<Upstreams, reqwest::Error> {
        llmd_runtime::http::install_crypto_provider();
        Ok(Upstreams {
            prefiller: client(config.prefiller_tls)?,
            decoder: client(config.decoder_tls)?,
            prefiller_scheme: scheme(config.prefiller_tls),
            decoder_scheme: scheme(config.decoder_tls),
            decoder_plain: (!config.decoder_tls.enabled).then(plain_client),
        })
    }
}

fn scheme(tls: UpstreamTls) -> &'static str {
    if tls.enabled { "https" } else { "http" }
}

fn plain_client() -> PlainClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector)
}

fn client(tls: UpstreamTls) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .no_proxy()
        .tls_danger_accept_invalid_certs(tls.insecure_skip_verify)
        .build()
}

/// Request headers never forwarded: hop-by-hop headers, those the client
/// recomputes, and those the proxy itself consumes.
const NOT_FORWARDED: [HeaderName; 10] = [
    header::CONNECTION,
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static(crate::target::PREFILLER_HEADER),
];

/// The headers an upstream gets: the client's, minus hop-by-hop and proxy
/// headers, with the trace context of the *current* span (the one making
/// the call) in place of the caller's.
pub fn outbound_headers(inbound: &HeaderMap) -> HeaderMap {
    let mut headers = inbound.clone();
    prepare_outbound(&mut headers);
    headers
}

/// Turns the client's headers, in place, into those an upstream gets (see
/// [`outbound_headers`]).
pub fn prepare_outbound(headers: &mut HeaderMap) {
    for name in &NOT_FORWARDED {
        headers.remove(name);
    }
    propagation::inject_current(headers);
}

/// Response headers not copied to the client.
pub fn strip_response_headers(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TRAILER,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
    ] {
        headers.remove(name);
    }
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
        return Failure::Timeout;
    }
    connection_failure(refused_in(error.source()), error.is_connect())
}

/// Classifies an error of the plain client.
pub fn classify_plain(error: &hyper_util::client::legacy::Error) -> Failure {
    connection_failure(refused_in(error.source()), error.is_connect())
}

fn connection_failure(refused: bool, connect: bool) -> Failure {
    if refused {
        Failure::Refused
    } else if connect {
        Failure::Connect
    } else {
        Failure::Broken
    }
}

/// Whether a connection refusal is among the causes.
fn refused_in(mut source: Option<&(dyn std::error::Error + 'static)>) -> bool {
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn hop_by_hop_and_proxy_headers_are_dropped() {
        let mut inbound = HeaderMap::new();
        for (k, v) in [
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
        ] {
            inbound.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
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
}
