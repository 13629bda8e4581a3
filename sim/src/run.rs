//! The `vllm-sim` process: telemetry, server, signals; what the binary's
//! `main` runs, public so that other binaries can run a simulator process
//! with the same command line.

use crate::SimServer;
use crate::cli::Args;
use llmd_runtime::telemetry::{self, TelemetryConfig, TelemetryGuard};
use std::net::SocketAddr;
use std::process::ExitCode;

/// Runs a simulator as `args` say until SIGINT or SIGTERM, then lets the
/// requests in flight finish (up to
/// [`llmd_runtime::shutdown::DRAIN_TIMEOUT`]); prints its listening
/// addresses on stdout.
pub fn run(args: Args) -> ExitCode {
    let telemetry = init_telemetry(args.otlp_traces_endpoint.as_deref());
    let addr = SocketAddr::new(args.host, args.port);
    let config = match args.into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("vllm-sim: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("vllm-sim: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let server = SimServer::start(config, listener, |name| std::env::var(name).ok()).await?;
        let stopping = llmd_runtime::shutdown::signal();
        // Startup lines on stdout, for whoever started the process on port 0.
        println!("vllm-sim listening on {}", server.local_addr());
        if let Some(events) = server.kv_events() {
            println!("vllm-sim kv events on {}", events.events);
            if let Some(replay) = &events.replay {
                println!("vllm-sim kv events replay on {replay}");
            }
        }
        stopping.await;
        let drain = llmd_runtime::shutdown::DRAIN_TIMEOUT;
        llmd_runtime::shutdown::warn_unless_drained(server.shutdown(drain).await?, drain);
        Ok::<_, Box<dyn std::error::Error>>(())
    });
    drop(telemetry);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vllm-sim: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Logging always; span export only with `--otlp-traces-endpoint` (as in
/// vLLM), to that endpoint, as service `vllm` unless `OTEL_SERVICE_NAME`
/// says otherwise.
fn init_telemetry(otlp_endpoint: Option<&str>) -> TelemetryGuard {
    let mut config = TelemetryConfig::from_lookup("vllm", |name| match (name, otlp_endpoint) {
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", Some(endpoint)) => Some(endpoint.to_owned()),
        ("OTEL_TRACES_EXPORTER", Some(_)) => Some("otlp".to_owned()),
        _ => std::env::var(name).ok(),
    });
    config.disabled = config.disabled || otlp_endpoint.is_none();
    telemetry::init_with(config)
}
