//! The `llmd-scheduler` process: telemetry, the app, its listener and the
//! stop signals (SIGINT, SIGTERM); what the binary's `main` runs, public so
//! that other binaries can run a scheduler process with the same command
//! line.

use crate::app::App;
use crate::cli::{CliError, parse_args};
use std::process::ExitCode;

/// Runs the scheduler the arguments (without the program name) describe
/// until SIGINT or SIGTERM, then lets the requests in flight finish (up to
/// [`llmd_runtime::shutdown::DRAIN_TIMEOUT`]); prints its listening
/// address on stdout.
pub async fn run(args: impl IntoIterator<Item = String>) -> ExitCode {
    let options = match parse_args(args) {
        Ok(options) => options,
        Err(CliError::Help) => {
            println!("{}", crate::cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("llmd-scheduler: {error}");
            return ExitCode::from(2);
        }
    };
    let telemetry = llmd_runtime::telemetry::init("llm-d-scheduler");
    let app = match App::start(&options) {
        Ok(app) => app,
        Err(error) => {
            eprintln!("llmd-scheduler: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(options.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "llmd-scheduler: cannot listen on {}: {error}",
                options.listen
            );
            return ExitCode::FAILURE;
        }
    };
    let stopping = llmd_runtime::shutdown::signal();
    match listener.local_addr() {
        Ok(address) => println!("llmd-scheduler listening on {address}"),
        Err(error) => tracing::warn!(%error, "listening address unknown"),
    }
    tracing::info!(listen = %options.listen, "llmd-scheduler serving");
    let drain = llmd_runtime::shutdown::DRAIN_TIMEOUT;
    let outcome = app
        .serve_until(listener, async move {
            stopping.await;
            drain
        })
        .await;
    if let Ok(drained) = outcome {
        llmd_runtime::shutdown::warn_unless_drained(drained, drain);
    }
    drop(app);
    drop(telemetry);
    match outcome {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("llmd-scheduler: {error}");
            ExitCode::FAILURE
        }
    }
}
