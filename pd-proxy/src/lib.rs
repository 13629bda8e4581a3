//! `llmd-pd-proxy`: the prefill/decode sidecar that sits beside a vLLM
//! decode server, compatible on the wire with llm-d's `pd-sidecar`.
//!
//! A request to an OpenAI inference route that carries
//! `x-prefiller-host-port` runs a prefill leg on that prefiller and then
//! the decode leg on the local decoder, as the configured KV connector
//! defines them (`nixlv2`, `shared-storage`, `sglang`); any other request
//! goes to the decoder unchanged. Every request is traced
//! (`llm_d.pd_proxy.request`, with `llm_d.pd_proxy.prefill` and
//! `llm_d.pd_proxy.decode` children) and every outbound call carries the
//! calling span's W3C context, so vLLM's `llm_request` spans nest under them.
//!
//! ```no_run
//! # async fn run() -> Result<(), llmd_pd_proxy::StartError> {
//! let mut config = llmd_pd_proxy::Config::defaults();
//! config.listener_tls = llmd_pd_proxy::config::ListenerTls::Off;
//! let proxy = llmd_pd_proxy::Proxy::start(config).await?;
//! println!("listening on {}", proxy.address());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod connectors;
pub mod decode;
pub mod errors;
pub mod handler;
pub mod json_body;
pub mod passthrough;
pub mod pool;
pub mod prefill;
pub mod request;
pub mod routes;
pub mod run;
pub mod server;
pub mod sse;
pub mod state;
pub mod stop;
pub mod target;
pub mod tls;
pub mod upstream;

pub use cli::Cli;
pub use config::{Config, KvConnector};
pub use errors::ProxyError;
pub use server::{Proxy, StartError};
