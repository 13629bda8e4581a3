//! The command line (llm-d's flag names, so existing manifests keep
//! working) and the YAML configuration file with the same keys.
//!
//! Precedence: a flag given on the command line, then the configuration
//! (`--configuration` text, else `--configuration-file`), then the
//! environment variable llm-d reads for it (if any), then the default.
//!
//! Flags are read as Go's flag package reads them too (`-port=8000` for
//! `--port=8000`), since llm-d's sidecar was long parsed with it, and
//! llm-d's deprecated flags and logging flags are understood.

mod go_syntax;
mod log_flags;

use go_syntax::{go_bool, go_duration, go_style_flags};

pub use log_flags::{LogChoice, LogFlags, LogLevel};

use crate::config::{
    Config, ConfigError, InferencePool, KvConnector, ListenerTls, PoolGroup, UpstreamTls,
};
use clap::Parser;
use serde::Deserialize;
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The prefill/decode sidecar that sits beside a vLLM decode server.
///
/// Requests to /v1/chat/completions, /v1/completions and /v1/responses that
/// carry an `x-prefiller-host-port` header run a prefill leg on that
/// prefiller first; everything else goes to the local decoder unchanged.
#[derive(Debug, Default, Parser)]
#[command(name = "llmd-pd-proxy", version)]
pub struct Cli {
    /// Port the proxy listens on [default: 8000]. With --data-parallel-size N,
    /// ranks 1..N listen on the following ports.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// Port of the local vLLM decoder at localhost [default: 8001]. Rank i
    /// of a data-parallel decoder is on vllm-port + i. --model-server-port
    /// is llm-d's newer name for it.
    #[arg(long, visible_alias = "model-server-port", value_name = "PORT")]
    pub vllm_port: Option<u16>,

    /// Host of the local decoder [default: localhost].
    #[arg(long, value_name = "HOST")]
    pub decoder_host: Option<String>,

    /// Address the listeners bind [default: 0.0.0.0].
    #[arg(long, value_name = "IP")]
    pub bind_address: Option<IpAddr>,

    /// KV-transfer protocol between prefiller and decoder: nixlv2,
    /// shared-storage (lmcache is accepted as its old name) or sglang
    /// [default: nixlv2].
    #[arg(long, value_name = "NAME")]
    pub kv_connector: Option<String>,

    /// Deprecated: use --kv-connector.
    #[arg(long, value_name = "NAME")]
    pub connector: Option<String>,

    /// Refuse (403) prefill targets whose host is not in
    /// --allowed-prefill-hosts [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable_ssrf_protection: Option<bool>,

    /// Prefill hosts allowed when SSRF protection is on (comma-separated or
    /// repeated). An entry with a port allows only that host:port.
    #[arg(long, value_name = "HOST[,HOST...]", value_delimiter = ',')]
    pub allowed_prefill_hosts: Vec<String>,

    /// Serve TLS on the listener [default: true, as llm-d]. Use
    /// --secure-proxy=false for plain HTTP.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub secure_proxy: Option<bool>,

    /// Directory with tls.crt and tls.key for the listener; without it a
    /// self-signed certificate is made at startup.
    #[arg(long, value_name = "DIR")]
    pub cert_path: Option<PathBuf>,

    /// Upstreams to call over TLS: prefiller, decoder (comma-separated or
    /// repeated).
    #[arg(long, value_name = "STAGE[,STAGE]", value_delimiter = ',')]
    pub enable_tls: Vec<String>,

    /// Upstreams whose certificate is not verified: prefiller, decoder.
    #[arg(long, value_name = "STAGE[,STAGE]", value_delimiter = ',')]
    pub tls_insecure_skip_verify: Vec<String>,

    /// vLLM's --data-parallel-size: one listener and one decoder port per rank
    /// [default: 1].
    #[arg(long, value_name = "N")]
    pub data_parallel_size: Option<u16>,

    /// Largest request body the P/D routes accept, in bytes; larger gets 413
    /// [default: 33554432].
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,

    /// Retries of a prefill that failed to connect, timed out or answered
    /// 5xx [default: 2].
    #[arg(long, value_name = "N")]
    pub prefill_max_retries: Option<u32>,

    /// Pause before the first prefill retry, doubled before each further one
    /// [default: 100].
    #[arg(long, value_name = "MS", conflicts_with = "prefill_retry_backoff")]
    pub prefill_retry_backoff_ms: Option<u64>,

