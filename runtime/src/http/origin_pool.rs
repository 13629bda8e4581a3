//! Kept-alive HTTP/1 connections, plain or over TLS, to one upstream
//! origin, for a proxy's calls to its one local server (the pd-proxy to its
//! decoder), and a pool per origin for a client of many (the scheduler to
//! its pods, the pd-proxy to its prefillers).
//!
//! hyper's general pooled client serves any number of origins: per request
//! it hashes the origin into its pool map, checks a connection out through
//! a waiter queue and spawns a task that waits for the connection to be
//! idle again before putting it back (about 7,000 instructions, a tenth of
//! the pd-proxy's decode-only request). One origin needs none of that: the
//! most recently used idle connection is popped off a stack, and it goes
//! back on top when its response body ends, from the task reading that
//! body. Connections idle for longer than the idle timeout (90 s, as in
//! hyper's pooled client) are closed from the bottom of the stack.
//!
//! A request sent on a kept-alive connection that the upstream closed in
//! the meantime (an idle timeout racing the request) is sent again on
//! another connection when hyper reports that none of it was written, so it
//! is never lost to a stale connection.

use axum::body::Body;
use bytes::Bytes;
use http::header::{Entry, HOST, HeaderValue};
use http::uri::{Authority, InvalidUri, Scheme};
use http::{Request, Response, Uri};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio_rustls::TlsConnector;
use tower_service::Service;

/// Idle connections kept at most by default: enough for every concurrent
/// request of a busy server to find one (and llm-d's sidecar's default
/// `--max-idle-conns-per-host`).
pub const DEFAULT_MAX_IDLE: usize = 1024;

/// How long a connection may stay idle in the pool before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A failed exchange with the origin.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// No connection could be opened (refused, unreachable, timed out, or
    /// its TLS handshake failed).
    #[error("cannot connect to {origin}: {source}")]
    Connect {
        /// `host:port` of the origin.
        origin: Authority,
        /// Why, with the I/O error among its causes.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The connection failed while the request was sent or its response
    /// head read.
    #[error("the connection to the upstream failed: {0}")]
    Exchange(#[from] hyper::Error),
    /// A host that TLS cannot name (not a DNS name or an IP address).
    #[error("{origin} cannot be named in a TLS handshake: {source}")]
    ServerName {
        /// `host:port` of the origin.
        origin: Authority,
        /// Why.
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// A socket address that makes no URI authority: every one does; the
    /// conversion is checked rather than assumed.
    #[error("{address} is not a URI authority: {source}")]
    Address {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: InvalidUri,
    },
}

impl OriginError {
    /// Whether the origin refused the connection (nothing listens there).
    pub fn is_refused(&self) -> bool {
        super::is_connection_refused(self)
    }

    /// Whether no connection could be opened (the origin's host cannot be
    /// named in a TLS handshake included).
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            OriginError::Connect { .. } | OriginError::ServerName { .. }
        )
    }

    /// Whether the request failed on its own side: its body stream ended in
    /// an error (its client went away mid-upload).
    pub fn is_request_body(&self) -> bool {
        matches!(self, OriginError::Exchange(error) if error.is_user())
    }
}

/// A pool of kept-alive HTTP/1 connections to one origin, plain or over
/// TLS; clones share it.
/// Connections run as tasks of the runtime that opened them.
#[derive(Clone, Debug)]
pub struct OriginPool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    origin: Authority,
    /// The origin as a `Host` header, for requests that name none.
    host: Option<HeaderValue>,
    /// `http://{origin}/`, what the connector resolves and connects to.
    connect_to: Uri,
    connector: HttpConnector,
    /// For an HTTPS origin, how its connections are secured.
    tls: Option<TlsOrigin>,
    /// The limit on opening a connection, TLS handshake included.
    connect_timeout: Option<Duration>,
    /// Idle connections and when each went idle, oldest first.
    idle: Mutex<VecDeque<Idle>>,
    idle_timeout: Duration,
    /// Idle connections kept at most; a connection that finds the pool
    /// full of live ones is closed.
    max_idle: AtomicUsize,
}

