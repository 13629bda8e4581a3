//! The signal a service stops on: Ctrl-C (SIGINT) or, on Unix, SIGTERM (what
//! Kubernetes and process supervisors send), so that a stopping service
//! flushes its spans either way.

/// Resolves on the first SIGINT or SIGTERM. A signal whose handler cannot be
/// installed is not waited for; if neither can be, this never resolves.
pub async fn signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
