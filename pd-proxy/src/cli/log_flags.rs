//! llm-d's logging flags: controller-runtime's zap options, which llm-d's
//! sidecar binds, and klog's `-v`, which older llm-d charts pass
//! (`-v=5`), mapped onto this project's logger.
//!
//! `RUST_LOG` and `LOG_FORMAT` are this project's own settings: when set,
//! they win over these flags.

use crate::config::ConfigError;
use clap::Args;
use llmd_runtime::telemetry::{LogFormat, LogSettings};

/// The crates whose records the debug and trace levels raise; the
/// libraries under them (hyper, h2, rustls) stay at info, as a Go
/// binary's verbosity leaves the standard library quiet.
const OWN_CRATES: [&str; 2] = ["llmd_pd_proxy", "llmd_runtime"];

/// The logging flags of llm-d's sidecar.
#[derive(Clone, Debug, Default, Args)]
pub struct LogFlags {
    /// klog's verbosity, which older llm-d charts pass: 0 to 3 info, 4
    /// debug, 5 and above trace, for the proxy's own records [default:
    /// info]. RUST_LOG, when set, wins.
    #[arg(short = 'v', long = "v", value_name = "N")]
    pub verbosity: Option<u8>,

    /// zap's level, as llm-d's sidecar takes it: debug, info, error, or an
    /// integer above 0 read as a -v verbosity. Wins over -v; RUST_LOG, when
    /// set, wins over both.
    #[arg(long, value_name = "LEVEL")]
    pub zap_log_level: Option<String>,

    /// zap's development mode: debug level and text lines, unless
    /// --zap-log-level or --zap-encoder say otherwise [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub zap_devel: Option<bool>,

    /// json (one object per line) or console (text lines) [default:
    /// console]. LOG_FORMAT, when set, wins.
    #[arg(long, value_name = "ENCODER")]
    pub zap_encoder: Option<String>,

    /// Accepted for llm-d compatibility (info, error or panic); has no
    /// effect, as the proxy's records carry no stack traces.
    #[arg(long, value_name = "LEVEL")]
    pub zap_stacktrace_level: Option<String>,

    /// Accepted for llm-d compatibility (epoch, millis, nano, iso8601,
    /// rfc3339 or rfc3339nano); has no effect, as records carry RFC 3339
    /// times.
    #[arg(long, value_name = "ENCODING")]
    pub zap_time_encoding: Option<String>,
}

/// How much the proxy logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and information (the default).
    Info,
    /// The proxy's debug records too.
    Debug,
    /// The proxy's trace records too.
    Trace,
}

impl LogLevel {
    /// The level of a klog or zap verbosity (llm-d logs its debug records
    /// at verbosity 4 and its trace records at 5).
    pub fn from_verbosity(verbosity: u8) -> LogLevel {
        match verbosity {
            0..=3 => LogLevel::Info,
            4 => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }

    /// The `RUST_LOG`-style filter of this level.
    pub fn filter(self) -> String {
        let own = |level: &str| {
            let crates: Vec<String> = OWN_CRATES
                .iter()
                .map(|name| format!("{name}={level}"))
                .collect();
            format!("info,{}", crates.join(","))
        };
        match self {
            LogLevel::Error => "error".to_owned(),
            LogLevel::Info => "info".to_owned(),
            LogLevel::Debug => own("debug"),
            LogLevel::Trace => own("trace"),
        }
    }
}

/// What the logging flags ask for; `None` where they say nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogChoice {
    /// The level.
    pub level: Option<LogLevel>,
    /// The line format.
    pub format: Option<LogFormat>,
}

impl LogFlags {
    /// Checks the flags' values and says what they ask for.
    pub fn resolve(&self) -> Result<LogChoice, ConfigError> {
        let zap_level = self.zap_log_level.as_deref().map(zap_level).transpose()?;
        let encoder = self
            .zap_encoder
            .as_deref()
            .map(|encoder| match encoder {
                "json" => Ok(LogFormat::Json),
                "console" => Ok(LogFormat::Text),
                other => Err(invalid("zap-encoder", other, "json or console")),
            })
            .transpose()?;
        if let Some(level) = &self.zap_stacktrace_level {
            one_of("zap-stacktrace-level", level, &["info", "error", "panic"])?;
        }
        if let Some(encoding) = &self.zap_time_encoding {
            let encodings = [
                "epoch",
                "millis",
                "nano",
                "iso8601",
                "rfc3339",
                "rfc3339nano",
            ];
            one_of("zap-time-encoding", encoding, &encodings)?;
        }
        let devel = self.zap_devel.unwrap_or(false);
        Ok(LogChoice {
            level: zap_level
                .or(self.verbosity.map(LogLevel::from_verbosity))
                .or(devel.then_some(LogLevel::Debug)),
            format: encoder.or(devel.then_some(LogFormat::Text)),
        })
    }
}

impl LogChoice {
    /// Sets what the flags ask for in `settings`, except what `RUST_LOG`
    /// or `LOG_FORMAT` (read through `lookup`; empty counts as unset)
    /// already set.
    pub fn apply(self, settings: &mut LogSettings, lookup: impl Fn(&str) -> Option<String>) {
        let set = |name: &str| lookup(name).is_some_and(|value| !value.is_empty());
        if let Some(level) = self.level
            && !set("RUST_LOG")
        {
            settings.filter = level.filter();
        }
        if let Some(format) = self.format
            && !set("LOG_FORMAT")
        {
            settings.format = format;
        }
    }
}

