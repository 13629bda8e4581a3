//! The signal a service stops on: Ctrl-C (SIGINT) or, on Unix, SIGTERM (what
//! Kubernetes and process supervisors send), so that a stopping service
//! flushes its spans either way.

use std::future::Future;

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