    /// --prefill-retry-backoff-ms as llm-d's sidecar takes it, a Go
    /// duration such as 200ms or 1.5s.
    #[arg(long, value_name = "DURATION")]
    pub prefill_retry_backoff: Option<String>,

    /// Time limit of one prefill attempt [default: 600].
    #[arg(long, value_name = "SECONDS")]
    pub prefill_timeout_seconds: Option<u64>,

    /// Time limit for opening a connection to a prefiller or the decoder,
    /// TLS handshake included [default: 30000, as llm-d's sidecar].
    #[arg(long, value_name = "MS")]
    pub connect_timeout_ms: Option<u64>,

    /// SGLang bootstrap port sent to both legs [default: 8998].
    #[arg(long, value_name = "PORT")]
    pub sglang_bootstrap_port: Option<u16>,

    /// Pick the prefill target at random among those the request's
    /// x-prefiller-host-port lists, instead of the first
    /// [env: ENABLE_PREFILLER_SAMPLING] [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable_prefiller_sampling: Option<bool>,

    /// Idle kept-alive connections kept per upstream (the decoder, each
    /// prefiller); set it to at least the expected concurrency
    /// [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_idle_conns_per_host: Option<usize>,

    /// The InferencePool (namespace/name, or name in the default namespace)
    /// whose pods are the prefill targets allowed under SSRF protection,
    /// each pod's IP and name on each of the pool's target ports
    /// [env: INFERENCE_POOL]. The pool and its pods are watched through the
    /// Kubernetes API with the pod's service account (which needs get,
    /// list and watch on pods and inferencepools in the pool's namespace).
    #[arg(long, value_name = "[NAMESPACE/]NAME")]
    pub inference_pool: Option<String>,

    /// Deprecated: use --inference-pool [env: INFERENCE_POOL_NAMESPACE].
    #[arg(long, value_name = "NAMESPACE")]
    pub inference_pool_namespace: Option<String>,

    /// Deprecated: use --inference-pool [env: INFERENCE_POOL_NAME].
    #[arg(long, value_name = "NAME")]
    pub inference_pool_name: Option<String>,

    /// API group of the InferencePool: inference.networking.k8s.io (v1) or
    /// the deprecated inference.networking.x-k8s.io (v1alpha2)
    /// [default: inference.networking.k8s.io].
    #[arg(long, value_name = "GROUP")]
    pub pool_group: Option<String>,

    /// Deprecated: use --enable-tls=prefiller.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub prefiller_use_tls: Option<bool>,

    /// Deprecated: use --enable-tls=decoder.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub decoder_use_tls: Option<bool>,

    /// Deprecated: use --tls-insecure-skip-verify=prefiller.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub prefiller_tls_insecure_skip_verify: Option<bool>,

    /// Deprecated: use --tls-insecure-skip-verify=decoder.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub decoder_tls_insecure_skip_verify: Option<bool>,

    /// llm-d's logging flags.
    #[command(flatten)]
    pub logging: LogFlags,

    /// Configuration as YAML text, with the long flag names as keys.
    #[arg(long, value_name = "YAML", conflicts_with = "configuration_file")]
    pub configuration: Option<String>,

    /// Configuration file (YAML, the long flag names as keys); unknown keys
    /// are an error.
    #[arg(long, value_name = "PATH")]
    pub configuration_file: Option<PathBuf>,
}

/// The configuration file: the same keys as the long flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    port: Option<u16>,
    #[serde(alias = "model-server-port")]
    vllm_port: Option<u16>,
    decoder_host: Option<String>,
    bind_address: Option<IpAddr>,
    kv_connector: Option<String>,
    connector: Option<String>,
    enable_ssrf_protection: Option<bool>,
    allowed_prefill_hosts: Option<StringList>,
    secure_proxy: Option<bool>,
    cert_path: Option<PathBuf>,
    enable_tls: Option<StringList>,
    tls_insecure_skip_verify: Option<StringList>,
    data_parallel_size: Option<u16>,
    max_body_bytes: Option<usize>,
    prefill_max_retries: Option<u32>,
    prefill_retry_backoff_ms: Option<u64>,
    prefill_retry_backoff: Option<String>,
    prefill_timeout_seconds: Option<u64>,
    connect_timeout_ms: Option<u64>,
    sglang_bootstrap_port: Option<u16>,
    enable_prefiller_sampling: Option<bool>,
    max_idle_conns_per_host: Option<usize>,
    inference_pool: Option<String>,
    pool_group: Option<String>,
    prefiller_use_tls: Option<bool>,
    decoder_use_tls: Option<bool>,
    prefiller_tls_insecure_skip_verify: Option<bool>,
    decoder_tls_insecure_skip_verify: Option<bool>,
}

