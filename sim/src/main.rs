//! `vllm-sim`: the vLLM simulator binary.

use clap::Parser;
use llmd_sim::cli::Args;
use std::process::ExitCode;

fn main() -> ExitCode {
    llmd_sim::run::run(Args::parse())
}
