//! The proxy's hyper service: picks each request's handler by its path and
//! method and traces it. There are four fixed paths, so a match replaces a
//! router, and each request makes one allocation for its future.
//!
//! - `POST` to an OpenAI inference route: [`handler::pd`];
//! - any other method on those routes, and every other path but `/health`:
//!   [`handler::forward`], to the decoder unchanged;
//! - `GET`/`HEAD /health`: 200, not traced; other methods 405.
//!
//! Traced requests get the `llm_d.pd_proxy.request` SERVER span, with the
//! inference route (never the path of any other request) as `http.route`.

use crate::errors::ProxyError;
use crate::handler::{self, Route};
use crate::request::Api;
use crate::server::REQUEST_SPAN;
use crate::state::Listener;
use axum::body::Body;
use axum::response::Response;
use http::header::{ALLOW, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;
use llmd_runtime::http::{ServerTraceLayer, TracedBody};
use opentelemetry::KeyValue;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// The body of a response: a traced request's, or the health check's.
pub type ResponseBody = Either<TracedBody<Body>, Body>;

/// What serving one request gives hyper.
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

/// The service of one listener; clones share it.
#[derive(Clone, Debug)]
pub struct Routes {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    listener: Listener,
    /// The trace layers of the inference routes, each naming its route.
    chat_completions: ServerTraceLayer,
    completions: ServerTraceLayer,
    responses: ServerTraceLayer,
    /// The trace layer of every other path: no route.
    other: ServerTraceLayer,
}

impl Routes {
    /// The service of `listener`, bound to `local` (recorded when a request
    /// names no host); `secure` when it serves TLS.
    pub fn new(listener: Listener, secure: bool, local: SocketAddr) -> Routes {
        let mut other = ServerTraceLayer::new(&REQUEST_SPAN).local_addr(local);
        if secure {
            other = other.tls();
        }
        let named = |api: Api| other.clone().route(api.path());
        Routes {
            inner: Arc::new(Inner {
                listener,
                chat_completions: named(Api::ChatCompletions),
                completions: named(Api::Completions),
                responses: named(Api::Responses),
                other,
            }),
        }
    }
}

impl Inner {
    fn trace_layer(&self, api: Option<Api>) -> &ServerTraceLayer {
        match api {
            Some(Api::ChatCompletions) => &self.chat_completions,
            Some(Api::Completions) => &self.completions,
            Some(Api::Responses) => &self.responses,
            None => &self.other,
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Routes {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, request: Request<Incoming>) -> ResponseFuture {
        let request = request.map(Body::new);
        let path = request.uri().path();
        if path == "/health" {
            let response = health(request.method()).map(Either::Right);
            return Box::pin(std::future::ready(Ok(response)));
        }
        let api = Api::of_path(path);
        let routes = self.inner.clone();
        // The handler's future (kilobytes) is made inside the box, on the
        // first poll, rather than made here and moved into it.
        Box::pin(async move {
            let listener = &routes.listener;
            let handling = match api {
                Some(api) if request.method() == Method::POST => Handling::Pd {
                    api,
                    route: handler::route(listener, request.headers()),
                },
                _ => Handling::Forward,
            };
            // One call and one future type for both handlings, so that the
            // handler's future is made in place rather than copied.
            let traced = routes.trace_layer(api).trace_with(
                request,
                handling,
                |handling, list| handling.attributes(listener, list),
                |request, handling| handle(listener, handling, request),
            );
            traced.await.map(|response| response.map(Either::Left))
        })
    }
}

/// How a traced request is handled.
enum Handling<'a> {
    /// `POST` to an inference API: the P/D handler, on the route read
    /// from the request's headers.
    Pd {
        api: Api,
        route: Result<Route<'a>, ProxyError>,
    },
    /// Anything else: to the decoder, unchanged.
    Forward,
}

impl Handling<'_> {
    /// Adds the request span's attributes known before the handler runs.
    fn attributes(&self, listener: &Listener, list: &mut Vec<KeyValue>) {
        if let Handling::Pd { api, route } = self {
            handler::route_attributes(listener, *api, route, list);
        }
    }
}

/// The handler of a traced request.
async fn handle(
    listener: &Listener,
    handling: Handling<'_>,
    request: Request<Body>,
) -> Result<Response, Infallible> {
    Ok(match handling {
        Handling::Pd { api, route } => handler::pd(listener, api, route, request).await,
        Handling::Forward => handler::forward(listener, request).await,
    })
}

/// `/health`: 200 to `GET` and `HEAD` while the proxy runs.
fn health(method: &Method) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    if method != Method::GET && method != Method::HEAD {
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET,HEAD"));
    }
    response
}
