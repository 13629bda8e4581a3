//! The command line (llm-d's flag names, so existing manifests keep
//! working) and the YAML configuration file with the same keys.
//!
//! Precedence: a flag given on the command line, then the configuration
//! (`--configuration` text, else `--configuration-file`), then the default.

use crate::config::{Config, ConfigError, KvConnector, ListenerTls, UpstreamTls};
use clap::Parser;
use serde::Deserialize;
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
    /// of a data-parallel decoder is on vllm-port + i.
    #[arg(long, value_name = "PORT")]
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
    #[arg(long, value_name = "MS")]
    pub prefill_retry_backoff_ms: Option<u64>,

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
    prefill_timeout_seconds: Option<u64>,
    connect_timeout_ms: Option<u64>,
    sglang_bootstrap_port: Option<u16>,
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
    /// Resolves the command line, the configuration it names and the
    /// defaults into a validated [`Config`].
    pub fn resolve(self) -> Result<Config, ConfigError> {
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
        self.merge(file)
    }

    fn merge(self, file: FileConfig) -> Result<Config, ConfigError> {
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
                tracing::warn!(
                    "allowed-prefill-hosts is set but enable-ssrf-protection is off: not enforced"
                );
            }
            None
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
            prefiller_tls: UpstreamTls {
                enabled: enable_tls.prefiller,
                insecure_skip_verify: skip_verify.prefiller,
            },
            decoder_tls: UpstreamTls {
                enabled: enable_tls.decoder,
                insecure_skip_verify: skip_verify.decoder,
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
                backoff: self
                    .prefill_retry_backoff_ms
                    .or(file.prefill_retry_backoff_ms)
                    .map(Duration::from_millis)
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
        let mut argv = vec!["llmd-pd-proxy"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?
            .resolve()
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
}
