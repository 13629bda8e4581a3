//! The simulator's configuration, independent of how it was given (flags
//! or code), and the vLLM JSON configs it reads.

pub use llmd_kv_cache::events::Encoding as EventEncoding;
use serde::Deserialize;
use std::time::Duration;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A JSON config flag could not be parsed.
    #[error("invalid {flag}: {source}")]
    Json {
        /// The flag, e.g. `--kv-transfer-config`.
        flag: &'static str,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A value is out of range or unsupported.
    #[error("{0}")]
    Invalid(String),
}

/// Everything the simulator needs to run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The model name (`--model`).
    pub model: String,
    /// Names the API accepts; the first is reported.
    pub served_model_names: Vec<String>,
    /// Tokens per KV-cache block.
    pub block_size: usize,
    /// Number of KV-cache blocks.
    pub num_gpu_blocks: usize,
    /// Maximum prompt plus output tokens of one request.
    pub max_model_len: usize,
    /// Maximum number of running requests.
    pub max_num_seqs: usize,
    /// P/D role, when configured.
    pub kv_transfer: Option<KvTransferConfig>,
    /// KV event publishing (only when `enable_kv_cache_events` is set).
    pub kv_events: Option<KvEventsConfig>,
    /// Encoding of each published KV event.
    pub event_encoding: EventEncoding,
    /// Simulated latencies.
    pub timing: Timing,
    /// Tokens generated when a request sets no `max_tokens`.
    pub default_output_tokens: usize,
    /// Seed of the generated text.
    pub seed: u64,
    /// Whether to emit an `llm_request` span per finished request (vLLM
    /// does only when started with `--otlp-traces-endpoint`).
    pub trace_requests: bool,
}

impl SimConfig {
    /// A configuration with vLLM-like defaults for `model`, no P/D role,
    /// no KV events, no tracing and no simulated latency.
    pub fn new(model: impl Into<String>) -> SimConfig {
        let model = model.into();
        SimConfig {
            served_model_names: vec![model.clone()],
            model,
            block_size: 16,
            num_gpu_blocks: 2048,
            max_model_len: 4096,
            max_num_seqs: 256,
            kv_transfer: None,
            kv_events: None,
            event_encoding: EventEncoding::Map,
            timing: Timing::default(),
            default_output_tokens: 16,
            seed: 0,
            trace_requests: false,
        }
    }

    /// The model name reported in responses and metrics.
    pub fn served_model_name(&self) -> &str {
        self.served_model_names
            .first()
            .map_or(self.model.as_str(), String::as_str)
    }

    /// Checks the values that would make the simulator misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.block_size == 0 {
            return invalid("--block-size must be at least 1".into());
        }
        if self.max_num_seqs == 0 {
            return invalid("--max-num-seqs must be at least 1".into());
        }
        if self.max_model_len == 0 {
            return invalid("--max-model-len must be at least 1".into());
        }
        if self.num_gpu_blocks.saturating_mul(self.block_size) < self.max_model_len {
            return invalid(format!(
                "{} blocks of {} tokens cannot hold one request of --max-model-len {}",
                self.num_gpu_blocks, self.block_size, self.max_model_len
            ));
        }
        if self.served_model_names.iter().any(String::is_empty) || self.model.is_empty() {
            return invalid("model names must not be empty".into());
        }
        Ok(())
    }
}

/// Simulated latencies.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timing {
    /// Fixed part of the time to first token.
    pub time_to_first_token: Duration,
    /// Cost of each prompt token that is not cached.
    pub prefill_time_per_token: Duration,
    /// Time between generated tokens.
    pub inter_token_latency: Duration,
}

impl Timing {
    /// The prefill time of a request with `uncached_tokens` to compute.
    pub fn prefill(&self, uncached_tokens: usize) -> Duration {
        let per_token = self
            .prefill_time_per_token
            .saturating_mul(u32::try_from(uncached_tokens).unwrap_or(u32::MAX));
        self.time_to_first_token.saturating_add(per_token)
    }
}

/// vLLM's `--kv-transfer-config` (the fields the simulator uses).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct KvTransferConfig {
    /// Only `NixlConnector` is simulated.
    pub kv_connector: String,
    /// The role of this server.
    pub kv_role: KvRole,
    /// Engine id reported to decoders; a random one when absent, as in vLLM.
    #[serde(default)]
    pub engine_id: Option<String>,
}

/// `kv_role` of the KV transfer config.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KvRole {
    /// Prefill only.
    KvProducer,
    /// Decode only.
    KvConsumer,
    /// Either.
    KvBoth,
}

