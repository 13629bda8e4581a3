//! The whole telemetry configuration, as a pure function of an environment
//! lookup.

use super::env::{EnvReader, key_value_list};
use super::exporter::ExporterSetting;
use super::logging::LogSettings;
use super::sampler::SamplerSetting;
use super::warning::Warning;
use std::time::Duration;

/// Everything `OTEL_*` (and `RUST_LOG`, `LOG_FORMAT`) configure, read with
/// [`TelemetryConfig::from_lookup`] or [`TelemetryConfig::from_env`]. Bad
/// values never fail: each becomes one [`Warning`] and a fallback.
#[derive(Clone, Debug, PartialEq)]
pub struct TelemetryConfig {
    /// `OTEL_SDK_DISABLED=true`: no tracer is installed at all.
    pub disabled: bool,
    /// `service.name`: `OTEL_SERVICE_NAME`, else `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`, else the service's own default.
    pub service_name: String,
    /// The other `OTEL_RESOURCE_ATTRIBUTES` entries.
    pub resource_attributes: Vec<(String, String)>,
    /// `OTEL_TRACES_EXPORTER` and its settings.
    pub exporter: ExporterSetting,
    /// `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler: SamplerSetting,
    /// `OTEL_PROPAGATORS`.
    pub propagators: Propagators,
    /// `OTEL_BSP_*`.
    pub batch: BatchSettings,
    /// `RUST_LOG` and `LOG_FORMAT`.
    pub logging: LogSettings,
    warnings: Vec<Warning>,
}

/// Which W3C headers are read and written, from `OTEL_PROPAGATORS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Propagators {
    /// `tracecontext`: `traceparent` / `tracestate`.
    pub trace_context: bool,
    /// `baggage`: the `baggage` header.
    pub baggage: bool,
}

/// The bounded batch span processor's limits, from `OTEL_BSP_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSettings {
    /// `OTEL_BSP_MAX_QUEUE_SIZE`: spans waiting for export beyond this are
    /// dropped (and counted).
    pub max_queue_size: usize,
    /// `OTEL_BSP_SCHEDULE_DELAY`: the longest a span waits before its batch
    /// is sent.
    pub schedule_delay: Duration,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: spans per export request.
    pub max_export_batch_size: usize,
    /// `OTEL_BSP_EXPORT_TIMEOUT`: the longest one export may take.
    pub export_timeout: Duration,
}

impl Default for Propagators {
    fn default() -> Self {
        Propagators {
            trace_context: true,
            baggage: true,
        }
    }
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            max_queue_size: 2048,
            schedule_delay: Duration::from_millis(5000),
            max_export_batch_size: 512,
            export_timeout: Duration::from_millis(30000),
        }
    }
}

impl TelemetryConfig {
    /// Reads the configuration from the process environment.
    pub fn from_env(default_service_name: &str) -> TelemetryConfig {
        TelemetryConfig::from_lookup(default_service_name, |name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (a variable's value, or
    /// `None` when unset); an empty value counts as unset.
    /// `default_service_name` is used when neither `OTEL_SERVICE_NAME` nor
    /// `OTEL_RESOURCE_ATTRIBUTES` names the service.
    pub fn from_lookup<F>(default_service_name: &str, lookup: F) -> TelemetryConfig
    where
        F: Fn(&str) -> Option<String>,
    {
        let mut env = EnvReader::new(lookup);
        let disabled = env.bool(&["OTEL_SDK_DISABLED"], false);
        let (service_name, resource_attributes) = read_resource(&mut env, default_service_name);
        let exporter = ExporterSetting::read(&mut env);
        let sampler = SamplerSetting::read(&mut env);
        let propagators = Propagators::read(&mut env);
        let batch = BatchSettings::read(&mut env);
        let logging = LogSettings::read(&mut env);
        TelemetryConfig {
            disabled,
            service_name,
            resource_attributes,
            exporter,
            sampler,
            propagators,
            batch,
            logging,
            warnings: env.into_warnings(),
        }
    }

    /// The problems found while reading, each with the fallback used.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    pub(crate) fn take_warnings(&mut self) -> Vec<Warning> {
        std::mem::take(&mut self.warnings)
    }
}

fn read_resource<F: Fn(&str) -> Option<String>>(
    env: &mut EnvReader<F>,
    default_service_name: &str,
) -> (String, Vec<(String, String)>) {
    let mut service_name = None;
    let mut attributes = Vec::new();
    if let Some(list) = env.get("OTEL_RESOURCE_ATTRIBUTES") {
        for entry in key_value_list(&list) {
            match entry {
                Ok((key, value)) if key == "service.name" => service_name = Some(value),
                Ok(pair) => attributes.push(pair),
                Err(bad) => env.warn(
                    "OTEL_RESOURCE_ATTRIBUTES",
                    bad,
                    "an entry is not key=value with valid %-escapes; that entry is skipped",
                ),
            }
        }
    }
    let service_name = env
        .get("OTEL_SERVICE_NAME")
        .or(service_name)
        .unwrap_or_else(|| default_service_name.to_owned());
    (service_name, attributes)
}

impl Propagators {
    fn read<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>) -> Propagators {
        let Some(list) = env.get("OTEL_PROPAGATORS") else {
            return Propagators::default();
        };
        let mut chosen = Propagators {
            trace_context: false,
            baggage: false,
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.to_ascii_lowercase().as_str() {
                "tracecontext" => chosen.trace_context = true,
                "baggage" => chosen.baggage = true,
                "none" => {}
                _ => env.warn(
                    "OTEL_PROPAGATORS",
                    name,
                    "unsupported propagator (supported: tracecontext, baggage, none); ignored",
                ),
            }
        }
        chosen
    }
}

impl BatchSettings {
    fn read<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>) -> BatchSettings {
        let default = BatchSettings::default();
        let max_queue_size = env.positive("OTEL_BSP_MAX_QUEUE_SIZE", default.max_queue_size);
        let schedule_delay = env.millis(&["OTEL_BSP_SCHEDULE_DELAY"], default.schedule_delay);
        let mut max_export_batch_size = env.positive(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            default.max_export_batch_size.min(max_queue_size),
        );
        if max_export_batch_size > max_queue_size {
            env.warn(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                &max_export_batch_size.to_string(),
                format!("larger than OTEL_BSP_MAX_QUEUE_SIZE; using {max_queue_size}"),
            );
            max_export_batch_size = max_queue_size;
        }
        let export_timeout = env.millis(&["OTEL_BSP_EXPORT_TIMEOUT"], default.export_timeout);
        BatchSettings {
            max_queue_size,
            schedule_delay,
            max_export_batch_size,
            export_timeout,
        }
    }
}
