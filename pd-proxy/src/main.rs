//! The `llmd-pd-proxy` binary.

use clap::Parser;
use llmd_pd_proxy::Cli;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    llmd_pd_proxy::run::run(Cli::parse()).await
}
