//! `llmd-scheduler`: serves the OpenAI API in front of a pool of vLLM pods,
//! routing each request with the llm-d endpoint picker.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    llmd_scheduler::run::run(std::env::args().skip(1)).await
}