/// What a command line resolves to.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The proxy's configuration.
    pub config: Config,
    /// What the logging flags ask of the logger.
    pub logging: LogChoice,
    /// Warnings about the configuration (deprecated flags, settings with no
    /// effect), to log once the logger is installed.
    pub notices: Vec<String>,
}

/// A list given either as a YAML sequence or as one comma-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringList {
    List(Vec<String>),
    Joined(String),
}

impl StringList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringList::List(items) => items,
            StringList::Joined(text) => text.split(',').map(str::to_owned).collect(),
        }
    }
}

impl Cli {
    /// Parses `args` (the program name first) as the binary does: Go-style
    /// single-dash long flags (`-vllm-port=8001`) are read as their
    /// double-dash form.
    pub fn from_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        Cli::try_parse_from(go_style_flags(args))
    }

    /// Resolves the command line, the configuration it names, the
    /// environment and the defaults into a validated [`Config`], with what
    /// the logging flags ask and the warnings to log.
    pub fn resolve(self) -> Result<Resolved, ConfigError> {
        self.resolve_with_env(|name| std::env::var(name).ok())
    }

    /// [`Cli::resolve`], with environment variables read through `lookup`
    /// (an empty value counts as unset).
    pub fn resolve_with_env(
        self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Resolved, ConfigError> {
        let file = match (&self.configuration, &self.configuration_file) {
            (Some(text), _) => parse_file(text)?,
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                parse_file(&text)?
            }
            (None, None) => FileConfig::default(),
        };
        let env = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let logging = self.logging.resolve()?;
        let mut notices = Vec::new();
        let config = self.merge(file, &env, &mut notices)?;
        Ok(Resolved {
            config,
            logging,
            notices,
        })
    }

    fn merge(
        self,
        file: FileConfig,
        env: &dyn Fn(&str) -> Option<String>,
        notices: &mut Vec<String>,
    ) -> Result<Config, ConfigError> {
        let defaults = Config::defaults();
        let list = |cli: Vec<String>, file: Option<StringList>| -> Vec<String> {
            let items = if cli.is_empty() {
                file.map(StringList::into_vec).unwrap_or_default()
            } else {
                cli
            };
            items
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };

        let connector_name = self
            .kv_connector
            .or(self.connector)
            .or(file.kv_connector)
            .or(file.connector);
        let connector = match connector_name {
            Some(name) => KvConnector::parse(&name)?,
            None => defaults.connector,
        };

        let ssrf = self
            .enable_ssrf_protection
            .or(file.enable_ssrf_protection)
            .unwrap_or(false);
        let allowed = list(self.allowed_prefill_hosts, file.allowed_prefill_hosts);
        let allowed_prefill_hosts = if ssrf {
            Some(allowed)
        } else {
            if !allowed.is_empty() {
                notices.push(
                    "allowed-prefill-hosts is set but enable-ssrf-protection is off: not enforced"
                        .to_owned(),
                );
            }
            None
        };
        let inference_pool = inference_pool(
            self.inference_pool.or(file.inference_pool),
            self.inference_pool_namespace,
            self.inference_pool_name,
            env,
        )?;
        let inference_pool = match (inference_pool, self.pool_group.or(file.pool_group)) {
            (Some(pool), Some(group)) => Some(InferencePool {
                group: PoolGroup::parse(&group)?,
                ..pool
            }),
            (pool, _) => pool,
        };
        let prefiller_sampling = match self
            .enable_prefiller_sampling
            .or(file.enable_prefiller_sampling)
        {
            Some(sampling) => sampling,
            None => match env("ENABLE_PREFILLER_SAMPLING") {
                Some(text) => go_bool(&text).ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "ENABLE_PREFILLER_SAMPLING={text:?}: expected true or false"
                    ))
                })?,
                None => false,
            },
        };

        let cert_path = self.cert_path.or(file.cert_path);
        let listener_tls = if self.secure_proxy.or(file.secure_proxy).unwrap_or(true) {
            match cert_path {
                Some(dir) => ListenerTls::CertDir(dir),
                None => ListenerTls::SelfSigned,
            }
        } else {
            ListenerTls::Off
        };

        let mut deprecated =
            |flag: &str, cli: Option<bool>, file: Option<bool>, list_on_cli: bool| {
                if cli.is_some() || file.is_some() {
                    notices.push(format!("{flag} is deprecated: use {}", replacement(flag)));
                }
                // As llm-d: the file's value counts only when the list that
                // replaces the flag is not on the command line.
                cli.or(file.filter(|_| !list_on_cli)).unwrap_or(false)
            };
        let tls_on_cli = !self.enable_tls.is_empty();
        let skip_on_cli = !self.tls_insecure_skip_verify.is_empty();
        let prefiller_use_tls = deprecated(
            "prefiller-use-tls",
            self.prefiller_use_tls,
            file.prefiller_use_tls,
            tls_on_cli,
        );
        let decoder_use_tls = deprecated(
            "decoder-use-tls",
            self.decoder_use_tls,
            file.decoder_use_tls,
            tls_on_cli,
        );
        let prefiller_skip_verify = deprecated(
            "prefiller-tls-insecure-skip-verify",
            self.prefiller_tls_insecure_skip_verify,
            file.prefiller_tls_insecure_skip_verify,
            skip_on_cli,
        );
        let decoder_skip_verify = deprecated(
            "decoder-tls-insecure-skip-verify",
            self.decoder_tls_insecure_skip_verify,
            file.decoder_tls_insecure_skip_verify,
            skip_on_cli,
        );
        let enable_tls = Stages::parse("enable-tls", list(self.enable_tls, file.enable_tls))?;
        let skip_verify = Stages::parse(
            "tls-insecure-skip-verify",
            list(self.tls_insecure_skip_verify, file.tls_insecure_skip_verify),
        )?;

        let retry = defaults.prefill_retry;
        let config = Config {
            bind_address: self
                .bind_address
                .or(file.bind_address)
                .unwrap_or(defaults.bind_address),
            port: self.port.or(file.port).unwrap_or(defaults.port),
            decoder_host: self
                .decoder_host
                .or(file.decoder_host)
                .unwrap_or(defaults.decoder_host),
            vllm_port: self
                .vllm_port
                .or(file.vllm_port)
                .unwrap_or(defaults.vllm_port),
            connector,
            allowed_prefill_hosts,
            listener_tls,
            inference_pool,
            prefiller_sampling,
            max_idle_conns_per_host: self
                .max_idle_conns_per_host
                .or(file.max_idle_conns_per_host)
                .unwrap_or(defaults.max_idle_conns_per_host),
            prefiller_tls: UpstreamTls {
                enabled: enable_tls.prefiller || prefiller_use_tls,
                insecure_skip_verify: skip_verify.prefiller || prefiller_skip_verify,
            },
            decoder_tls: UpstreamTls {
                enabled: enable_tls.decoder || decoder_use_tls,
                insecure_skip_verify: skip_verify.decoder || decoder_skip_verify,
            },
            data_parallel_size: self
                .data_parallel_size
                .or(file.data_parallel_size)
                .unwrap_or(defaults.data_parallel_size),
            max_body_bytes: self
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(defaults.max_body_bytes),
            prefill_retry: crate::config::RetryPolicy {
                max_retries: self
                    .prefill_max_retries
                    .or(file.prefill_max_retries)
                    .unwrap_or(retry.max_retries),
                backoff: retry_backoff(
                    (self.prefill_retry_backoff_ms, self.prefill_retry_backoff),
                    (file.prefill_retry_backoff_ms, file.prefill_retry_backoff),
                )?
                .unwrap_or(retry.backoff),
                attempt_timeout: self
                    .prefill_timeout_seconds
                    .or(file.prefill_timeout_seconds)
                    .map(Duration::from_secs)
                    .unwrap_or(retry.attempt_timeout),
            },
            connect_timeout: self
                .connect_timeout_ms
                .or(file.connect_timeout_ms)
                .map(Duration::from_millis)
                .unwrap_or(defaults.connect_timeout),
            sglang_bootstrap_port: self
                .sglang_bootstrap_port
                .or(file.sglang_bootstrap_port)
                .unwrap_or(defaults.sglang_bootstrap_port),
        };
        config.validate()?;
        Ok(config)
    }
}

