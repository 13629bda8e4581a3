//! Command-line options of the `llmd-scheduler` binary.

use crate::gateway::DEFAULT_BODY_LIMIT;
use crate::metrics_scraper::ScrapeSettings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The usage text.
pub const USAGE: &str = "\
llmd-scheduler: llm-d endpoint picker and OpenAI gateway

USAGE: llmd-scheduler --pool FILE [OPTIONS]

  --pool FILE               endpoints (YAML: endpoints: [{address, model, labels, sidecarPort, kvEventsPort}])
  --config FILE             EndpointPickerConfig YAML (default: built-in prefix + queue + KV-utilisation)
  --listen ADDR             address to serve on (default 0.0.0.0:8080)
  --tokenizer MODEL=DIR     local tokenizer.json (+ tokenizer_config.json) for MODEL; repeatable
  --no-remote-tokenize      do not ask vLLM's /tokenize for models without a local tokenizer
  --metrics-interval-ms N   pod /metrics polling period (default 50)
  --metrics-timeout-ms N    pod /metrics timeout (default 500)
  --stale-after-ms N        age after which a pod's metrics are stale (default 2000)
  --body-limit BYTES        largest request body (default 16777216)
  --no-reload               do not reload the pool file when it changes
  --help                    this text

Tracing: the standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER, ...).";

/// Why the command line was rejected.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// `--help` was given.
    #[error("{USAGE}")]
    Help,
    /// An option is unknown.
    #[error("unknown option {0:?}\n\n{USAGE}")]
    Unknown(String),
    /// An option lacks its value.
    #[error("option {0} needs a value")]
    MissingValue(&'static str),
    /// An option's value does not parse.
    #[error("option {option}: invalid value {value:?}")]
    Invalid {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
    },
    /// `--pool` is missing.
    #[error("--pool FILE is required\n\n{USAGE}")]
    NoPool,
}

/// The parsed options.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The pool file.
    pub pool_file: PathBuf,
    /// The scheduler configuration file, if any.
    pub config_file: Option<PathBuf>,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Local tokenizers: model and directory.
    pub tokenizers: Vec<(String, PathBuf)>,
    /// Whether vLLM's `/tokenize` is used for other models.
    pub remote_tokenize: bool,
    /// Metrics polling.
    pub scrape: ScrapeSettings,
    /// Largest request body.
    pub body_limit: usize,
    /// Whether the pool file is reloaded on change.
    pub reload_pool: bool,
}

impl Options {
    /// Options with defaults for `pool_file`.
    pub fn new(pool_file: PathBuf) -> Options {
        Options {
            pool_file,
            config_file: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            tokenizers: Vec::new(),
            remote_tokenize: true,
            scrape: ScrapeSettings::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            reload_pool: true,
        }
    }
}

/// Parses the arguments (without the program name).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Options, CliError> {
    let mut args = args.into_iter();
    let mut pool = None;
    let mut options = Options::new(PathBuf::new());
    while let Some(arg) = args.next() {
        let mut value = |option: &'static str| args.next().ok_or(CliError::MissingValue(option));
        match arg.as_str() {
            "--help" | "-h" => return Err(CliError::Help),
            "--pool" => pool = Some(PathBuf::from(value("--pool")?)),
            "--config" => options.config_file = Some(PathBuf::from(value("--config")?)),
            "--listen" => options.listen = parsed("--listen", value("--listen")?)?,
            "--tokenizer" => {
                let spec = value("--tokenizer")?;
                let (model, dir) = spec
                    .split_once('=')
                    .filter(|(m, d)| !m.is_empty() && !d.is_empty())
                    .ok_or_else(|| CliError::Invalid {
                        option: "--tokenizer",
                        value: spec.clone(),
                    })?;
                options
                    .tokenizers
                    .push((model.to_owned(), PathBuf::from(dir)));
            }
            "--no-remote-tokenize" => options.remote_tokenize = false,
            "--metrics-interval-ms" => {
                options.scrape.interval =
                    millis("--metrics-interval-ms", value("--metrics-interval-ms")?)?
            }
            "--metrics-timeout-ms" => {
                options.scrape.timeout =
                    millis("--metrics-timeout-ms", value("--metrics-timeout-ms")?)?
            }
            "--stale-after-ms" => {
                options.scrape.stale_after = millis("--stale-after-ms", value("--stale-after-ms")?)?
            }
            "--body-limit" => options.body_limit = parsed("--body-limit", value("--body-limit")?)?,
            "--no-reload" => options.reload_pool = false,
            _ => return Err(CliError::Unknown(arg)),
        }
    }
    options.pool_file = pool.ok_or(CliError::NoPool)?;
    Ok(options)
}

fn parsed<T: std::str::FromStr>(option: &'static str, value: String) -> Result<T, CliError> {
    value
        .parse()
        .map_err(|_| CliError::Invalid { option, value })
}

fn millis(option: &'static str, value: String) -> Result<Duration, CliError> {
    match parsed::<u64>(option, value.clone())? {
        0 => Err(CliError::Invalid { option, value }),
        ms => Ok(Duration::from_millis(ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Options, CliError> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_every_option() {
        let o = args(&[
            "--pool",
            "p.yaml",
            "--config",
            "c.yaml",
            "--listen",
            "127.0.0.1:9",
            "--tokenizer",
            "m=/t",
            "--no-remote-tokenize",
            "--metrics-interval-ms",
            "10",
            "--body-limit",
            "5",
            "--no-reload",
        ])
        .unwrap();
        assert_eq!(o.pool_file, PathBuf::from("p.yaml"));
        assert_eq!(o.config_file, Some(PathBuf::from("c.yaml")));
        assert_eq!(o.listen.port(), 9);
        assert_eq!(o.tokenizers, [("m".to_owned(), PathBuf::from("/t"))]);
        assert!(!o.remote_tokenize && !o.reload_pool);
        assert_eq!(o.scrape.interval, Duration::from_millis(10));
        assert_eq!(o.body_limit, 5);
    }

    #[test]
    fn rejects_bad_command_lines() {
        assert_eq!(args(&[]), Err(CliError::NoPool));
        assert_eq!(args(&["--pool"]), Err(CliError::MissingValue("--pool")));
        assert_eq!(
            args(&["--pool", "p", "--frobnicate"]),
            Err(CliError::Unknown("--frobnicate".into()))
        );
        assert!(matches!(
            args(&["--pool", "p", "--tokenizer", "m"]),
            Err(CliError::Invalid { .. })
        ));
        assert!(matches!(
            args(&["--pool", "p", "--metrics-interval-ms", "0"]),
            Err(CliError::Invalid { .. })
        ));
    }
}
