//! `llmd-tests`: the whole llm-d stack on one machine, as real processes,
//! and what it takes to look at its traces.
//!
//! - [`component`]: the hidden `llmd-stack component <name> -- <args>`
//!   subcommand; runs one component crate's process entry point, so that
//!   every child is a separate process built from this package alone.
//! - [`process`]: one component child process (log file, reported
//!   addresses, stopped on drop).
//! - [`stack`]: the stack: a prefill and N decode simulated vLLM pods, a
//!   pd-proxy beside each decode pod, and the scheduler gateway, with KV
//!   events flowing into the scheduler's index and spans exported over OTLP
//!   gRPC.
//! - [`sampling`]: the `OTEL_TRACES_SAMPLER(_ARG)` the children get.
//! - [`client`]: an OpenAI chat client for the gateway.
//! - [`trace_tree`], [`shape`] and [`collect`]: received spans as trees,
//!   the tree each request path must produce, and waiting for it.
//! - [`demo`]: the requests `llmd-stack` sends and what it prints.
//! - [`forward`]: re-export of what the embedded receiver got to the
//!   user's own collector.
//! - [`serve`]: `llmd-stack --serve`.
//!
//! ```no_run
//! use llmd_runtime::testing::otlp_receiver::OtlpReceiver;
//! use llmd_tests::stack::{Stack, StackOptions, Tracing};
//! use llmd_tests::sampling::Sampling;
//!
//! let receiver = OtlpReceiver::start()?;
//! let tracing = Tracing::Otlp {
//!     endpoint: receiver.grpc_endpoint(),
//!     sampling: Sampling::ratio(1.0),
//! };
//! let options = StackOptions::new(std::env::current_exe()?, tracing);
//! let stack = Stack::start(options, &mut |line| println!("{line}"))?;
//! println!("gateway on {}", stack.gateway_url());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod client;
pub mod collect;
pub mod component;
pub mod demo;
pub mod forward;
pub mod process;
pub mod sampling;
pub mod serve;
pub mod shape;
pub mod stack;
pub mod trace_tree;
