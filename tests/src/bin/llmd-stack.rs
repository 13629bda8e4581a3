//! `llmd-stack`: the whole llm-d stack on this machine with one command.
//!
//! ```text
//! cargo run --release -p llmd-tests --bin llmd-stack            # demo, exit 0 if all is well
//! cargo run --release -p llmd-tests --bin llmd-stack -- --serve # keep serving, print traces
//! ```
//!
//! Starts an OTLP gRPC receiver, one prefill and two decode simulated vLLM
//! pods, a pd-proxy beside each decode pod and the scheduler gateway, each
//! a child process of this executable (the hidden `component` subcommand).
//! Sampling follows `OTEL_TRACES_SAMPLER(_ARG)` (default
//! `parentbased_traceidratio` at 1.0). With `OTEL_EXPORTER_OTLP_ENDPOINT`
//! set, what the receiver gets is also forwarded to that collector.

use clap::{Parser, Subcommand};
use llmd_runtime::testing::otlp_receiver::OtlpReceiver;
use llmd_tests::component::{self, Component};
use llmd_tests::forward::{Destination, Forwarder};
use llmd_tests::sampling::Sampling;
use llmd_tests::stack::{self, SimLatency, Stack, StackOptions, Tracing};
use llmd_tests::{demo, serve};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The local llm-d stack: scheduler gateway, pd-proxies and simulated vLLM
/// pods as real processes, every request traced end to end.
///
/// Without --serve: sends a few chat requests (decode only, P/D over NIXL
/// v2, a prefix-cache hit, streamed and not), prints each trace as a tree
/// and exits 0 only if every request succeeded with the expected trace.
///
/// Sampling: OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default
/// parentbased_traceidratio, 1.0). With OTEL_EXPORTER_OTLP_ENDPOINT (and
/// the other OTEL_EXPORTER_OTLP_* variables) set, every span is also
/// forwarded to that collector.
#[derive(Debug, Parser)]
#[command(name = "llmd-stack", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Keep the stack running, print its endpoints and each trace as it
    /// completes; Ctrl-C (or SIGTERM) stops it.
    #[arg(long)]
    serve: bool,

    /// Gateway port on 127.0.0.1 [default: 8080 with --serve, else a free
    /// one]; 0 picks a free one.
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,

    /// The model the pods serve.
    #[arg(long, default_value = stack::DEFAULT_MODEL)]
    model: String,

    /// Number of decode pods (each with its pd-proxy).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
    decode_pods: u16,

    /// The P/D decider's nonCachedTokens: prompts with at least this many
    /// uncached tokens (whitespace-separated words) go through the prefill
    /// pod.
    #[arg(long, default_value_t = stack::DEFAULT_NON_CACHED_TOKENS as u64, value_parser = clap::value_parser!(u64).range(1..=2048))]
    non_cached_tokens: u64,

    /// Directory for the components' logs and configuration files (kept);
    /// default: a temporary directory removed at exit.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one component (used by the stack for its child processes).
    #[command(hide = true)]
    Component {
        /// The component.
        component: Component,
        /// Exit when standard input closes (the parent went away).
        #[arg(long)]
        exit_when_stdin_closes: bool,
        /// The component's own arguments, after `--`.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Component {
            component,
            exit_when_stdin_closes,
            args,
        }) => {
            if exit_when_stdin_closes {
                component::exit_when_stdin_closes();
            }
            component.run(args)
        }
        None => match run_stack(&cli) {
            Ok(code) => code,
            Err(error) => {
                eprintln!("llmd-stack: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run_stack(cli: &Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let env = |name: &str| std::env::var(name).ok();
    let mut out = std::io::stdout();
    writeln!(out, "llmd-stack: starting the local llm-d stack")?;
    let destination = Destination::from_lookup(env);
    // Request bodies are kept only for the forwarder, which takes them;
    // `--serve` takes the spans as it prints them, so a long session does
    // not pile anything up.
    let receiver = Arc::new(if cli.serve && destination.is_none() {
        OtlpReceiver::start_keeping_spans()?
    } else {
        OtlpReceiver::start()?
    });
    writeln!(
        out,
        "  · OTLP receiver (gRPC) on {}",
        receiver.grpc_endpoint()
    )?;
    let sampling = Sampling::from_lookup(env);
    writeln!(
        out,
        "  · sampling: OTEL_TRACES_SAMPLER={} OTEL_TRACES_SAMPLER_ARG={}",
        sampling.sampler, sampling.arg
    )?;
    let forwarder = match destination {
        Some(destination) => {
            writeln!(
                out,
                "  · forwarding every span to {} ({})",
                destination.settings.endpoint, destination.settings.protocol
            )?;
            Some(Forwarder::start(receiver.clone(), destination)?)
        }
        None => None,
    };
    let options = StackOptions {
        model: cli.model.clone(),
        decode_pods: usize::from(cli.decode_pods),
        gateway_port: cli.port.unwrap_or(if cli.serve {
            stack::DEFAULT_SERVE_PORT
        } else {
            0
        }),
        non_cached_tokens: usize::try_from(cli.non_cached_tokens)?,
        latency: SimLatency::DEMO,
        log_dir: cli.log_dir.clone(),
        ..StackOptions::new(
            std::env::current_exe()?,
            Tracing::Otlp {
                endpoint: receiver.grpc_endpoint(),
                sampling: sampling.clone(),
            },
        )
    };
    let mut stack = Stack::start(options, &mut |line| println!("  · {line}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let passed = if cli.serve {
        let stopping = {
            let _inside = runtime.enter();
            llmd_runtime::shutdown::signal()
        };
        serve::print_endpoints(&stack, &receiver, &mut out)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        runtime.spawn(async move {
            stopping.await;
            flag.store(true, Ordering::Relaxed);
        });
        serve::print_traces(&receiver, &stop, &mut out)?;
        writeln!(out, "\nstopping the stack")?;
        true
    } else {
        let run_id = format!("demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let passed = demo::run(
            &stack,
            &receiver,
            &runtime,
            sampling.samples_everything(),
            &run_id,
            &mut out,
        )?;
        if let Err(error) = stack.check_running() {
            writeln!(out, "\n✗ {error}")?;
            return Ok(ExitCode::FAILURE);
        }
        if passed {
            writeln!(
                out,
                "\n✓ every request succeeded and every trace has the expected shape"
            )?;
        } else {
            stack.keep_logs();
            writeln!(
                out,
                "\n✗ some requests or traces were not as expected; component logs kept in {}",
                stack.log_dir().display()
            )?;
        }
        passed
    };
    drop(stack);
    if let Some(forwarder) = forwarder {
        let stats = forwarder.stats();
        drop(forwarder);
        writeln!(
            out,
            "forwarded {} export requests to the collector ({} failed, {} dropped)",
            stats.forwarded(),
            stats.failed(),
            stats.dropped()
        )?;
        if let Some(reason) = stats.first_failure() {
            writeln!(out, "  the first failure: {reason}")?;
        }
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
