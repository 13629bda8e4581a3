//! The `llmd-pd-proxy` process: telemetry, listeners, signals; what the
//! binary's `main` runs, public so that other binaries can run a proxy
//! process with the same command line.

use crate::{Cli, Proxy};
use llmd_runtime::telemetry::TelemetryConfig;
use std::process::ExitCode;

/// Runs the proxy `cli` describes (telemetry from the `OTEL_*` variables,
/// the logger from the logging flags unless `RUST_LOG` or `LOG_FORMAT` say
/// otherwise) until SIGINT or SIGTERM, then lets the requests in flight
/// finish (up to [`llmd_runtime::shutdown::DRAIN_TIMEOUT`]); prints its
/// listening addresses on stdout.
pub async fn run(cli: Cli) -> ExitCode {
    let resolved = match cli.resolve() {
        Ok(resolved) => resolved,
        Err(error) => {
            eprintln!("llmd-pd-proxy: {error}");
            return ExitCode::from(2);
        }
    };
    let mut telemetry_config = TelemetryConfig::from_env("llm-d-pd-proxy");
    resolved
        .logging
        .apply(&mut telemetry_config.logging, |name| {
            std::env::var(name).ok()
        });
    let telemetry = llmd_runtime::telemetry::init_with(telemetry_config);
    for notice in &resolved.notices {
        tracing::warn!("{notice}");
    }
    let config = resolved.config;
    let mut stopping = std::pin::pin!(llmd_runtime::shutdown::signal());
    // Starting may wait for an InferencePool's first listing: a signal
    // meanwhile ends the process, as nothing is served yet.
    let started = tokio::select! {
        started = Proxy::start(config) => started,
        () = &mut stopping => return ExitCode::SUCCESS,
    };
    let proxy = match started {
        Ok(proxy) => proxy,
        Err(error) => {
            eprintln!("llmd-pd-proxy: {error}");
            return ExitCode::FAILURE;
        }
    };
    for address in proxy.addresses() {
        println!("llmd-pd-proxy listening on {address}");
    }
    stopping.await;
    let drain = llmd_runtime::shutdown::DRAIN_TIMEOUT;
    llmd_runtime::shutdown::warn_unless_drained(proxy.shutdown(drain).await, drain);
    drop(telemetry);
    ExitCode::SUCCESS
}
