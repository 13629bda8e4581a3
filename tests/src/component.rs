//! The hidden `component` subcommand: runs one component's process entry
//! point (the same function and command line as its own binary), so that
//! `llmd-stack` can start every component as a child process of its own
//! executable.

use clap::ValueEnum;
use std::ffi::OsString;
use std::io::Read;
use std::process::ExitCode;

/// A component the stack runs as a child process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Component {
    /// `llmd-scheduler`: the endpoint picker and OpenAI gateway.
    Scheduler,
    /// `llmd-pd-proxy`: the prefill/decode sidecar.
    PdProxy,
    /// `vllm-sim`: the vLLM simulator.
    VllmSim,
}

impl Component {
    /// The subcommand value naming the component.
    pub fn name(self) -> &'static str {
        match self {
            Component::Scheduler => "scheduler",
            Component::PdProxy => "pd-proxy",
            Component::VllmSim => "vllm-sim",
        }
    }

    /// The program name the component's own binary has (used in its
    /// command-line errors).
    fn program(self) -> &'static str {
        match self {
            Component::Scheduler => "llmd-scheduler",
            Component::PdProxy => "llmd-pd-proxy",
            Component::VllmSim => "vllm-sim",
        }
    }

    /// Runs the component with `args` (its own binary's arguments, without
    /// the program name) until it is stopped, as its binary would.
    pub fn run(self, args: Vec<OsString>) -> ExitCode {
        let argv = std::iter::once(OsString::from(self.program())).chain(args);
        match self {
            Component::VllmSim => {
                match <llmd_sim::cli::Args as clap::Parser>::try_parse_from(argv) {
                    Ok(args) => llmd_sim::run::run(args),
                    Err(error) => error.exit(),
                }
            }
            Component::PdProxy => match llmd_pd_proxy::Cli::from_args(argv) {
                Ok(cli) => block_on(self, llmd_pd_proxy::run::run(cli)),
                Err(error) => error.exit(),
            },
            Component::Scheduler => {
                let mut args = Vec::new();
                for arg in argv.skip(1) {
                    match arg.into_string() {
                        Ok(arg) => args.push(arg),
                        Err(bad) => {
                            eprintln!("llmd-scheduler: argument {bad:?} is not valid UTF-8");
                            return ExitCode::from(2);
                        }
                    }
                }
                block_on(self, llmd_scheduler::run::run(args))
            }
        }
    }
}

/// Runs `future` on a new multi-threaded runtime, as `#[tokio::main]` does.
fn block_on(component: Component, future: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(future),
        Err(error) => {
            eprintln!(
                "{}: cannot start the async runtime: {error}",
                component.program()
            );
            ExitCode::FAILURE
        }
    }
}

/// Exits the process as soon as its standard input reaches end of file:
/// the parent holds the other end of that pipe, so a parent that dies for
/// any reason (even SIGKILL) leaves no orphan behind.
pub fn exit_when_stdin_closes() {
    let watch = std::thread::Builder::new()
        .name("parent-watch".to_owned())
        .spawn(|| {
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            std::process::exit(0);
        });
    if let Err(error) = watch {
        eprintln!("cannot watch the parent process: {error}");
    }
}