/// The prefill retry backoff from the command line (milliseconds, or a Go
/// duration), else from the file (either key, not both).
fn retry_backoff(
    cli: (Option<u64>, Option<String>),
    file: (Option<u64>, Option<String>),
) -> Result<Option<Duration>, ConfigError> {
    let read = |(millis, duration): (Option<u64>, Option<String>)| match (millis, duration) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid(
            "prefill-retry-backoff-ms and prefill-retry-backoff: give one".into(),
        )),
        (Some(millis), None) => Ok(Some(Duration::from_millis(millis))),
        (None, Some(text)) => go_duration(&text).map(Some).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "prefill-retry-backoff {text:?}: expected a duration such as 200ms, 1.5s or 1m"
            ))
        }),
        (None, None) => Ok(None),
    };
    Ok(read(cli)?.or(read(file)?))
}

/// The flag that replaces a deprecated one.
fn replacement(flag: &str) -> &'static str {
    match flag {
        "prefiller-use-tls" => "enable-tls=prefiller",
        "decoder-use-tls" => "enable-tls=decoder",
        "prefiller-tls-insecure-skip-verify" => "tls-insecure-skip-verify=prefiller",
        _ => "tls-insecure-skip-verify=decoder",
    }
}

/// The InferencePool named by `--inference-pool` (or the file, or
/// `INFERENCE_POOL`), else by the deprecated namespace and name flags (or
/// `INFERENCE_POOL_NAMESPACE` and `INFERENCE_POOL_NAME`), as llm-d reads it.
fn inference_pool(
    pool: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<InferencePool>, ConfigError> {
    if let Some(pool) = pool.or_else(|| env("INFERENCE_POOL")) {
        return InferencePool::parse(&pool).map(Some);
    }
    let namespace = namespace.or_else(|| env("INFERENCE_POOL_NAMESPACE"));
    let name = name.or_else(|| env("INFERENCE_POOL_NAME"));
    match (namespace, name) {
        (Some(namespace), Some(name)) if !namespace.contains('/') => {
            InferencePool::parse(&format!("{namespace}/{name}")).map(Some)
        }
        (Some(_), Some(_)) => Err(ConfigError::Invalid(
            "inference-pool-namespace cannot contain a slash".into(),
        )),
        // One without the other names no pool (a deployment may set the
        // namespace variable for every container).
        _ => Ok(None),
    }
}

fn parse_file(text: &str) -> Result<FileConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    Ok(serde_yaml_ng::from_str(text)?)
}

