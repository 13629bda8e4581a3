//! The `llmd-pd-proxy` binary.
//!
//! With one CPU (a sidecar's usual share, or a pinned process) the proxy
//! runs on a current-thread runtime: the same work without the
//! multi-thread scheduler's bookkeeping (work stealing, idle-worker
//! wake-ups, poll-time statistics), about 2,000 instructions per request.
//! With more CPUs, tokio's multi-thread runtime, one worker per CPU
//! (`TOKIO_WORKER_THREADS` overrides).

use llmd_pd_proxy::Cli;
use std::process::ExitCode;
use tokio::runtime::Builder;

fn main() -> ExitCode {
    let cli = Cli::from_args(std::env::args_os()).unwrap_or_else(|error| error.exit());
    let one_cpu = std::thread::available_parallelism().is_ok_and(|cpus| cpus.get() == 1);
    let mut builder = if one_cpu {
        Builder::new_current_thread()
    } else {
        Builder::new_multi_thread()
    };
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(llmd_pd_proxy::run::run(cli)),
        Err(error) => {
            eprintln!("llmd-pd-proxy: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}