/// The TLS side of an HTTPS origin.
#[derive(Debug)]
struct TlsOrigin {
    config: Arc<ClientConfig>,
    /// The name the origin's certificate must bear (its host).
    server_name: ServerName<'static>,
}

impl TlsOrigin {
    fn new(origin: &Authority, config: Arc<ClientConfig>) -> Result<TlsOrigin, OriginError> {
        // An IPv6 host comes bracketed, as URIs write it.
        let host = origin.host().trim_start_matches('[').trim_end_matches(']');
        let server_name =
            ServerName::try_from(host.to_owned()).map_err(|source| OriginError::ServerName {
                origin: origin.clone(),
                source,
            })?;
        Ok(TlsOrigin {
            config,
            server_name,
        })
    }
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl OriginPool {
    /// A pool of plain-HTTP connections to `origin` (`host:port`), with
    /// `TCP_NODELAY` and, when given, a connect timeout; connections idle
    /// for 90 s are closed. Opens nothing yet.
    pub fn new(origin: Authority, connect_timeout: Option<Duration>) -> OriginPool {
        OriginPool::with_idle_timeout(origin, connect_timeout, None, IDLE_TIMEOUT)
    }

    /// As [`OriginPool::new`], over TLS with `tls` (see
    /// [`super::upstream_tls_config`]); the connect timeout covers the TLS
    /// handshake too. Fails when the origin's host cannot be named in a
    /// handshake.
    pub fn with_tls(
        origin: Authority,
        connect_timeout: Option<Duration>,
        tls: Arc<ClientConfig>,
    ) -> Result<OriginPool, OriginError> {
        let tls = TlsOrigin::new(&origin, tls)?;
        Ok(OriginPool::with_idle_timeout(
            origin,
            connect_timeout,
            Some(tls),
            IDLE_TIMEOUT,
        ))
    }

    fn with_idle_timeout(
        origin: Authority,
        connect_timeout: Option<Duration>,
        tls: Option<TlsOrigin>,
        idle_timeout: Duration,
    ) -> OriginPool {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(origin.clone());
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        // A scheme, an authority and a path always make a URI.
        let connect_to = Uri::from_parts(parts).unwrap_or_default();
        OriginPool {
            shared: Arc::new(Shared {
                host: HeaderValue::from_str(origin.as_str()).ok(),
                origin,
                connect_to,
                connector: super::plain_http::connector(connect_timeout),
                tls,
                connect_timeout,
                idle: Mutex::new(VecDeque::new()),
                idle_timeout,
                max_idle: AtomicUsize::new(DEFAULT_MAX_IDLE),
            }),
        }
    }

    /// Keeps at most `max_idle` idle connections ([`DEFAULT_MAX_IDLE`]
    /// unless set); connections beyond it are closed when their response
    /// ends. Applies to clones too.
    pub fn with_max_idle(self, max_idle: usize) -> OriginPool {
        self.shared.max_idle.store(max_idle, Ordering::Relaxed);
        self
    }

    /// Sends `request` (its URI in origin form, `/path?query`) on an idle
    /// connection or a new one, naming the origin as `Host` when the request
    /// names none, and returns the response head; the body streams from the
    /// connection, which goes back to the pool when the body ends.
    pub async fn send(
        &self,
        mut request: Request<Body>,
    ) -> Result<Response<PooledBody>, OriginError> {
        if let (Entry::Vacant(host), Some(origin)) =
            (request.headers_mut().entry(HOST), &self.shared.host)
        {
            host.insert(origin.clone());
        }
        loop {
            let (mut sender, reused) = match self.shared.checkout() {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.shared.attach(sender, response)),
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(OriginError::Exchange(failed.into_error())),
                },
            }
        }
    }

    /// Whether the origin is reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// Connections idle in the pool now.
    pub fn idle_connections(&self) -> usize {
        self.shared.lock_idle().len()
    }

    /// Whether nothing but the map holding it refers to this pool (no
    /// request, response body or give-back under way) and it keeps no idle
    /// connection that is not past the idle timeout (those it closes).
    fn is_unused(&self) -> bool {
        Arc::strong_count(&self.shared) == 1 && {
            let mut idle = self.shared.lock_idle();
            // The newest went idle last: when it has expired, all have.
            let now = Instant::now();
            if idle
                .back()
                .is_some_and(|newest| !self.shared.expired(newest, now))
            {
                return false;
            }
            idle.clear();
            true
        }
    }

    async fn connect(&self) -> Result<SendRequest<Body>, OriginError> {
        let started = Instant::now();
        let mut connector = self.shared.connector.clone();
        let connecting = std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map(|()| connector.call(self.shared.connect_to.clone()));
        let io = match connecting {
            Ok(connecting) => connecting.await,
            Err(error) => Err(error),
        }
        .map_err(|error| self.connect_error(error))?;
        match &self.shared.tls {
            None => handshake(io).await,
            Some(tls) => {
                let handshaking = TlsConnector::from(tls.config.clone())
                    .connect(tls.server_name.clone(), io.into_inner());
                let tls_io = match self.shared.connect_timeout {
                    None => handshaking.await,
                    Some(limit) => tokio::time::timeout_at((started + limit).into(), handshaking)
                        .await
                        .unwrap_or_else(|_| {
                            Err(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "the TLS handshake did not finish within the connect timeout",
                            ))
                        }),
                }
                .map_err(|error| self.connect_error(error))?;
                handshake(TokioIo::new(tls_io)).await
            }
        }
    }

    fn connect_error(
        &self,
        error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> OriginError {
        OriginError::Connect {
            origin: self.shared.origin.clone(),
            source: error.into(),
        }
    }
}