impl KvTransferConfig {
    /// Parses and checks the JSON of `--kv-transfer-config`.
    pub fn from_json(text: &str) -> Result<KvTransferConfig, ConfigError> {
        let config: KvTransferConfig =
            serde_json::from_str(text).map_err(|source| ConfigError::Json {
                flag: "--kv-transfer-config",
                source,
            })?;
        if config.kv_connector != "NixlConnector" {
            return Err(ConfigError::Invalid(format!(
                "--kv-transfer-config: connector {:?} is not simulated (only NixlConnector)",
                config.kv_connector
            )));
        }
        Ok(config)
    }
}

/// vLLM's `--kv-events-config`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct KvEventsConfig {
    /// Whether events are published at all.
    #[serde(default)]
    pub enable_kv_cache_events: bool,
    /// `zmq` (the default, as in recent vLLM) or `null` for none.
    #[serde(default = "default_publisher")]
    pub publisher: String,
    /// PUB endpoint: bound when it contains `*` (or is ipc/inproc),
    /// connected otherwise, as in vLLM.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// ROUTER endpoint answering replay requests.
    #[serde(default)]
    pub replay_endpoint: Option<String>,
    /// Number of past batches kept for replay.
    #[serde(default = "default_buffer_steps")]
    pub buffer_steps: usize,
    /// Topic frame; `kv@<host:port>@<model>` when absent or empty.
    #[serde(default)]
    pub topic: String,
}

fn default_publisher() -> String {
    "zmq".into()
}

fn default_endpoint() -> String {
    "tcp://*:5557".into()
}

fn default_buffer_steps() -> usize {
    10_000
}

impl KvEventsConfig {
    /// Whether events are to be published over ZMQ.
    pub fn publishes(&self) -> bool {
        self.enable_kv_cache_events && self.publisher == "zmq"
    }

    /// Parses and checks the JSON of `--kv-events-config`.
    pub fn from_json(text: &str) -> Result<KvEventsConfig, ConfigError> {
        let config: KvEventsConfig =
            serde_json::from_str(text).map_err(|source| ConfigError::Json {
                flag: "--kv-events-config",
                source,
            })?;
        if config.enable_kv_cache_events && !matches!(config.publisher.as_str(), "zmq" | "null") {
            return Err(ConfigError::Invalid(format!(
                "--kv-events-config: publisher {:?} is not supported (use \"zmq\" or \"null\")",
                config.publisher
            )));
        }
        Ok(config)
    }

    /// A config publishing on `endpoint` (and answering replays on
    /// `replay_endpoint`) with the default topic.
    pub fn zmq(endpoint: impl Into<String>, replay_endpoint: Option<String>) -> KvEventsConfig {
        KvEventsConfig {
            enable_kv_cache_events: true,
            publisher: "zmq".into(),
            endpoint: endpoint.into(),
            replay_endpoint,
            buffer_steps: default_buffer_steps(),
            topic: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_that_cannot_work_are_refused() {
        let mut config = SimConfig::new("m");
        assert!(config.validate().is_ok());
        config.num_gpu_blocks = 1;
        assert!(config.validate().is_err());
        let mut config = SimConfig::new("m");
        config.max_num_seqs = 0;
        assert!(config.validate().is_err());
    }

    #[test]
    fn kv_transfer_config_reads_vllm_json() {
        let c =
            KvTransferConfig::from_json(r#"{"kv_connector":"NixlConnector","kv_role":"kv_both"}"#)
                .unwrap();
        assert_eq!(c.kv_role, KvRole::KvBoth);
        assert!(
            KvTransferConfig::from_json(
                r#"{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}"#
            )
            .is_err()
        );
        assert!(
            KvTransferConfig::from_json(r#"{"kv_connector":"NixlConnector","kv_role":"boss"}"#)
                .is_err()
        );
    }

    #[test]
    fn kv_events_config_defaults_follow_vllm() {
        let c = KvEventsConfig::from_json(r#"{"enable_kv_cache_events":true}"#).unwrap();
        assert_eq!(c.endpoint, "tcp://*:5557");
        assert_eq!(c.replay_endpoint, None);
        assert!(c.publishes());
        let null =
            KvEventsConfig::from_json(r#"{"enable_kv_cache_events":true,"publisher":"null"}"#);
        assert!(!null.unwrap().publishes());
        assert!(
            KvEventsConfig::from_json(r#"{"enable_kv_cache_events":true,"publisher":"kafka"}"#)
                .is_err()
        );
    }

    #[test]
    fn prefill_time_grows_with_uncached_tokens() {
        let t = Timing {
            time_to_first_token: Duration::from_millis(10),
            prefill_time_per_token: Duration::from_millis(1),
            inter_token_latency: Duration::ZERO,
        };
        assert_eq!(t.prefill(0), Duration::from_millis(10));
        assert_eq!(t.prefill(5), Duration::from_millis(15));
    }
}
