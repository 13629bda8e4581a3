//! How a service stops: on Ctrl-C (SIGINT) or, on Unix, SIGTERM (what
//! Kubernetes and process supervisors send), so that a stopping service
//! flushes its spans either way; and, for an axum service, by letting the
//! requests in flight finish first.

use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a stopping service lets the requests in flight finish, as
/// llm-d's sidecar does.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Logs a warning when a drain of `drain` ended with requests still in
/// flight (`drained` false), which the exit then cuts off.
pub fn warn_unless_drained(drained: bool, drain: Duration) {
    if !drained {
        tracing::warn!(
            "requests still in flight after {} s were cut off at shutdown",
            drain.as_secs()
        );
    }
}

/// Serves `router` on `listener` until `stop` resolves, with how long the
/// requests in flight may still take; then stops accepting, closes idle
/// kept-alive connections (HTTP/2: GOAWAY) and lets those requests finish,
/// streamed answers included, for up to that long. Gives whether every
/// connection closed in time (true also when the server ended on its own),
/// or the server's error.
pub async fn serve_draining<S>(
    listener: TcpListener,
    router: axum::Router,
    stop: S,
) -> std::io::Result<bool>
where
    S: Future<Output = Duration> + Send + 'static,
{
    let (stopping, stopped) = tokio::sync::oneshot::channel::<Duration>();
    let serving = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stopping.send(stop.await);
        })
        .into_future();
    tokio::pin!(serving);
    let drain = tokio::select! {
        biased;
        served = &mut serving => return served.map(|()| true),
        Ok(drain) = stopped => drain,
    };
    match tokio::time::timeout(drain, serving).await {
        Ok(served) => served.map(|()| true),
        Err(_) => Ok(false),
    }
}

/// Installs the handlers of SIGINT and, on Unix, SIGTERM at once, and
/// resolves on the first of them. Call it (inside the runtime) before the
/// service announces that it listens: until a handler is installed, the
/// signal kills the process. A signal whose handler cannot be installed is
/// not waited for; if neither can be, the future never resolves.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind};
        let install = |kind| tokio::signal::unix::signal(kind).ok();
        let interrupt = install(SignalKind::interrupt());
        let terminate = install(SignalKind::terminate());
        let received = |signal: Option<Signal>| async move {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        async move {
            tokio::select! {
                () = received(interrupt) => {}
                () = received(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use bytes::Bytes;
    use std::convert::Infallible;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::{Notify, oneshot};
    use tokio::task::JoinHandle;

    /// Bounds waits that only a broken drain would make endless.
    const UNLESS_BROKEN: Duration = Duration::from_secs(60);

    /// A server whose `/slow` answer sends `first` at once and `last`
    /// only once `release` is notified, and whose `/fast` answer is
    /// complete at once; it stops when the returned sender fires, draining
    /// for as long as it says.
    async fn server(
        release: Arc<Notify>,
    ) -> (
        std::net::SocketAddr,
        oneshot::Sender<Duration>,
        JoinHandle<std::io::Result<bool>>,
    ) {
        let router = axum::Router::new()
            .route("/fast", get(|| async { "fast" }))
            .route(
                "/slow",
                get(move || async move {
                    let chunks = futures_util::stream::unfold(0, move |sent| {
                        let release = release.clone();
                        async move {
                            match sent {
                                0 => Some((Ok::<_, Infallible>(Bytes::from_static(b"first")), 1)),
                                1 => {
                                    release.notified().await;
                                    Some((Ok(Bytes::from_static(b"last")), 2))
                                }
                                _ => None,
                            }
                        }
                    });
                    Body::from_stream(chunks)
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<Duration>();
        let serving = tokio::spawn(serve_draining(listener, router, async move {
            stopped.await.unwrap_or_default()
        }));
        (address, stop, serving)
    }

    /// Sends a GET of `path` on a new kept-alive connection and reads
    /// until `until` has arrived.
    async fn get_until(address: std::net::SocketAddr, path: &str, until: &str) -> TcpStream {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut seen = String::new();
        let mut buffer = [0; 1024];
        while !seen.contains(until) {
            let read = stream.read(&mut buffer).await.unwrap();
            assert_ne!(read, 0, "closed before {until:?}: {seen}");
            seen.push_str(std::str::from_utf8(&buffer[..read]).unwrap());
        }
        stream
    }

    /// Reads `stream` to its end.
    async fn rest(mut stream: TcpStream) -> String {
        let mut rest = Vec::new();
        tokio::time::timeout(UNLESS_BROKEN, stream.read_to_end(&mut rest))
            .await
            .expect("the connection closes")
            .unwrap();
        String::from_utf8(rest).unwrap()
    }

    #[tokio::test]
    async fn a_stop_closes_idle_connections_and_lets_a_streamed_answer_finish() {
        let release = Arc::new(Notify::new());
        let (address, stop, serving) = server(release.clone()).await;
        let idle = get_until(address, "/fast", "fast").await;
        let streaming = get_until(address, "/slow", "first").await;

        stop.send(UNLESS_BROKEN).unwrap();
        assert_eq!(rest(idle).await, "", "the idle connection is closed");
        assert!(!serving.is_finished(), "the answer in flight is waited for");
        release.notify_one();
        let end = rest(streaming).await;
        assert!(end.contains("last"), "{end:?}");
        assert!(end.ends_with("0\r\n\r\n"), "the chunked body ends: {end:?}");
        assert!(serving.await.unwrap().unwrap(), "drained");
    }

    #[tokio::test]
    async fn a_request_that_outlasts_the_drain_is_reported() {
        let (address, stop, serving) = server(Arc::new(Notify::new())).await;
        let _streaming = get_until(address, "/slow", "first").await;

        stop.send(Duration::ZERO).unwrap();
        let drained = tokio::time::timeout(UNLESS_BROKEN, serving)
            .await
            .expect("the drain ends")
            .unwrap()
            .unwrap();
        assert!(!drained);
    }
}