/// Which upstream stages a TLS list names.
#[derive(Default)]
struct Stages {
    prefiller: bool,
    decoder: bool,
}

impl Stages {
    fn parse(flag: &str, names: Vec<String>) -> Result<Stages, ConfigError> {
        let mut stages = Stages::default();
        for name in names {
            match name.as_str() {
                "prefiller" => stages.prefiller = true,
                "decoder" => stages.decoder = true,
                other => {
                    return Err(ConfigError::Invalid(format!(
                        "{flag}: unknown stage {other:?}, expected prefiller or decoder"
                    )));
                }
            }
        }
        Ok(stages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: &[&str]) -> Result<Config, ConfigError> {
        resolve_in(args, &[]).map(|resolved| resolved.config)
    }

    /// Resolves `args` with only the environment variables `env` set.
    fn resolve_in(args: &[&str], env: &[(&str, &str)]) -> Result<Resolved, ConfigError> {
        let mut argv = vec!["llmd-pd-proxy"];
        argv.extend_from_slice(args);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        Cli::from_args(argv)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?
            .resolve_with_env(|name| {
                env.iter()
                    .find(|(set, _)| set == name)
                    .map(|(_, value)| value.clone())
            })
    }

    #[test]
    fn defaults_match_llm_d() {
        let c = resolve(&[]).unwrap();
        assert_eq!((c.port, c.vllm_port), (8000, 8001));
        assert_eq!(c.connector, KvConnector::NixlV2);
        assert_eq!(c.listener_tls, ListenerTls::SelfSigned);
        assert_eq!(c.allowed_prefill_hosts, None);
    }

    #[test]
    fn llm_d_flags_are_understood() {
        let c = resolve(&[
            "--port=9000",
            "--vllm-port",
            "9001",
            "--connector",
            "lmcache",
            "--enable-ssrf-protection",
            "--allowed-prefill-hosts",
            "10.0.0.1, 10.0.0.2",
            "--secure-proxy=false",
            "--enable-tls",
            "prefiller,decoder",
            "--tls-insecure-skip-verify=decoder",
            "--data-parallel-size",
            "2",
        ])
        .unwrap();
        assert_eq!((c.port, c.vllm_port), (9000, 9001));
        assert_eq!(c.connector, KvConnector::SharedStorage);
        assert_eq!(
            c.allowed_prefill_hosts,
            Some(vec!["10.0.0.1".into(), "10.0.0.2".into()])
        );
        assert_eq!(c.listener_tls, ListenerTls::Off);
        assert!(c.prefiller_tls.enabled && !c.prefiller_tls.insecure_skip_verify);
        assert!(c.decoder_tls.enabled && c.decoder_tls.insecure_skip_verify);
        assert_eq!(c.data_parallel_size, 2);
    }

    #[test]
    fn kv_connector_wins_over_deprecated_alias() {
        let c = resolve(&["--kv-connector", "sglang", "--connector", "nixlv2"]).unwrap();
        assert_eq!(c.connector, KvConnector::SgLang);
    }

    #[test]
    fn configuration_text_fills_what_flags_do_not_set() {
        let yaml = "port: 7000\nvllm-port: 7001\nkv-connector: sglang\nenable-tls: [prefiller]\nallowed-prefill-hosts: a,b\nenable-ssrf-protection: true\n";
        let c = resolve(&["--configuration", yaml, "--port", "7500"]).unwrap();
        assert_eq!((c.port, c.vllm_port), (7500, 7001));
        assert_eq!(c.connector, KvConnector::SgLang);
        assert!(c.prefiller_tls.enabled);
        assert_eq!(c.allowed_prefill_hosts, Some(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn configuration_file_with_unknown_key_is_an_error() {
        let dir = std::env::temp_dir().join(format!("pd-proxy-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.yaml");
        std::fs::write(&path, "port: 1\nno-such-key: 2\n").unwrap();
        let err = resolve(&["--configuration-file", path.to_str().unwrap()]).unwrap_err();
        assert!(err.to_string().contains("no-such-key"), "{err}");
        let missing = resolve(&["--configuration-file", "/nonexistent/pd.yaml"]).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(resolve(&["--kv-connector", "nixl"]).is_err());
        assert!(resolve(&["--enable-tls", "encoder"]).is_err());
        assert!(resolve(&["--enable-ssrf-protection"]).is_err());
        assert!(resolve(&["--port", "x"]).is_err());
        assert!(resolve(&["--connect-timeout-ms", "0"]).is_err());
        assert!(resolve(&["--prefill-timeout-seconds", "0"]).is_err());
    }

    #[test]
    fn connect_timeout_comes_from_the_flag_the_file_or_the_default() {
        let default = resolve(&[]).unwrap();
        assert_eq!(default.connect_timeout, Duration::from_secs(30));
        let from_file = resolve(&["--configuration", "connect-timeout-ms: 1500\n"]).unwrap();
        assert_eq!(from_file.connect_timeout, Duration::from_millis(1500));
        let from_flag = resolve(&[
            "--configuration",
            "connect-timeout-ms: 1500\n",
            "--connect-timeout-ms=250",
        ])
        .unwrap();
        assert_eq!(from_flag.connect_timeout, Duration::from_millis(250));
    }

    #[test]
    fn single_dash_flags_resolve_as_their_double_dash_form() {
        let c = resolve(&[
            "-port=9000",
            "-vllm-port",
            "9001",
            "-connector=sglang",
            "-secure-proxy=false",
        ])
        .unwrap();
        assert_eq!((c.port, c.vllm_port), (9000, 9001));
        assert_eq!(c.connector, KvConnector::SgLang);
        assert_eq!(c.listener_tls, ListenerTls::Off);
    }

    /// The arguments llm-d-modelservice's chart renders for the routing
    /// proxy: the older chart always passes `-v=5`, the newer the zap flags.
    #[test]
    fn the_llm_d_charts_arguments_are_understood() {
        let older = [
            "--port=8000",
            "--vllm-port=8200",
            "--connector=nixlv2",
            "-v=5",
            "--secure-proxy=false",
            "--prefiller-use-tls=true",
            "--cert-path=/etc/certs",
        ];
        let resolved = resolve_in(&older, &[]).unwrap();
        assert_eq!(resolved.config.vllm_port, 8200);
        assert!(resolved.config.prefiller_tls.enabled);
        assert_eq!(resolved.logging.level, Some(LogLevel::Trace));
        assert_eq!(
            resolved.notices,
            ["prefiller-use-tls is deprecated: use enable-tls=prefiller"]
        );
        let newer = [
            "--port=8000",
            "--vllm-port=8200",
            "--connector=nixlv2",
            "--zap-devel=false",
            "--zap-encoder=json",
            "--zap-log-level=debug",
            "--zap-stacktrace-level=error",
            "--zap-time-encoding=iso8601",
            "--secure-proxy=true",
        ];
        let resolved = resolve_in(&newer, &[]).unwrap();
        assert_eq!(resolved.logging.level, Some(LogLevel::Debug));
        assert_eq!(
            resolved.logging.format,
            Some(llmd_runtime::telemetry::LogFormat::Json)
        );
        assert!(resolved.notices.is_empty());
    }

    #[test]
    fn deprecated_tls_flags_add_their_stage() {
        let resolved = resolve_in(
            &[
                "--decoder-use-tls",
                "--decoder-tls-insecure-skip-verify=true",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            resolved.config.decoder_tls,
            UpstreamTls {
                enabled: true,
                insecure_skip_verify: true
            }
        );
        assert!(!resolved.config.prefiller_tls.enabled);
        assert_eq!(resolved.notices.len(), 2, "{:?}", resolved.notices);
        let yaml = "prefiller-use-tls: true\nprefiller-tls-insecure-skip-verify: true\n";
        let from_file = resolve(&["--configuration", yaml]).unwrap();
        assert!(from_file.prefiller_tls.enabled && from_file.prefiller_tls.insecure_skip_verify);
        let overridden = resolve(&["--configuration", yaml, "--enable-tls=decoder"]).unwrap();
        assert!(
            !overridden.prefiller_tls.enabled && overridden.decoder_tls.enabled,
            "as in llm-d, --enable-tls on the command line replaces the file's deprecated keys"
        );
        assert!(overridden.prefiller_tls.insecure_skip_verify);
        let off = resolve(&["--prefiller-use-tls=false", "--enable-tls=prefiller"]).unwrap();
        assert!(
            off.prefiller_tls.enabled,
            "false never removes a listed stage"
        );
    }

    #[test]
    fn prefiller_sampling_comes_from_the_flag_the_file_or_the_environment() {
        let sampling = |args: &[&str], env: &[(&str, &str)]| {
            resolve_in(args, env).map(|resolved| resolved.config.prefiller_sampling)
        };
        assert!(!sampling(&[], &[]).unwrap());
        assert!(sampling(&["--enable-prefiller-sampling"], &[]).unwrap());
        assert!(sampling(&[], &[("ENABLE_PREFILLER_SAMPLING", "True")]).unwrap());
        assert!(!sampling(&[], &[("ENABLE_PREFILLER_SAMPLING", "")]).unwrap());
        let env = [("ENABLE_PREFILLER_SAMPLING", "1")];
        assert!(!sampling(&["--enable-prefiller-sampling=false"], &env).unwrap());
        let file = ["--configuration", "enable-prefiller-sampling: false\n"];
        assert!(!sampling(&file, &env).unwrap());
        let bad = sampling(&[], &[("ENABLE_PREFILLER_SAMPLING", "sometimes")]).unwrap_err();
        assert!(
            bad.to_string().contains("ENABLE_PREFILLER_SAMPLING"),
            "{bad}"
        );
    }

    #[test]
    fn the_inference_pool_is_read_as_llm_d_reads_it() {
        let pool = |args: &[&str], env: &[(&str, &str)]| {
            resolve_in(args, env)
                .map(|resolved| resolved.config.inference_pool.map(|p| p.to_string()))
        };
        assert_eq!(pool(&[], &[]).unwrap(), None);
        assert_eq!(
            pool(&["--inference-pool=team/pool"], &[])
                .unwrap()
                .as_deref(),
            Some("team/pool")
        );
        assert_eq!(
            pool(&[], &[("INFERENCE_POOL", "pool")]).unwrap().as_deref(),
            Some("default/pool")
        );
        let separate = [
            "--inference-pool-namespace=team",
            "--inference-pool-name=pool",
        ];
        assert_eq!(pool(&separate, &[]).unwrap().as_deref(), Some("team/pool"));
        let env = [
            ("INFERENCE_POOL_NAMESPACE", "team"),
            ("INFERENCE_POOL_NAME", "pool"),
        ];
        assert_eq!(pool(&[], &env).unwrap().as_deref(), Some("team/pool"));
        let namespace_only = [("INFERENCE_POOL_NAMESPACE", "team")];
        assert_eq!(
            pool(&[], &namespace_only).unwrap(),
            None,
            "half a name is no pool"
        );
        assert!(
            pool(
                &["--inference-pool-namespace=a/b", "--inference-pool-name=c"],
                &[]
            )
            .is_err()
        );
        assert!(pool(&["--inference-pool=a/b/c"], &[]).is_err());
    }

    #[test]
    fn ssrf_protection_takes_the_pool_its_group_and_the_static_hosts() {
        let guarded = [
            "--enable-ssrf-protection",
            "--inference-pool=team/pool",
            "--pool-group=inference.networking.x-k8s.io",
        ];
        let resolved = resolve_in(&guarded, &[]).unwrap();
        assert!(resolved.notices.is_empty(), "{:?}", resolved.notices);
        let config = resolved.config;
        let pool = config.inference_pool.unwrap();
        assert_eq!(
            (pool.namespace.as_str(), pool.name.as_str(), pool.group),
            ("team", "pool", PoolGroup::V1Alpha2)
        );
        assert_eq!(config.allowed_prefill_hosts, Some(vec![]));
        let default_group = resolve(&guarded[..2]).unwrap().inference_pool.unwrap();
        assert_eq!(default_group.group, PoolGroup::V1);
        let bad_group = resolve(&["--inference-pool=p", "--pool-group=example.com"]).unwrap_err();
        assert!(bad_group.to_string().contains("pool-group"), "{bad_group}");
        let neither = resolve(&["--enable-ssrf-protection"])
            .unwrap_err()
            .to_string();
        assert!(
            neither.contains("needs an InferencePool (inference-pool) or at least one host"),
            "{neither}"
        );
        let both = resolve(&[
            "--enable-ssrf-protection",
            "--inference-pool=pool",
            "--allowed-prefill-hosts=10.0.0.1",
        ])
        .unwrap();
        assert_eq!(
            both.allowed_prefill_hosts,
            Some(vec!["10.0.0.1".to_owned()])
        );
        assert!(both.inference_pool.is_some());
    }

    #[test]
    fn max_idle_connections_come_from_the_flag_the_file_or_the_default() {
        assert_eq!(resolve(&[]).unwrap().max_idle_conns_per_host, 1024);
        let from_file = resolve(&["--configuration", "max-idle-conns-per-host: 64\n"]).unwrap();
        assert_eq!(from_file.max_idle_conns_per_host, 64);
        let from_flag = resolve(&["--max-idle-conns-per-host=8"]).unwrap();
        assert_eq!(from_flag.max_idle_conns_per_host, 8);
        assert!(resolve(&["--max-idle-conns-per-host=0"]).is_err());
    }

    #[test]
    fn an_allowlist_without_ssrf_protection_is_a_notice() {
        let resolved = resolve_in(&["--allowed-prefill-hosts=10.0.0.1"], &[]).unwrap();
        assert_eq!(resolved.config.allowed_prefill_hosts, None);
        assert_eq!(
            resolved.notices,
            ["allowed-prefill-hosts is set but enable-ssrf-protection is off: not enforced"]
        );
    }

    #[test]
    fn llm_ds_newer_flag_names_are_understood() {
        let c = resolve(&["--model-server-port=8200", "--prefill-retry-backoff=200ms"]).unwrap();
        assert_eq!(c.vllm_port, 8200);
        assert_eq!(c.prefill_retry.backoff, Duration::from_millis(200));
        let yaml = "model-server-port: 8300\nprefill-retry-backoff: 1s\n";
        let c = resolve(&["--configuration", yaml]).unwrap();
        assert_eq!(c.vllm_port, 8300);
        assert_eq!(c.prefill_retry.backoff, Duration::from_secs(1));
        let c = resolve(&["--configuration", yaml, "--prefill-retry-backoff-ms=5"]).unwrap();
        assert_eq!(
            c.prefill_retry.backoff,
            Duration::from_millis(5),
            "the flag wins"
        );
        assert!(resolve(&["--prefill-retry-backoff=soon"]).is_err());
        assert!(resolve(&["--prefill-retry-backoff=1s", "--prefill-retry-backoff-ms=5"]).is_err());
        let both = "prefill-retry-backoff: 1s\nprefill-retry-backoff-ms: 5\n";
        assert!(resolve(&["--configuration", both]).is_err());
    }
}