/// Starts HTTP/1 on a new connection `io`, running the connection as a
/// task; gives the handle requests are sent through.
async fn handshake<I>(io: I) -> Result<SendRequest<Body>, OriginError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// What [`OriginPools`] tells origins apart by: a socket address (the
/// scheduler's pods), or a `host:port` authority, its name resolved when a
/// connection is opened (the prefillers a request names).
pub trait OriginKey: Clone + Eq + Hash {
    /// The origin as a URI authority.
    fn authority(&self) -> Result<Authority, OriginError>;
}

impl OriginKey for SocketAddr {
    /// Every socket address makes an authority; the conversion is checked
    /// rather than assumed.
    fn authority(&self) -> Result<Authority, OriginError> {
        Authority::try_from(self.to_string()).map_err(|source| OriginError::Address {
            address: *self,
            source,
        })
    }
}

impl OriginKey for Authority {
    fn authority(&self) -> Result<Authority, OriginError> {
        Ok(self.clone())
    }
}

/// Kept-alive connections to any number of plain-HTTP origins: an
/// [`OriginPool`] per origin (by socket address or by authority, see
/// [`OriginKey`]), made on first use; clones share them. Whenever a pool is
/// added, pools left with no connection (busy, or idle within the idle
/// timeout) are dropped, so origins that come and go (pods replaced,
/// prefillers named once) do not pile up.
#[derive(Clone, Debug)]
pub struct OriginPools<K = SocketAddr> {
    shared: Arc<PoolsShared<K>>,
}

#[derive(Debug)]
struct PoolsShared<K> {
    pools: RwLock<HashMap<K, OriginPool>>,
    connect_timeout: Option<Duration>,
    /// For HTTPS origins, their TLS client configuration.
    tls: Option<Arc<ClientConfig>>,
    idle_timeout: Duration,
    /// Each pool's [`OriginPool::with_max_idle`].
    max_idle: AtomicUsize,
}

impl<K: OriginKey> OriginPools<K> {
    /// No pools yet; connections get `TCP_NODELAY` and, when given, a
    /// connect timeout, and are closed after 90 s idle.
    pub fn new(connect_timeout: Option<Duration>) -> OriginPools<K> {
        OriginPools::with_idle_timeout(connect_timeout, None, IDLE_TIMEOUT)
    }

    /// As [`OriginPools::new`], for HTTPS origins reached with `tls` (see
    /// [`OriginPool::with_tls`]).
    pub fn with_tls(connect_timeout: Option<Duration>, tls: Arc<ClientConfig>) -> OriginPools<K> {
        OriginPools::with_idle_timeout(connect_timeout, Some(tls), IDLE_TIMEOUT)
    }

