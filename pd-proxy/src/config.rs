//! The resolved configuration of the proxy: what the command line and the
//! configuration file add up to, validated.

use llmd_runtime::AttributeEnum;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The KV-transfer protocol spoken between prefiller and decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvConnector {
    /// vLLM NixlConnector: prefill with `kv_transfer_params`, then decode
    /// with the prefiller's `kv_transfer_params`.
    NixlV2,
    /// Shared storage (formerly `lmcache`): prefill with token limits 1,
    /// then decode the original request.
    SharedStorage,
    /// SGLang: one body with bootstrap fields sent to both, the prefill
    /// fired asynchronously.
    SgLang,
}

impl KvConnector {
    /// Parses a connector name as llm-d accepts it (`lmcache` is the old
    /// name of `shared-storage`).
    pub fn parse(name: &str) -> Result<KvConnector, ConfigError> {
        match name.trim() {
            "nixlv2" => Ok(KvConnector::NixlV2),
            "shared-storage" | "lmcache" => Ok(KvConnector::SharedStorage),
            "sglang" => Ok(KvConnector::SgLang),
            other => Err(ConfigError::Invalid(format!(
                "unknown KV connector {other:?}: expected nixlv2, shared-storage (or lmcache) or sglang"
            ))),
        }
    }
}

impl AttributeEnum for KvConnector {
    fn label(&self) -> &'static str {
        match self {
            KvConnector::NixlV2 => "nixlv2",
            KvConnector::SharedStorage => "shared-storage",
            KvConnector::SgLang => "sglang",
        }
    }
}

/// Where the listener's certificate comes from when `--secure-proxy` is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerTls {
    /// Plain HTTP.
    Off,
    /// `tls.crt` and `tls.key` in this directory.
    CertDir(PathBuf),
    /// A self-signed certificate made at startup.
    SelfSigned,
}

/// TLS settings of one upstream (prefillers or the decoder).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Use `https`.
    pub enabled: bool,
    /// Accept any server certificate.
    pub insecure_skip_verify: bool,
}

/// The InferencePool whose pods are the prefill targets allowed under
/// SSRF protection (`--inference-pool`), as llm-d's sidecar takes them:
/// the pool and its pods are watched through the Kubernetes API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InferencePool {
    /// Its namespace (`default` when only a name is given).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The API it is read from (`--pool-group`).
    pub group: PoolGroup,
}

/// The API group (and its version) an InferencePool is read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PoolGroup {
    /// `inference.networking.k8s.io/v1`, the Gateway API Inference
    /// Extension's GA API: `spec.selector.matchLabels`,
    /// `spec.targetPorts[].number`.
    #[default]
    V1,
    /// `inference.networking.x-k8s.io/v1alpha2`, the deprecated alpha API
    /// older llm-d releases read: `spec.selector`, `spec.targetPortNumber`.
    V1Alpha2,
}

impl PoolGroup {
    /// The group named by `--pool-group`.
    pub fn parse(text: &str) -> Result<PoolGroup, ConfigError> {
        match text {
            "inference.networking.k8s.io" => Ok(PoolGroup::V1),
            "inference.networking.x-k8s.io" => Ok(PoolGroup::V1Alpha2),
            other => Err(ConfigError::Invalid(format!(
                "pool-group {other:?}: expected inference.networking.k8s.io or \
                 inference.networking.x-k8s.io"
            ))),
        }
    }

    /// The API group.
    pub fn group(self) -> &'static str {
        match self {
            PoolGroup::V1 => "inference.networking.k8s.io",
            PoolGroup::V1Alpha2 => "inference.networking.x-k8s.io",
        }
    }

    /// The version of the group that is read.
    pub fn version(self) -> &'static str {
        match self {
            PoolGroup::V1 => "v1",
            PoolGroup::V1Alpha2 => "v1alpha2",
        }
    }
}

