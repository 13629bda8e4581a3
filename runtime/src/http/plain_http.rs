//! Plain-HTTP building blocks of the upstream connection pools
//! ([`super::OriginPool`], [`super::OriginPools`]): their TCP connector,
//! and the JSON `POST` the scheduler sends its pods.

use axum::body::Body;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use std::time::Duration;

/// The TCP connector of every plain-HTTP upstream connection: with
/// `TCP_NODELAY` and, when given, a connect timeout.
pub(super) fn connector(connect_timeout: Option<Duration>) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(connect_timeout);
    connector
}

/// A JSON `POST` of `body` to `path`, in origin form, for
/// [`super::OriginPools::send`] (which names the host); callers add their
/// own headers (and the trace context) to it.
pub fn json_post(path: &'static str, body: impl Into<Body>) -> Result<Request<Body>, http::Error> {
    let mut request = Request::new(body.into());
    *request.method_mut() = Method::POST;
    *request.uri_mut() = Uri::from(PathAndQuery::try_from(path)?);
    request
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_posts_name_their_method_target_and_type() {
        let request = json_post("/tokenize", "{}").unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "/tokenize");
        assert_eq!(request.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(request.headers().len(), 1);
        assert!(json_post("/not a path", "{}").is_err());
    }
}
