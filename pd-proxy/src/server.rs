//! The listeners: one per data-parallel rank, plain HTTP or TLS, HTTP/1.1
//! and HTTP/2, every request traced by the `llm_d.pd_proxy.request` span.

use crate::config::{Config, ListenerTls};
use crate::pool;
use crate::routes::Routes;
use crate::state::{Listener, Shared};
use crate::stop::{self, Stop, StopListener};
use crate::tls::{self, TlsError};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use llmd_runtime::span::{SpanKind, SpanMeta};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// The SERVER span of every proxied request, with room for what the P/D
/// handler adds to it: the routing attributes of its start list
/// (connector, path, the P/D decision and its target: 5 at most), then the
/// request's operation, id and model, and the three roll-ups (11 in all).
pub static REQUEST_SPAN: SpanMeta =
    SpanMeta::new("llm_d.pd_proxy.request", SpanKind::Server).with_later_attributes(11);

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A listener could not bind.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The listener's certificate is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// TLS towards the upstreams could not be set up.
    #[error("cannot set up TLS towards the upstreams: {0}")]
    UpstreamTls(#[from] rustls::Error),
    /// The InferencePool cannot be watched: not in a pod, or its service
    /// account is unreadable.
    #[error("SSRF protection cannot watch the InferencePool: {0}")]
    PoolWatch(#[from] crate::pool::KubeError),
}

/// A running proxy. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct Proxy {
    addresses: Vec<SocketAddr>,
    stop: Stop,
    accept_loops: Vec<JoinHandle<()>>,
    /// Ends (yields `None`) once every accept loop and connection task has
    /// dropped its [`Open`] token.
    all_closed: mpsc::Receiver<()>,
}

/// Raises its signal when dropped: held while [`Proxy::start`] waits for
/// the pool's first listing, so that a start given up (its future dropped)
/// stops the pool watch it spawned.
struct StopIfAbandoned<'a>(&'a Stop);

impl Drop for StopIfAbandoned<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Held by each accept loop and connection task while it runs; nothing is
/// ever sent on it.
type Open = mpsc::Sender<()>;

impl Proxy {
    /// Binds the listeners of `config` and starts serving. With SSRF
    /// protection from an InferencePool, first waits until the pool has
    /// been listed (for as long as the API fails, as llm-d's sidecar does),
    /// so that no P/D request meets an allowlist not filled yet.
    pub async fn start(config: Config) -> Result<Proxy, StartError> {
        config.validate()?;
        let tls_config = tls::server_config(&config.listener_tls)?;
        let secure = config.listener_tls != ListenerTls::Off;
        let shared = Arc::new(Shared::new(config)?);
        let (stop, stopped) = stop::channel();
        if let (Some(pool), Some(targets)) =
            (&shared.config.inference_pool, shared.allowlist.pool())
        {
            let api = pool::KubeApi::in_cluster(|name| std::env::var(name).ok())?;
            let (ready, listed) = oneshot::channel();
            tokio::spawn(pool::watch(
                api,
                pool.clone(),
                targets.clone(),
                stopped.clone(),
                ready,
            ));
            tracing::info!(%pool, "waiting for the InferencePool's first listing before listening");
            let abandoned = StopIfAbandoned(&stop);
            // The watch only ends, without sending, once the proxy stops.
            let _ = listed.await;
            std::mem::forget(abandoned);
        }
        let (open, all_closed) = mpsc::channel(1);
        let mut addresses = Vec::new();
        let mut accept_loops = Vec::new();
        let mut base_port = shared.config.port;
        for rank in 0..shared.config.data_parallel_size {
            let port = if rank == 0 {
                base_port
            } else {
                base_port + rank
            };
            let address = SocketAddr::new(shared.config.bind_address, port);
            let tcp = TcpListener::bind(address)
                .await
                .map_err(|source| StartError::Bind { address, source })?;
            let local = tcp
                .local_addr()
                .map_err(|source| StartError::Bind { address, source })?;
            if rank == 0 {
                base_port = local.port();
            }
            let listener = Listener {
                shared: shared.clone(),
                rank,
                base_port,
            };
            let app = Routes::new(listener, secure, local);
            let acceptor = tls_config.clone().map(TlsAcceptor::from);
            accept_loops.push(tokio::spawn(accept_loop(
                tcp,
                app,
                acceptor,
                stopped.clone(),
                open.clone(),
            )));
            addresses.push(local);
        }
        Ok(Proxy {
            addresses,
            stop,
            accept_loops,
            all_closed,
        })
    }

    /// The address of rank 0's listener.
    pub fn address(&self) -> SocketAddr {
        self.addresses[0]
    }

    /// The addresses of all listeners, rank 0 first.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// Stops accepting connections, closes idle ones, and waits up to
    /// `drain` for the requests in flight to finish (a streamed answer
    /// included); true when all did.
    pub async fn shutdown(mut self, drain: Duration) -> bool {
        self.stop.stop();
        for accept_loop in self.accept_loops.drain(..) {
            let _ = accept_loop.await;
        }
        tokio::time::timeout(drain, self.all_closed.recv())
            .await
            .is_ok()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    app: Routes,
    tls: Option<TlsAcceptor>,
    stopped: StopListener,
    open: Open,
) {
    loop {
        let accepted = tokio::select! {
            accepted = tcp.accept() => accepted,
            () = stopped.stopped() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(serve_connection(
            stream,
            app.clone(),
            tls.clone(),
            stopped.clone(),
            open.clone(),
        ));
    }
}

/// Serves one connection until it ends; once the proxy stops, the
/// connection finishes the request in flight (if any) and closes.
async fn serve_connection(
    stream: TcpStream,
    service: Routes,
    tls: Option<TlsAcceptor>,
    stopped: StopListener,
    _open: Open,
) {
    let _ = stream.set_nodelay(true);
    let served = match tls {
        None => serve_until_stopped(TokioIo::new(stream), service, stopped).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_until_stopped(TokioIo::new(stream), service, stopped).await,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            }
        }
    };
    if let Err(error) = served {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// HTTP/1.1 or HTTP/2 on `io`; when the proxy stops, a graceful shutdown
/// of the connection (HTTP/1: close after the response in flight, at once
/// when idle; HTTP/2: GOAWAY, then the open streams finish).
async fn serve_until_stopped<I>(
    io: I,
    service: Routes,
    stopped: StopListener,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    tokio::select! {
        // The connection first: the stop signal is checked only when the
        // connection has nothing to do.
        biased;
        served = connection.as_mut() => return served,
        () = stopped.stopped() => {}
    }
    connection.as_mut().graceful_shutdown();
    connection.await
}