impl InferencePool {
    /// Parses `namespace/name`, or `name` in the `default` namespace, as
    /// llm-d does.
    pub fn parse(text: &str) -> Result<InferencePool, ConfigError> {
        let (namespace, name) = text.split_once('/').unwrap_or(("default", text));
        if name.contains('/') {
            return Err(ConfigError::Invalid(format!(
                "inference-pool {text:?}: expected namespace/name or name, not several slashes"
            )));
        }
        if namespace.is_empty() || name.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "inference-pool {text:?}: the namespace and the name cannot be empty"
            )));
        }
        Ok(InferencePool {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            group: PoolGroup::default(),
        })
    }
}

impl std::fmt::Display for InferencePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Retry policy of the prefill leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (connection failures, timeouts, 5xx).
    pub max_retries: u32,
    /// Pause before the first retry; doubled before each further one.
    pub backoff: Duration,
    /// Time limit of one prefill attempt.
    pub attempt_timeout: Duration,
}

/// The proxy's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Address the listeners bind (port 0 picks a free port, for tests).
    pub bind_address: IpAddr,
    /// Port of the first listener; data-parallel rank `i` listens on `port + i`.
    pub port: u16,
    /// Host of the local decoder (`localhost` in a pod).
    pub decoder_host: String,
    /// Port of the local decoder; rank `i` is on `vllm_port + i`.
    pub vllm_port: u16,
    /// The KV connector.
    pub connector: KvConnector,
    /// `Some(hosts)` when SSRF protection is on: the prefill hosts allowed
    /// besides the InferencePool's pods.
    pub allowed_prefill_hosts: Option<Vec<String>>,
    /// The InferencePool whose pods are allowed as prefill targets when
    /// SSRF protection is on (watched only then).
    pub inference_pool: Option<InferencePool>,
    /// Pick the prefill target at random among those the request names,
    /// instead of the first (`--enable-prefiller-sampling`).
    pub prefiller_sampling: bool,
    /// Idle kept-alive connections kept per upstream origin.
    pub max_idle_conns_per_host: usize,
    /// TLS of the listener.
    pub listener_tls: ListenerTls,
    /// TLS towards prefillers.
    pub prefiller_tls: UpstreamTls,
    /// TLS towards the decoder.
    pub decoder_tls: UpstreamTls,
    /// vLLM's `--data-parallel-size`: number of decoder ranks.
    pub data_parallel_size: u16,
    /// Largest request body the P/D handler parses, in bytes.
    pub max_body_bytes: usize,
    /// Prefill retries.
    pub prefill_retry: RetryPolicy,
    /// Time limit for opening a connection to an upstream (TCP, and the
    /// TLS handshake towards an HTTPS upstream).
    pub connect_timeout: Duration,
    /// SGLang bootstrap port put in the bootstrap fields.
    pub sglang_bootstrap_port: u16,
}

impl Config {
    /// The defaults of every setting (llm-d's, where llm-d has one).
    pub fn defaults() -> Config {
        Config {
            bind_address: IpAddr::from([0, 0, 0, 0]),
            port: 8000,
            decoder_host: "localhost".to_owned(),
            vllm_port: 8001,
            connector: KvConnector::NixlV2,
            allowed_prefill_hosts: None,
            inference_pool: None,
            prefiller_sampling: false,
            max_idle_conns_per_host: llmd_runtime::http::DEFAULT_MAX_IDLE,
            listener_tls: ListenerTls::SelfSigned,
            prefiller_tls: UpstreamTls::default(),
            decoder_tls: UpstreamTls::default(),
            data_parallel_size: 1,
            max_body_bytes: 32 * 1024 * 1024,
            prefill_retry: RetryPolicy {
                max_retries: 2,
                backoff: Duration::from_millis(100),
                attempt_timeout: Duration::from_secs(600),
            },
            // What llm-d's sidecar gets from Go's default transport.
            connect_timeout: Duration::from_secs(30),
            sglang_bootstrap_port: 8998,
        }
    }

