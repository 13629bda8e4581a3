//! The tower layer that traces every request of an axum (or any tower)
//! HTTP server with one SERVER span.

use super::body::TracedBody;
use super::open_span::OpenSpan;
use super::semconv::{self, keys};
use crate::attributes::{Identifier, key_value, kind};
use crate::propagation;
use crate::span::{self, SpanMeta};
use ::http::{Request, Response};
use axum::extract::MatchedPath;
use http_body::Body;
use opentelemetry::KeyValue;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};
use tower_layer::Layer;
use tower_service::Service;

/// Most attributes recorded at a request's start: method, scheme, route,
/// server address and port.
const REQUEST_ATTRIBUTES: usize = 5;

/// Attributes recorded once the response is known: the status code, and
/// `error.type` on a failure.
const RESPONSE_ATTRIBUTES: usize = 2;

/// `error.type` of a span whose inner service failed without a response.
const NO_RESPONSE: &str = "_OTHER";

/// Traces each request with a SERVER span named by a static [`SpanMeta`].
///
/// Per request it extracts the caller's context from the W3C headers
/// (see [`crate::propagation`]), starts the span under it with
/// [`span::start`] (so an unsampled caller or disabled telemetry costs next
/// to nothing, while the caller's context still becomes current for
/// outbound calls), keeps it current while the handler runs and while the
/// body streams, and ends it when the response body ends or is dropped.
///
/// Recorded attributes: `http.request.method`, `http.route` (the matched
/// route template, never the path or query), `url.scheme`,
/// `server.address`/`server.port` (from the request's authority or `Host`
/// header, else the configured local address) and
/// `http.response.status_code`. A 5xx response sets status Error with
/// `error.type` = the status code. Headers, query strings and bodies are
/// never recorded.
///
/// Apply it with `Router::layer` after the routes are added (or with
/// `route_layer`), so that the matched route is known; a server that routes
/// without axum names the route of each traced service with
/// [`ServerTraceLayer::route`]:
///
/// ```
/// use axum::{Router, routing::get};
/// use llmd_runtime::http::ServerTraceLayer;
/// use llmd_runtime::span::SpanMeta;
/// use opentelemetry::trace::SpanKind;
///
/// static REQUEST: SpanMeta = SpanMeta::new("gateway.request", SpanKind::Server);
///
/// let app: Router = Router::new()
///     .route("/health", get(|| async { "ok" }))
///     .layer(ServerTraceLayer::new(&REQUEST));
/// ```
#[derive(Clone, Debug)]
pub struct ServerTraceLayer {
    settings: Settings,
}

#[derive(Clone, Debug)]
struct Settings {
    meta: &'static SpanMeta,
    tls: bool,
    local: Option<LocalAddr>,
    route: Option<Identifier>,
}

#[derive(Clone, Debug)]
struct LocalAddr {
    address: Identifier,
    port: u16,
}

impl ServerTraceLayer {
    /// Traces requests with spans of `meta` (kind SERVER).
    pub fn new(meta: &'static SpanMeta) -> ServerTraceLayer {
        ServerTraceLayer {
            settings: Settings {
                meta,
                tls: false,
                local: None,
                route: None,
            },
        }
    }

    /// Marks the server as serving HTTPS: `url.scheme` is `https` and a
    /// `Host` without a port means port 443.
    pub fn tls(mut self) -> ServerTraceLayer {
        self.settings.tls = true;
        self
    }

    /// The route template of every request the traced service gets,
    /// recorded as `http.route` (instead of axum's matched route): for a
    /// server that picks the service by path itself.
    pub fn route(mut self, template: &'static str) -> ServerTraceLayer {
        self.settings.route = Some(Identifier::from_static(template));
        self
    }

    /// The address the server listens on, recorded as `server.address` and
    /// `server.port` when a request names no host.
    pub fn local_addr(mut self, addr: SocketAddr) -> ServerTraceLayer {
        self.settings.local = Some(LocalAddr {
            address: Identifier::new(&addr.ip().to_string()),
            port: addr.port(),
        });
        self
    }

    /// Traces `request` as the layer's service would, with `call` as the
    /// inner service: for servers that serve requests without a tower
    /// service stack (such as a hyper `Service` choosing the handler by
    /// path). `call` runs with the request's context current, and the
    /// returned future keeps it current and records the response.
    pub fn trace<B, F>(
        &self,
        request: Request<B>,
        call: impl FnOnce(Request<B>) -> F,
    ) -> ResponseFuture<F> {
        self.trace_with(request, (), |_, _| {}, |request, ()| call(request))
    }