    fn with_idle_timeout(
        connect_timeout: Option<Duration>,
        tls: Option<Arc<ClientConfig>>,
        idle_timeout: Duration,
    ) -> OriginPools<K> {
        OriginPools {
            shared: Arc::new(PoolsShared {
                pools: RwLock::default(),
                connect_timeout,
                tls,
                idle_timeout,
                max_idle: AtomicUsize::new(DEFAULT_MAX_IDLE),
            }),
        }
    }

    /// Each origin's pool keeps at most `max_idle` idle connections (see
    /// [`OriginPool::with_max_idle`]); applies to the pools made from now
    /// on, and to clones.
    pub fn with_max_idle(self, max_idle: usize) -> OriginPools<K> {
        self.shared.max_idle.store(max_idle, Ordering::Relaxed);
        self
    }

    /// Whether the origins are reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// Sends `request` (its URI in origin form, `/path?query`) to `origin`
    /// through that origin's pool. See [`OriginPool::send`].
    pub async fn send(
        &self,
        origin: &K,
        request: Request<Body>,
    ) -> Result<Response<PooledBody>, OriginError> {
        self.pool(origin)?.send(request).await
    }

    /// The pool of `origin`, added (and unused pools dropped) on first use.
    pub fn pool(&self, origin: &K) -> Result<OriginPool, OriginError> {
        let pools = &self.shared.pools;
        if let Some(pool) = pools
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(origin)
        {
            return Ok(pool.clone());
        }
        let mut pools = pools.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = pools.get(origin) {
            return Ok(pool.clone());
        }
        let authority = origin.authority()?;
        let tls = match &self.shared.tls {
            Some(config) => Some(TlsOrigin::new(&authority, config.clone())?),
            None => None,
        };
        pools.retain(|_, pool| !pool.is_unused());
        let pool = OriginPool::with_idle_timeout(
            authority,
            self.shared.connect_timeout,
            tls,
            self.shared.idle_timeout,
        )
        .with_max_idle(self.shared.max_idle.load(Ordering::Relaxed));
        pools.insert(origin.clone(), pool.clone());
        Ok(pool)
    }
}

impl Shared {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection that can take a request;
    /// closed ones are dropped on the way, and when the most recent one
    /// has been idle too long, so have all the others.
    fn checkout(&self) -> Option<SendRequest<Body>> {
        let now = Instant::now();
        let mut idle = self.lock_idle();
        while let Some(kept) = idle.pop_back() {
            if self.expired(&kept, now) {
                idle.clear();
                return None;
            }
            if kept.sender.is_ready() {
                return Some(kept.sender);
            }
        }
        None
    }

    /// Whether `kept` has been idle for the idle timeout or longer at `now`.
    fn expired(&self, kept: &Idle, now: Instant) -> bool {
        now.saturating_duration_since(kept.since) >= self.idle_timeout
    }

    /// The response with a body that gives `sender` back when it ends.
    fn attach(
        self: &Arc<Self>,
        sender: SendRequest<Body>,
        response: Response<Incoming>,
    ) -> Response<PooledBody> {
        let returning = Returning {
            sender,
            pool: self.clone(),
        };
        let returning = if http_body::Body::is_end_stream(response.body()) {
            returning.give_back();
            None
        } else {
            Some(returning)
        };
        response.map(|inner| PooledBody { inner, returning })
    }

    /// Keeps `sender` for the next request, unless the pool is full of
    /// live connections; closes the oldest idle connection if it has been
    /// idle too long.
    fn keep(&self, sender: SendRequest<Body>) {
        let since = Instant::now();
        let mut idle = self.lock_idle();
        if idle
            .front()
            .is_some_and(|oldest| self.expired(oldest, since))
        {
            idle.pop_front();
        }
        let max_idle = self.max_idle.load(Ordering::Relaxed);
        if idle.len() >= max_idle {
            idle.retain(|kept| !kept.sender.is_closed());
        }
        if idle.len() < max_idle {
            idle.push_back(Idle { sender, since });
        }
    }
}

/// A connection whose response is being read, and its pool.
#[derive(Debug)]
struct Returning {
    sender: SendRequest<Body>,
    pool: Arc<Shared>,
}