    /// Checks settings that are valid one by one but not together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_parallel_size == 0 {
            return Err(ConfigError::Invalid(
                "data-parallel-size must be at least 1".into(),
            ));
        }
        let last_rank = self.data_parallel_size - 1;
        if self.port != 0 && self.port.checked_add(last_rank).is_none() {
            return Err(ConfigError::Invalid(
                "port + data-parallel-size exceeds 65535".into(),
            ));
        }
        if self.vllm_port.checked_add(last_rank).is_none() {
            return Err(ConfigError::Invalid(
                "vllm-port + data-parallel-size exceeds 65535".into(),
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::Invalid(
                "max-body-bytes must be positive".into(),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "connect-timeout-ms must be positive".into(),
            ));
        }
        if self.prefill_retry.attempt_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "prefill-timeout-seconds must be positive".into(),
            ));
        }
        if self.max_idle_conns_per_host == 0 {
            return Err(ConfigError::Invalid(
                "max-idle-conns-per-host must be at least 1".into(),
            ));
        }
        if matches!(&self.allowed_prefill_hosts, Some(hosts) if hosts.is_empty())
            && self.inference_pool.is_none()
        {
            return Err(ConfigError::Invalid(
                "enable-ssrf-protection needs an InferencePool (inference-pool) or at least \
                 one host in allowed-prefill-hosts"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value or combination of values is not valid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The configuration file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration YAML is malformed or has unknown keys.
    #[error("invalid configuration YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_names_follow_llm_d() {
        assert_eq!(KvConnector::parse("nixlv2").ok(), Some(KvConnector::NixlV2));
        assert_eq!(
            KvConnector::parse("lmcache").ok(),
            Some(KvConnector::SharedStorage)
        );
        assert_eq!(
            KvConnector::parse("shared-storage").ok(),
            Some(KvConnector::SharedStorage)
        );
        assert_eq!(KvConnector::parse("sglang").ok(), Some(KvConnector::SgLang));
        assert!(KvConnector::parse("nixl").is_err());
    }

    #[test]
    fn inference_pools_are_named_as_llm_d_names_them() {
        let pool = InferencePool::parse("team/pool").unwrap();
        assert_eq!(
            (pool.namespace.as_str(), pool.name.as_str()),
            ("team", "pool")
        );
        assert_eq!(
            InferencePool::parse("pool").unwrap().to_string(),
            "default/pool"
        );
        for bad in ["a/b/c", "/pool", "team/", ""] {
            assert!(InferencePool::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ssrf_protection_needs_a_pool_or_hosts() {
        let mut c = Config::defaults();
        c.allowed_prefill_hosts = Some(vec![]);
        let error = c.validate().unwrap_err().to_string();
        assert!(error.contains("needs an InferencePool"), "{error}");
        c.inference_pool = Some(InferencePool::parse("team/pool").unwrap());
        assert!(c.validate().is_ok());
        for group in [
            "inference.networking.k8s.io",
            "inference.networking.x-k8s.io",
        ] {
            let parsed = PoolGroup::parse(group).unwrap();
            assert_eq!(parsed.group(), group);
        }
        assert_eq!(PoolGroup::V1.version(), "v1");
        assert_eq!(PoolGroup::V1Alpha2.version(), "v1alpha2");
        assert!(PoolGroup::parse("inference.networking.k8s.io/v1").is_err());
    }

    #[test]
    fn validation_rejects_impossible_combinations() {
        assert!(Config::defaults().validate().is_ok());
        let mut c = Config::defaults();
        c.data_parallel_size = 0;
        assert!(c.validate().is_err());
        let mut c = Config::defaults();
        c.vllm_port = 65535;
        c.data_parallel_size = 2;
        assert!(c.validate().is_err());
        let mut c = Config::defaults();
        c.allowed_prefill_hosts = Some(vec![]);
        assert!(c.validate().is_err());
        let mut c = Config::defaults();
        c.connect_timeout = Duration::ZERO;
        assert!(c.validate().is_err());
        let mut c = Config::defaults();
        c.max_idle_conns_per_host = 0;
        assert!(c.validate().is_err());
        let mut c = Config::defaults();
        c.prefill_retry.attempt_timeout = Duration::ZERO;
        assert!(c.validate().is_err());
    }
}