    /// Like [`ServerTraceLayer::trace`] for a request the server has
    /// already looked at: `attributes` adds what it found (`found`, built
    /// into attributes with [`crate::attributes!`]) to the span's start
    /// list, and `call` then takes it with the request. For what is known
    /// before the handler runs, such as a routing decision: cheaper than
    /// recording it after the start, which locks the span and sets the
    /// attributes one by one. `attributes` is called only when the span is
    /// recorded.
    ///
    /// Inlined, so that the caller's handler future is built in place in
    /// the returned one (out of line, the pass-through proxy ran about
    /// 570 instructions more per request).
    #[inline]
    pub fn trace_with<B, T, F>(
        &self,
        request: Request<B>,
        found: T,
        attributes: impl FnOnce(&T, &mut Vec<KeyValue>),
        call: impl FnOnce(Request<B>, T) -> F,
    ) -> ResponseFuture<F> {
        let parent = propagation::extract(request.headers());
        let started = span::start(self.settings.meta, Some(&parent), || {
            let mut list = self.settings.request_attributes(&request);
            attributes(&found, &mut list);
            list
        });
        let span = OpenSpan::new(started);
        let inner = {
            let _attached = span.attach();
            call(request, found)
        };
        ResponseFuture { inner, span }
    }
}

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> ServerTrace<S> {
        ServerTrace {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`ServerTraceLayer`].
#[derive(Clone, Debug)]
pub struct ServerTrace<S> {
    inner: S,
    layer: ServerTraceLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ServerTrace<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, task: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(task)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let inner = &mut self.inner;
        self.layer.trace(request, |request| inner.call(request))
    }
}

impl Settings {
    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    fn default_port(&self) -> u16 {
        if self.tls { 443 } else { 80 }
    }

    /// The request's attributes, in a list with room for the response's
    /// (status code, and `error.type` on a 5xx) and for those the span's
    /// [`SpanMeta`] says the application adds (at the start or later);
    /// called only for a recorded span.
    fn request_attributes<B>(&self, request: &Request<B>) -> Vec<KeyValue> {
        let mut list = Vec::with_capacity(
            REQUEST_ATTRIBUTES + RESPONSE_ATTRIBUTES + self.meta.later_attributes(),
        );
        list.push(key_value::<kind::Str, _>(
            keys::HTTP_REQUEST_METHOD,
            semconv::method_label(request.method()),
        ));
        list.push(key_value::<kind::Str, _>(keys::URL_SCHEME, self.scheme()));
        let route = match &self.route {
            Some(route) => Some(route.clone()),
            None => request
                .extensions()
                .get::<MatchedPath>()
                .map(|matched| Identifier::recurring(matched.as_str())),
        };
        if let Some(route) = route {
            list.push(key_value::<kind::Str, _>(keys::HTTP_ROUTE, route));
        }
        let server = match self.requested_authority(request) {
            Some(requested) => Some(requested),
            None => self
                .local
                .as_ref()
                .map(|local| (local.address.clone(), local.port)),
        };
        if let Some((address, port)) = server {
            list.push(key_value::<kind::Str, _>(keys::SERVER_ADDRESS, address));
            list.push(key_value::<kind::Int, _>(keys::SERVER_PORT, port));
        }
        list
    }

    /// The host and port the client addressed: the URI's authority (HTTP/2
    /// `:authority`, absolute-form HTTP/1) or else the `Host` header.
    fn requested_authority<B>(&self, request: &Request<B>) -> Option<(Identifier, u16)> {
        let authority = match request.uri().authority() {
            Some(authority) => authority.as_str().as_bytes(),
            None => request.headers().get(::http::header::HOST)?.as_bytes(),
        };
        let (host, port) = semconv::recurring_host_port(authority)?;
        Some((host, port.unwrap_or(self.default_port())))
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ServerTrace`]: the span is current while
    /// the handler runs, and moves into the response body when the
    /// response is ready.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: OpenSpan,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<TracedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _attached = this.span.attach();
        match ready!(this.inner.poll(task)) {
            Ok(response) => {
                record_status(this.span, &response);
                let span = this.span.take();
                Poll::Ready(Ok(response.map(|body| TracedBody::new(body, span))))
            }
            Err(error) => {
                this.span.fail(NO_RESPONSE);
                Poll::Ready(Err(error))
            }
        }
    }
}

/// Records the status of `response`, and ends the span at once when the
/// response has no body to wait for.
fn record_status<B: Body>(span: &mut OpenSpan, response: &Response<B>) {
    let status = response.status();
    if let Some(started) = span.started() {
        started.set_attributes(|| {
            [key_value::<kind::Int, _>(
                keys::HTTP_RESPONSE_STATUS_CODE,
                status.as_u16(),
            )]
        });
        if let Some(error_type) = semconv::server_error_type(status) {
            started.set_error(error_type);
        }
    }
    if response.body().is_end_stream() {
        span.end();
    }
}
