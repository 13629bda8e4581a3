//! The command line of `vllm-sim`. Flags mirror vLLM's where vLLM has
//! them; the timing flags and `--seed` follow llm-d's inference simulator.

use crate::config::{
    ConfigError, EventEncoding, KvEventsConfig, KvTransferConfig, SimConfig, Timing,
};
use clap::{Parser, ValueEnum};
use std::net::IpAddr;
use std::time::Duration;

/// `vllm-sim` flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "vllm-sim",
    about = "A vLLM server simulator with vLLM's API, metrics, KV events and spans"
)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// The model this server "serves".
    #[arg(long)]
    pub model: String,
    /// Names the API accepts for the model; the first is reported in
    /// responses and metrics (defaults to `--model`).
    #[arg(long, num_args = 1..)]
    pub served_model_name: Vec<String>,
    /// Tokens per KV-cache block.
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    /// Number of KV-cache blocks (vLLM: `--num-gpu-blocks-override`).
    #[arg(long, alias = "num-gpu-blocks-override", default_value_t = 2048)]
    pub num_gpu_blocks: usize,
    /// Maximum prompt plus output length of one request, in tokens.
    #[arg(long, default_value_t = 4096)]
    pub max_model_len: usize,
    /// Maximum number of requests running at once; others wait.
    #[arg(long, default_value_t = 256)]
    pub max_num_seqs: usize,
    /// Block hash function; only vLLM's portable `sha256_cbor` is supported.
    #[arg(long, value_enum, default_value_t = HashAlgo::Sha256Cbor)]
    pub prefix_caching_hash_algo: HashAlgo,
    /// vLLM's KV transfer config, e.g.
    /// `{"kv_connector":"NixlConnector","kv_role":"kv_both"}`.
    #[arg(long)]
    pub kv_transfer_config: Option<String>,
    /// vLLM's KV events config, e.g. `{"enable_kv_cache_events":true,
    /// "publisher":"zmq","endpoint":"tcp://*:5557","topic":"...","replay_endpoint":"tcp://*:5558"}`.
    #[arg(long)]
    pub kv_events_config: Option<String>,
    /// Encoding of each KV event: `map` (vLLM 0.24 and later) or `array`
    /// (positional, earlier vLLM).
    #[arg(long, value_enum, default_value_t = EventEncodingArg::Map)]
    pub kv_events_encoding: EventEncodingArg,
    /// OTLP endpoint for `llm_request` spans; no spans without it.
    #[arg(long)]
    pub otlp_traces_endpoint: Option<String>,
    /// Fixed part of the time to first token (e.g. `20ms`, `0.5s`; a bare
    /// number is milliseconds).
    #[arg(long, value_parser = parse_duration, default_value = "0")]
    pub time_to_first_token: Duration,
    /// Prefill cost of each prompt token not found in the prefix cache.
    #[arg(long, value_parser = parse_duration, default_value = "0")]
    pub prefill_time_per_token: Duration,
    /// Time between generated tokens.
    #[arg(long, value_parser = parse_duration, default_value = "0")]
    pub inter_token_latency: Duration,
    /// Tokens generated when a request sets no `max_tokens` (finish reason
    /// `stop`, as if the model produced end-of-sequence).
    #[arg(long, default_value_t = 16)]
    pub default_output_tokens: usize,
    /// Seed of the generated filler text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Supported `--prefix-caching-hash-algo` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HashAlgo {
    /// SHA-256 of canonical CBOR: portable across processes and languages.
    #[value(name = "sha256_cbor")]
    Sha256Cbor,
}

/// `--kv-events-encoding` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventEncodingArg {
    /// Each event is a map with a `type` key.
    Map,
    /// Each event is a positional array, tag first.
    Array,
}

impl Args {
    /// Validates the flags and turns them into a [`SimConfig`].
    pub fn into_config(self) -> Result<SimConfig, ConfigError> {
        let kv_transfer = self
            .kv_transfer_config
            .as_deref()
            .map(KvTransferConfig::from_json)
            .transpose()?;
        let kv_events = self
            .kv_events_config
            .as_deref()
            .map(KvEventsConfig::from_json)
            .transpose()?;
        let served_model_names = if self.served_model_name.is_empty() {
            vec![self.model.clone()]
        } else {
            self.served_model_name
        };
        let config = SimConfig {
            model: self.model,
            served_model_names,
            block_size: self.block_size,
            num_gpu_blocks: self.num_gpu_blocks,
            max_model_len: self.max_model_len,
            max_num_seqs: self.max_num_seqs,
            kv_transfer,
            kv_events,
            event_encoding: match self.kv_events_encoding {
                EventEncodingArg::Map => EventEncoding::Map,
                EventEncodingArg::Array => EventEncoding::Array,
            },
            timing: Timing {
                time_to_first_token: self.time_to_first_token,
                prefill_time_per_token: self.prefill_time_per_token,
                inter_token_latency: self.inter_token_latency,
            },
            default_output_tokens: self.default_output_tokens,
            seed: self.seed,
            trace_requests: self.otlp_traces_endpoint.is_some(),
        };
        config.validate()?;
        Ok(config)
    }
}

/// Parses `150ms`, `1.5s`, `200us` or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        (text, 1e-3)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration `{text}`: expected e.g. 20ms, 0.5s or 200us"))?;
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("invalid duration `{text}`: must be a non-negative, finite time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_bare_milliseconds() {
        assert_eq!(parse_duration("20ms"), Ok(Duration::from_millis(20)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_millis(7)));
        assert!(parse_duration("-1ms").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn flags_become_a_validated_config() {
        let args = Args::try_parse_from([
            "vllm-sim",
            "--model",
            "m",
            "--served-model-name",
            "a",
            "b",
            "--kv-transfer-config",
            r#"{"kv_connector":"NixlConnector","kv_role":"kv_producer"}"#,
            "--kv-events-config",
            r#"{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://127.0.0.1:0"}"#,
        ])
        .unwrap();
        let config = args.into_config().unwrap();
        assert_eq!(config.served_model_names, ["a", "b"]);
        assert!(config.kv_transfer.is_some());
        assert_eq!(config.kv_events.unwrap().endpoint, "tcp://127.0.0.1:0");
        assert!(!config.trace_requests);
    }

    #[test]
    fn unsupported_hash_algorithms_are_refused() {
        let parsed = Args::try_parse_from([
            "vllm-sim",
            "--model",
            "m",
            "--prefix-caching-hash-algo",
            "sha256",
        ]);
        assert!(parsed.is_err());
    }
}
