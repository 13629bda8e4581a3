//! `llmd-scheduler`: the llm-d endpoint picker and the gateway that uses it.
//!
//! - [`pool`]: the endpoints, read from a file, with their live load.
//! - [`metrics_scraper`]: polls each pod's vLLM `/metrics`.
//! - [`config`]: the llm-d `EndpointPickerConfig` file.
//! - [`plugins`]: filters, scorers, picker, P/D profile handler and decider.
//! - [`scheduler`]: one scheduling cycle over the configured profiles.
//! - [`kv_index`]: the KV block index behind the prefix scorer, fed by
//!   every pod's KV events.
//! - [`tokenize`]: prompt tokenization, local or by vLLM.
//! - [`gateway`]: the HTTP gateway.
//! - [`app`], [`cli`] and [`run`]: the `llmd-scheduler` binary's assembly,
//!   options and process.

#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod kv_index;
pub mod metrics_scraper;
pub mod plugins;
pub mod pool;
pub mod run;
pub mod scheduler;
pub mod tokenize;
