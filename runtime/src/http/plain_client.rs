//! hyper's pooled HTTP/1 client for plain-HTTP upstreams on the request
//! path (the scheduler's vLLM pods): no URL parsing and no redirect layer per
//! request, unlike reqwest, whose `Url` is parsed up to three times per
//! call (about 20,000 instructions). Callers build an [`http::Uri`] and
//! carry the trace context with [`crate::propagation::inject_current`].

use axum::body::Body;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Uri};
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
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
        .build(connector(connect_timeout))
}

/// The TCP connector of every plain-HTTP upstream connection: with
/// `TCP_NODELAY` and, when given, a connect timeout.
pub(super) fn connector(connect_timeout: Option<Duration>) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(connect_timeout);
    connector
}

/// A JSON `POST` of `body` to `http://{address}{path}`, for a
/// [`PlainClient`]; callers add their own headers (and the trace context)
/// to it.
pub fn json_post(
    address: SocketAddr,
    path: &'static str,
    body: impl Into<Body>,
) -> Result<Request<Body>, http::Error> {
    let mut request = Request::new(body.into());
    *request.method_mut() = Method::POST;
    *request.uri_mut() = plain_uri(address, path)?;
    request
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(request)
}

/// `http://{address}{path}`.
fn plain_uri(address: SocketAddr, path: &'static str) -> Result<Uri, http::Error> {
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

    #[test]
    fn json_posts_name_their_method_target_and_type() {
        let request = json_post("127.0.0.1:8200".parse().unwrap(), "/tokenize", "{}").unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "http://127.0.0.1:8200/tokenize");
        assert_eq!(request.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(request.headers().len(), 1);
    }
}