fn zap_level(text: &str) -> Result<LogLevel, ConfigError> {
    match text {
        "debug" => Ok(LogLevel::Debug),
        "info" => Ok(LogLevel::Info),
        "error" => Ok(LogLevel::Error),
        other => match other.parse::<u8>() {
            Ok(verbosity) if verbosity > 0 => Ok(LogLevel::from_verbosity(verbosity)),
            _ => Err(invalid(
                "zap-log-level",
                other,
                "debug, info, error or an integer above 0",
            )),
        },
    }
}

fn one_of(flag: &str, value: &str, allowed: &[&str]) -> Result<(), ConfigError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(invalid(flag, value, &allowed.join(", ")))
    }
}

fn invalid(flag: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid(format!("{flag} {value:?}: expected {expected}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        log: LogFlags,
    }

    fn choice(args: &[&str]) -> Result<LogChoice, ConfigError> {
        let argv = std::iter::once("test").chain(args.iter().copied());
        Flags::try_parse_from(argv)
            .map_err(|error| ConfigError::Invalid(error.to_string()))?
            .log
            .resolve()
    }

    fn level(args: &[&str]) -> Option<LogLevel> {
        choice(args).unwrap().level
    }

    #[test]
    fn klog_verbosity_maps_to_levels_in_every_spelling() {
        assert_eq!(level(&[]), None);
        assert_eq!(level(&["-v=5"]), Some(LogLevel::Trace));
        assert_eq!(level(&["-v", "4"]), Some(LogLevel::Debug));
        assert_eq!(level(&["--v=2"]), Some(LogLevel::Info));
        assert!(choice(&["-v=loud"]).is_err());
    }

    #[test]
    fn zap_levels_win_over_the_verbosity() {
        assert_eq!(level(&["--zap-log-level=debug"]), Some(LogLevel::Debug));
        assert_eq!(
            level(&["--zap-log-level=error", "-v=5"]),
            Some(LogLevel::Error)
        );
        assert_eq!(level(&["--zap-log-level=5"]), Some(LogLevel::Trace));
        assert!(choice(&["--zap-log-level=0"]).is_err());
        assert!(choice(&["--zap-log-level=warn"]).is_err());
    }

    #[test]
    fn development_mode_means_debug_text_lines_unless_told_otherwise() {
        let devel = choice(&["--zap-devel"]).unwrap();
        assert_eq!(devel.level, Some(LogLevel::Debug));
        assert_eq!(devel.format, Some(LogFormat::Text));
        let told = choice(&[
            "--zap-devel=true",
            "--zap-encoder=json",
            "--zap-log-level=info",
        ]);
        let told = told.unwrap();
        assert_eq!(
            (told.level, told.format),
            (Some(LogLevel::Info), Some(LogFormat::Json))
        );
        assert_eq!(
            choice(&["--zap-devel=false"]).unwrap(),
            LogChoice::default()
        );
    }

    #[test]
    fn accepted_zap_flags_are_still_checked() {
        assert!(
            choice(&[
                "--zap-stacktrace-level=panic",
                "--zap-time-encoding=iso8601"
            ])
            .is_ok()
        );
        assert!(choice(&["--zap-stacktrace-level=warn"]).is_err());
        assert!(choice(&["--zap-time-encoding=unix"]).is_err());
        assert!(choice(&["--zap-encoder=text"]).is_err());
    }

    #[test]
    fn debug_and_trace_raise_only_the_proxys_own_crates() {
        assert_eq!(
            LogLevel::Debug.filter(),
            "info,llmd_pd_proxy=debug,llmd_runtime=debug"
        );
        assert_eq!(LogLevel::Error.filter(), "error");
        let filter = LogLevel::Trace.filter();
        let read = llmd_runtime::telemetry::TelemetryConfig::from_lookup("proxy", |name| {
            (name == "RUST_LOG").then(|| filter.clone())
        });
        assert!(
            read.warnings().is_empty(),
            "{filter}: {:?}",
            read.warnings()
        );
        assert_eq!(read.logging.filter, filter);
    }

    #[test]
    fn rust_log_and_log_format_win_over_the_flags() {
        let choice = LogChoice {
            level: Some(LogLevel::Trace),
            format: Some(LogFormat::Json),
        };
        let mut settings = LogSettings::default();
        choice.apply(&mut settings, |_| None);
        assert_eq!(settings.filter, LogLevel::Trace.filter());
        assert_eq!(settings.format, LogFormat::Json);

        let mut settings = LogSettings::default();
        let env = |name: &str| (name == "RUST_LOG").then(|| "warn".to_owned());
        choice.apply(&mut settings, env);
        assert_eq!(settings.filter, "info", "RUST_LOG already read into it");
        assert_eq!(settings.format, LogFormat::Json);

        let mut settings = LogSettings::default();
        choice.apply(&mut settings, |name| {
            (name == "LOG_FORMAT").then(String::new)
        });
        assert_eq!(settings.format, LogFormat::Json, "an empty value is unset");
    }
}