impl Returning {
    /// Puts the connection back once it can take the next request: at
    /// once when hyper is already waiting for one (the usual case: the
    /// connection task finishes a response before its last bytes reach the
    /// reader), otherwise from a task that waits for it, so that no request
    /// ever waits on another's connection.
    fn give_back(mut self) {
        if self.sender.is_ready() {
            self.pool.keep(self.sender);
        } else if !self.sender.is_closed()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if self.sender.ready().await.is_ok() {
                    self.pool.keep(self.sender);
                }
            });
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body streamed from a pooled connection. Its connection
    /// goes back to the pool when the body ends cleanly; a body dropped
    /// unfinished or failing takes its connection down with it (HTTP/1
    /// cannot abandon half a response and reuse the connection).
    #[derive(Debug)]
    pub struct PooledBody {
        #[pin]
        inner: Incoming,
        returning: Option<Returning>,
    }

    impl PinnedDrop for PooledBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if http_body::Body::is_end_stream(&*this.inner)
                && let Some(returning) = this.returning.take()
            {
                returning.give_back();
            }
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let ended = match &frame {
            None => true,
            Some(Ok(_)) => this.inner.is_end_stream(),
            Some(Err(_)) => {
                this.returning.take();
                false
            }
        };
        if ended && let Some(returning) = this.returning.take() {
            returning.give_back();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// How the test origin answers.
    #[derive(Clone, Copy)]
    enum Answer {
        /// `200 ok`, the connection kept alive.
        KeptAlive,
        /// `200 ok` with `Connection: close`.
        Closing,
        /// A chunked body whose first chunk comes and whose end never does.
        Endless,
        /// `200` with the request's `Host` header as the body.
        Host,
    }

    /// An HTTP/1 server on loopback that counts the connections it accepts.
    struct Origin {
        address: SocketAddr,
        connections: Arc<AtomicUsize>,
    }

    impl Origin {
        async fn start(answer: Answer) -> Origin {
            Origin::start_with(answer, None).await
        }

        /// An origin behind TLS with `pki`'s server certificate.
        async fn start_tls(answer: Answer, pki: &crate::testing::pki::TestPki) -> Origin {
            let config = pki.server_config(false).unwrap();
            Origin::start_with(answer, Some(tokio_rustls::TlsAcceptor::from(config))).await
        }

        async fn start_with(answer: Answer, tls: Option<tokio_rustls::TlsAcceptor>) -> Origin {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let connections = Arc::new(AtomicUsize::new(0));
            let accepted = connections.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let service = service_fn(move |request| async move {
                        Ok::<_, Infallible>(respond(answer, &request))
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match &tls {
                        None => {
                            tokio::spawn(http.serve_connection(TokioIo::new(stream), service));
                        }
                        Some(acceptor) => {
                            let accepting = acceptor.accept(stream);
                            tokio::spawn(async move {
                                if let Ok(stream) = accepting.await {
                                    let _ =
                                        http.serve_connection(TokioIo::new(stream), service).await;
                                }
                            });
                        }
                    }
                }
            });
            Origin {
                address,
                connections,
            }
        }

        fn authority(&self) -> Authority {
            Authority::try_from(self.address.to_string()).unwrap()
        }

        fn pool(&self) -> OriginPool {
            OriginPool::new(self.authority(), None)
        }

        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }
    }

    fn respond(answer: Answer, request: &Request<Incoming>) -> Response<Body> {
        match answer {
            Answer::Host => {
                let host = request.headers().get(http::header::HOST);
                Response::new(Body::from(
                    host.map_or(Bytes::new(), |host| Bytes::copy_from_slice(host.as_bytes())),
                ))
            }
            Answer::KeptAlive => Response::new(Body::from("ok")),
            Answer::Closing => Response::builder()
                .header(http::header::CONNECTION, "close")
                .body(Body::from("ok"))
                .unwrap(),
            Answer::Endless => {
                let first = futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from("a"))]);
                Response::new(Body::from_stream(
                    first.chain(futures_util::stream::pending()),
                ))
            }
        }
    }

    fn get(address: SocketAddr) -> Request<Body> {
        Request::builder()
            .uri("/v1/models")
            .header(http::header::HOST, address.to_string())
            .body(Body::empty())
            .unwrap()
    }

    async fn fetch(pool: &OriginPool, address: SocketAddr) -> Bytes {
        let response = pool.send(get(address)).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap().to_bytes()
    }

    use futures_util::StreamExt as _;

    #[tokio::test]
    async fn tls_connections_name_the_origin_and_are_kept_alive() {
        let pki = crate::testing::pki::TestPki::generate().unwrap();
        let origin = Origin::start_tls(Answer::Host, &pki).await;
        let tls = crate::http::upstream_tls_config(true).unwrap();
        let pool = OriginPool::with_tls(origin.authority(), None, tls).unwrap();
        assert!(pool.is_tls());
        for _ in 0..3 {
            let request = Request::builder()
                .uri("/v1/models")
                .body(Body::empty())
                .unwrap();
            let response = pool.send(request).await.unwrap();
            let host = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(host, origin.address.to_string());
        }
        assert_eq!(origin.connections(), 1);
    }

    #[tokio::test]
    async fn a_request_body_that_fails_is_the_requests_own_failure() {
        let origin = Origin::start(Answer::KeptAlive).await;
        let failing = futures_util::stream::iter([
            Ok(Bytes::from_static(b"{\"partial\":")),
            Err(std::io::Error::other("the client went away")),
        ]);
        let request = Request::builder()
            .method("POST")
            .uri("/v1/completions")
            .body(Body::from_stream(failing))
            .unwrap();
        let error = origin
            .pool()
            .send(request)
            .await
            .expect_err("the body failed");
        assert!(error.is_request_body(), "{error:?}");
        assert!(!error.is_connect(), "{error:?}");
        let refused = OriginPool::new(Authority::from_static("127.0.0.1:1"), None)
            .send(get(origin.address))
            .await
            .expect_err("nothing listens");
        assert!(!refused.is_request_body(), "{refused:?}");
    }

    #[test]
    fn tls_origins_are_named_by_host_name_or_address() {
        let tls = crate::http::upstream_tls_config(true).unwrap();
        let name = |authority: &'static str| {
            let origin = Authority::from_static(authority);
            OriginPool::with_tls(origin, None, tls.clone()).map(|pool| {
                pool.shared
                    .tls
                    .as_ref()
                    .map(|t| t.server_name.to_str().into_owned())
            })
        };
        assert_eq!(
            name("prefill-0.ns.svc:8000").unwrap().as_deref(),
            Some("prefill-0.ns.svc")
        );
        assert_eq!(name("10.0.0.7:8000").unwrap().as_deref(), Some("10.0.0.7"));
        assert_eq!(name("[::1]:8000").unwrap().as_deref(), Some("::1"));
        assert!(matches!(
            name("bad_host!:8000"),
            Err(OriginError::ServerName { .. })
        ));
    }

    #[tokio::test]
    async fn a_certificate_the_system_does_not_trust_fails_the_connection() {
        let pki = crate::testing::pki::TestPki::generate().unwrap();
        let origin = Origin::start_tls(Answer::KeptAlive, &pki).await;
        let tls = crate::http::upstream_tls_config(false).unwrap();
        let pools = OriginPools::<Authority>::with_tls(None, tls);
        let error = pools
            .send(&origin.authority(), get(origin.address))
            .await
            .expect_err("the test CA is not trusted");
        assert!(error.is_connect(), "{error:?}");
        assert!(!error.is_refused(), "{error:?}");
    }

    #[tokio::test]
    async fn sequential_requests_share_one_connection() {
        let origin = Origin::start(Answer::KeptAlive).await;
        let pool = origin.pool();
        for _ in 0..5 {
            assert_eq!(fetch(&pool, origin.address).await, "ok");
        }
        assert_eq!(origin.connections(), 1);
        assert_eq!(pool.idle_connections(), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_each_get_a_connection_and_all_come_back() {
        let origin = Origin::start(Answer::KeptAlive).await;
        let pool = origin.pool();
        let responses =
            futures_util::future::join_all((0..4).map(|_| pool.send(get(origin.address)))).await;
        assert_eq!(origin.connections(), 4);
        for response in responses {
            let body = response.unwrap().into_body().collect().await.unwrap();
            assert_eq!(body.to_bytes(), "ok");
        }
        assert_eq!(pool.idle_connections(), 4);
        for _ in 0..8 {
            fetch(&pool, origin.address).await;
        }
        assert_eq!(origin.connections(), 4);
    }

    #[tokio::test]
    async fn connections_idle_past_the_timeout_are_closed() {
        let origin = Origin::start(Answer::KeptAlive).await;
        let pool = OriginPool::with_idle_timeout(origin.authority(), None, None, Duration::ZERO);
        for _ in 0..3 {
            assert_eq!(fetch(&pool, origin.address).await, "ok");
            assert_eq!(pool.idle_connections(), 1, "the expired one was closed");
        }
        assert_eq!(origin.connections(), 3);

        let both = futures_util::future::join_all((0..2).map(|_| pool.send(get(origin.address))));
        for response in both.await {
            response.unwrap().into_body().collect().await.unwrap();
        }
        assert_eq!(
            pool.idle_connections(),
            1,
            "the first to come back expired when the second did"
        );
    }

    #[tokio::test]
    async fn a_connection_the_origin_closes_is_not_reused() {
        let origin = Origin::start(Answer::Closing).await;
        let pool = origin.pool();
        assert_eq!(fetch(&pool, origin.address).await, "ok");
        assert_eq!(fetch(&pool, origin.address).await, "ok");
        assert_eq!(origin.connections(), 2);
    }

    #[tokio::test]
    async fn a_body_dropped_unfinished_takes_its_connection_down() {
        let origin = Origin::start(Answer::Endless).await;
        let pool = origin.pool();
        let response = pool.send(get(origin.address)).await.unwrap();
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "a");
        drop(body);
        assert_eq!(pool.idle_connections(), 0);
        let response = pool.send(get(origin.address)).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(origin.connections(), 2);
    }

    #[tokio::test]
    async fn a_request_the_closed_connection_never_sent_goes_on_a_new_one() {
        let origin = Origin::start(Answer::KeptAlive).await;
        let pool = origin.pool();
        // A kept-alive connection that hyper still counts as ready, whose
        // peer has hung up: its task has not yet run to see the end of the
        // stream, as when an upstream's idle timeout races a request.
        let (near, far) = tokio::io::duplex(1024);
        let (mut stale, connection) = http1::handshake(TokioIo::new(near)).await.unwrap();
        let stale_task = tokio::spawn(connection);
        stale.ready().await.unwrap();
        drop(far);
        pool.shared.keep(stale);
        assert_eq!(fetch(&pool, origin.address).await, "ok");
        assert_eq!(origin.connections(), 1);
        assert!(stale_task.is_finished());
    }

    #[tokio::test]
    async fn nothing_listening_is_a_refused_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let pool = OriginPool::new(Authority::try_from(address.to_string()).unwrap(), None);
        let error = pool.send(get(address)).await.unwrap_err();
        assert!(error.is_refused(), "{error}");
        assert!(error.to_string().contains(&address.to_string()), "{error}");
    }

    #[tokio::test]
    async fn each_origin_gets_its_own_pool_and_is_named_as_host() {
        let first = Origin::start(Answer::Host).await;
        let second = Origin::start(Answer::Host).await;
        let pools = OriginPools::new(None);
        let unnamed = || Request::builder().uri("/v1/models").body(Body::empty());
        for _ in 0..3 {
            for origin in [&first, &second] {
                let response = pools.send(&origin.address, unnamed().unwrap()).await;
                let body = response.unwrap().into_body().collect().await.unwrap();
                assert_eq!(body.to_bytes(), origin.address.to_string());
            }
        }
        assert_eq!((first.connections(), second.connections()), (1, 1));
        assert_eq!(pools.pool(&first.address).unwrap().idle_connections(), 1);

        let named = Request::builder()
            .uri("/v1/models")
            .header(http::header::HOST, "pod.example:8000")
            .body(Body::empty());
        let response = pools.send(&first.address, named.unwrap()).await.unwrap();
        let body = response.into_body().collect().await.unwrap();
        assert_eq!(body.to_bytes(), "pod.example:8000", "a given Host is kept");
    }

    #[tokio::test]
    async fn origins_named_by_authority_are_resolved_and_pooled() {
        let origin = Origin::start(Answer::Host).await;
        let pools = OriginPools::<Authority>::new(None);
        let named = Authority::try_from(format!("localhost:{}", origin.address.port())).unwrap();
        for _ in 0..3 {
            let request = Request::builder().uri("/v1/models").body(Body::empty());
            let response = pools.send(&named, request.unwrap()).await.unwrap();
            let body = response.into_body().collect().await.unwrap();
            assert_eq!(body.to_bytes(), named.as_str());
        }
        assert_eq!(origin.connections(), 1);
        let differently_cased = Authority::try_from(named.as_str().to_uppercase()).unwrap();
        assert_eq!(
            pools.pool(&differently_cased).unwrap().idle_connections(),
            1
        );
    }

    #[tokio::test]
    async fn pools_whose_idle_connections_expired_are_dropped_when_an_origin_is_added() {
        let first = Origin::start(Answer::KeptAlive).await;
        let second = Origin::start(Answer::KeptAlive).await;
        let pools = OriginPools::with_idle_timeout(None, None, Duration::ZERO);
        let response = pools.send(&first.address, get(first.address)).await;
        response.unwrap().into_body().collect().await.unwrap();
        assert_eq!(pools.pool(&first.address).unwrap().idle_connections(), 1);
        let response = pools.send(&second.address, get(second.address)).await;
        response.unwrap().into_body().collect().await.unwrap();
        let origins: Vec<_> = pools.shared.pools.read().unwrap().keys().copied().collect();
        assert_eq!(
            origins,
            [second.address],
            "the first origin's connection had expired"
        );
    }

    #[tokio::test]
    async fn pools_without_connections_are_dropped_when_an_origin_is_added() {
        let kept = Origin::start(Answer::KeptAlive).await;
        let closing = Origin::start(Answer::Closing).await;
        let pools = OriginPools::new(None);
        for origin in [&kept, &closing] {
            let response = pools.send(&origin.address, get(origin.address)).await;
            response.unwrap().into_body().collect().await.unwrap();
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let third = listener.local_addr().unwrap();
        drop(listener);
        let refused = pools.send(&third, get(third)).await.unwrap_err();
        assert!(refused.is_connect() && refused.is_refused(), "{refused}");

        let mut origins: Vec<_> = pools.shared.pools.read().unwrap().keys().copied().collect();
        origins.sort();
        let mut expected = vec![kept.address, third];
        expected.sort();
        assert_eq!(origins, expected, "the closing origin's pool held nothing");
    }

    /// Sends `count` requests at once through `pool` (each on a connection
    /// of its own, none being idle), then reads every answer, so that all
    /// `count` connections go back to the pool; gives the idle count.
    async fn idle_after_concurrent_requests(
        pool: &OriginPool,
        origin: &Origin,
        count: usize,
    ) -> usize {
        let mut responses = Vec::new();
        for _ in 0..count {
            responses.push(pool.send(get(origin.address)).await.unwrap());
        }
        assert_eq!(origin.connections(), count);
        for response in responses {
            response.into_body().collect().await.unwrap();
        }
        pool.idle_connections()
    }

    #[tokio::test]
    async fn a_pool_keeps_at_most_its_max_idle_connections() {
        let origin = Origin::start(Answer::KeptAlive).await;
        assert_eq!(
            idle_after_concurrent_requests(&origin.pool(), &origin, 4).await,
            4
        );
        let origin = Origin::start(Answer::KeptAlive).await;
        let capped = origin.pool().with_max_idle(2);
        assert_eq!(idle_after_concurrent_requests(&capped, &origin, 4).await, 2);
        fetch(&capped, origin.address).await;
        assert_eq!(origin.connections(), 4, "a kept connection served it");
    }

    #[tokio::test]
    async fn pools_per_origin_keep_at_most_their_max_idle_connections() {
        let origin = Origin::start(Answer::KeptAlive).await;
        let pools = OriginPools::new(None).with_max_idle(1);
        let pool = pools.pool(&origin.address).unwrap();
        assert_eq!(idle_after_concurrent_requests(&pool, &origin, 3).await, 1);
    }
}
