//! The `llmd-pd-proxy` process: telemetry, listeners, signals; what the
//! binary's `main` runs, public so that other binaries can run a proxy
//! process with the same command line.

use crate::{Cli, Proxy};
use std::process::ExitCode;

/// Runs the proxy `cli` describes until SIGINT or SIGTERM; prints its
/// listening addresses on stdout.
pub async fn run(cli: Cli) -> ExitCode {
    let config = match cli.resolve() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("llmd-pd-proxy: {error}");
            return ExitCode::from(2);
        }
    };
    let telemetry = llmd_runtime::telemetry::init("llm-d-pd-proxy");
    let proxy = match Proxy::start(config).await {
        Ok(proxy) => proxy,
        Err(error) => {
            eprintln!("llmd-pd-proxy: {error}");
            return ExitCode::FAILURE;
        }
    };
    for address in proxy.addresses() {
        println!("llmd-pd-proxy listening on {address}");
    }
    wait_for_signal().await;
    proxy.shutdown().await;
    drop(telemetry);
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
