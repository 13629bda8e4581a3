//! hyper's pooled HTTP/1 client for plain-HTTP upstreams on the request
//! path (vLLM pods, decoders): no URL parsing and no redirect layer per
//! request, unlike reqwest, whose `Url` is parsed up to three times per
//! call (about 20,000 instructions). Callers build an [`http::Uri`] and
//! carry the trace context with [`crate::propagation::inject_current`].

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::time::Duration;

/// hyper's pooled HTTP/1 client, sending axum bodies as they stream.
pub type PlainClient = Client<HttpConnector, axum::body::Body>;

/// Idle connections kept per upstream: enough for every concurrent
/// request of a busy pod to find one.
const MAX_IDLE_PER_HOST: usize = 1024;

/// A client with `TCP_NODELAY` and, when given, a connect timeout. Must be
/// used inside a tokio runtime (its connections run as tasks).
pub fn plain_client(connect_timeout: Option<Duration>) -> PlainClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(connect_timeout);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
        .build(connector)
}

/// `http://{address}{path}`, for a request through a [`PlainClient`].
pub fn plain_uri(address: SocketAddr, path: &'static str) -> Result<Uri, http::Error> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(Authority::try_from(address.to_string())?);
    parts.path_and_query = Some(PathAndQuery::try_from(path)?);
    Ok(Uri::from_parts(parts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_uris_carry_the_address_and_path() {
        let v4 = plain_uri("127.0.0.1:8200".parse().unwrap(), "/v1/completions").unwrap();
        assert_eq!(v4.to_string(), "http://127.0.0.1:8200/v1/completions");
        let v6 = plain_uri("[::1]:9".parse().unwrap(), "/tokenize").unwrap();
        assert_eq!(v6.to_string(), "http://[::1]:9/tokenize");
        assert_eq!(v6.port_u16(), Some(9));
        assert!(plain_uri("127.0.0.1:1".parse().unwrap(), "no slash").is_err());
    }
}
