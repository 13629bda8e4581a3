//! `llmd-sim`: a simulator of a vLLM server, for tests and demos of tools
//! that sit in front of vLLM.
//!
//! It speaks vLLM's OpenAI API (`/v1/chat/completions`, `/v1/completions`,
//! streamed or not, `/v1/models`, `/tokenize`, `/health`) and `/metrics`
//! with vLLM's metric names; models a prefix cache with vLLM's
//! `sha256_cbor` block hashes and LRU eviction, publishing KV events over
//! ZMQ in vLLM's wire format; plays NIXL prefill and decode roles through
//! `kv_transfer_params`; and, with `--otlp-traces-endpoint`, emits vLLM's
//! `llm_request` span per finished request under the caller's
//! `traceparent`.
//!
//! Embedding it (e.g. in another crate's tests):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use llmd_sim::{SimConfig, SimServer};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = SimServer::start(SimConfig::new("my-model"), listener, |_| None).await?;
//! println!("vLLM simulator on {}", server.local_addr());
//! server.shutdown(llmd_runtime::shutdown::DRAIN_TIMEOUT).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod api;
pub mod cli;
pub mod config;
pub mod engine;
pub mod filler;
pub mod kv_events;
pub mod pd;
pub mod prefix_cache;
pub mod request_span;
pub mod run;
pub mod server;
pub mod template;
pub mod tokenizer;

pub use config::SimConfig;
pub use server::{SimServer, StartError};
