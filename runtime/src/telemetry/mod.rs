//! Telemetry start-up from the standard `OTEL_*` environment variables.
//!
//! One call at startup:
//!
//! ```no_run
//! let telemetry = llmd_runtime::telemetry::init("llm-d-pd-proxy");
//! // ... serve ...
//! drop(telemetry); // flushes and shuts the exporter down
//! ```
//!
//! `init` never fails: a bad setting or an exporter that cannot start
//! becomes a [`Warning`] (logged, and kept in [`TelemetryGuard::warnings`])
//! and a fallback, and the service keeps serving. Spans are exported by a
//! bounded batch processor on a dedicated thread with its own runtime, so a
//! slow or dead collector never slows the request path: spans beyond the
//! queue are dropped and counted ([`stats`]).
//!
//! | variable | values (default first) |
//! |---|---|
//! | `OTEL_SDK_DISABLED` | `false`, `true` (no tracer installed at all) |
//! | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | `service.name` and other resource attributes (`k=v,...`, %-encoded) |
//! | `OTEL_TRACES_EXPORTER` | `otlp`, `console` (one line per span on stderr), `none` |
//! | `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` | `grpc`, `http/protobuf`, `http/json` |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL; `/v1/traces` is appended for HTTP |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | full URL, used as is |
//! | `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` | `k=v,...` request headers |
//! | `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT` | milliseconds, `10000` |
//! | `OTEL_EXPORTER_OTLP_(TRACES_)INSECURE` | `false`, `true`: scheme of a gRPC endpoint given without one |
//! | `OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE` | PEM file of the certificates that alone verify an `https` collector (the system's roots when unset) |
//! | `OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_CERTIFICATE`, `_CLIENT_KEY` | PEM files of the client's certificate chain and key, for mutual TLS |
//! | `OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION` | `none`, `gzip` (gRPC messages, or HTTP bodies with `Content-Encoding: gzip`) |
//! | `OTEL_TRACES_SAMPLER` | `parentbased_traceidratio`, `parentbased_always_on`, `parentbased_always_off`, `traceidratio`, `always_on`, `always_off` |
//! | `OTEL_TRACES_SAMPLER_ARG` | ratio in [0, 1] for the ratio samplers, `0.1` |
//! | `OTEL_PROPAGATORS` | `tracecontext,baggage`, any subset, `none` |
//! | `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | `2048`, `512` |
//! | `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_EXPORT_TIMEOUT` | milliseconds, `5000`, `30000` |
//! | `RUST_LOG`, `LOG_FORMAT` | log filter (`info`), `text` or `json` |

mod config;
mod console;
mod env;
mod exporter;
mod exporter_tls;
pub mod logging;
pub mod otlp;
mod pipeline;
mod processor;
mod sampler;
mod warning;

pub use config::{BatchSettings, Propagators, TelemetryConfig};
pub use console::{ConsoleExporter, SpanLine};
pub use exporter::{Compression, DEFAULT_OTLP_TIMEOUT, ExporterSetting, OtlpSettings, Protocol};
pub use exporter_tls::{ClientIdentity, OtlpTls};
pub use logging::{LogFormat, LogSettings};
pub use otlp::OtlpExporter;
pub use processor::ExportStats;
pub use sampler::{DEFAULT_RATIO, SamplerSetting};
pub use warning::Warning;

use crate::state::{self, UnsampledParent};
use arc_swap::ArcSwapOption;
use opentelemetry::InstrumentationScope;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;
use processor::{BoundedBatchProcessor, Counters};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long dropping the guard (or [`TelemetryGuard::shutdown`]) waits for
/// the last spans to be exported.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The [`Warning::subject`] of export failures; the value is the OTLP
/// endpoint (or `console`).
pub const EXPORT_WARNING: &str = "span export";

/// The counters of the most recently started export pipeline.
static CURRENT_COUNTERS: ArcSwapOption<Counters> = ArcSwapOption::const_empty();

/// Starts telemetry from the process environment; `default_service_name`
/// is the `service.name` unless `OTEL_SERVICE_NAME` (or `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES`) says otherwise. Also installs the logger
/// (`RUST_LOG`, `LOG_FORMAT`) and the W3C propagators (`OTEL_PROPAGATORS`).
pub fn init(default_service_name: &str) -> TelemetryGuard {
    init_with(TelemetryConfig::from_env(default_service_name))
}

/// Starts telemetry as `config` says (see [`init`]).
pub fn init_with(mut config: TelemetryConfig) -> TelemetryGuard {
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let mut found: Vec<Warning> = logging::install(&config.logging).into_iter().collect();
    found.extend(config.take_warnings());
    configure_propagators(config.propagators);

    let mut guard = TelemetryGuard {
        provider: None,
        processor: None,
        counters: Arc::new(Counters::default()),
        warnings: warnings.clone(),
    };
    if !config.disabled {
        let report_warnings = warnings.clone();
        let destination = match &config.exporter {
            ExporterSetting::Otlp(otlp) => otlp.endpoint.clone(),
            ExporterSetting::Console => "console".to_owned(),
            ExporterSetting::None => String::new(),
        };
        let report_failure = Box::new(move |error: String| {
            record(
                &report_warnings,
                Warning::new(
                    EXPORT_WARNING,
                    destination.clone(),
                    format!(
                        "export failed ({error}); the spans of failed exports are dropped \
                         and counted, and further failures are not logged until an export succeeds"
                    ),
                ),
            );
        });
        let started = pipeline::start(&config, guard.counters.clone(), report_failure);
        found.extend(started.warning);
        let scope = InstrumentationScope::builder("llmd-runtime")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        state::install(
            started.provider.tracer_with_scope(scope),
            UnsampledParent::of(&config.sampler.sampler()),
        );
        opentelemetry::global::set_tracer_provider(started.provider.clone());
        guard.provider = Some(started.provider);
        guard.processor = started.processor;
    }
    CURRENT_COUNTERS.store(Some(guard.counters.clone()));
    for warning in found {
        record(&warnings, warning);
    }
    guard
}

/// The export counters of the running (or last) telemetry pipeline; all
/// zero before [`init`].
pub fn stats() -> ExportStats {
    CURRENT_COUNTERS
        .load()
        .as_ref()
        .map(|counters| counters.snapshot())
        .unwrap_or_default()
}

fn record(warnings: &Mutex<Vec<Warning>>, warning: Warning) {
    warning.log();
    warnings
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(warning);
}

/// Applies `OTEL_PROPAGATORS` to our HTTP layers and to the OpenTelemetry
/// global propagator (for libraries that use it).
fn configure_propagators(propagators: Propagators) {
    crate::propagation::configure(propagators.trace_context, propagators.baggage);
    let mut chosen: Vec<Box<dyn TextMapPropagator + Send + Sync>> = Vec::new();
    if propagators.trace_context {
        chosen.push(Box::new(TraceContextPropagator::new()));
    }
    if propagators.baggage {
        chosen.push(Box::new(BaggagePropagator::new()));
    }
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(chosen));
}

/// Keeps telemetry running; dropping it (or [`TelemetryGuard::shutdown`])
/// exports what is queued and stops the exporter. Safe inside or outside a
/// tokio runtime: export runs on its own thread and runtime.
#[must_use = "dropping the guard shuts telemetry down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    processor: Option<BoundedBatchProcessor>,
    counters: Arc<Counters>,
    warnings: Arc<Mutex<Vec<Warning>>>,
}

/// Why a flush or shutdown did not complete.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TelemetryError {
    /// The queued spans were not all exported in time; what was left is
    /// dropped (at shutdown) or still being exported (at flush).
    #[error("span export did not finish within {0:?}")]
    Timeout(Duration),
    /// Telemetry was already shut down.
    #[error("telemetry is already shut down")]
    AlreadyShutdown,
    /// The exporter failed.
    #[error("span export failed: {0}")]
    Export(String),
}

impl From<OTelSdkError> for TelemetryError {
    fn from(error: OTelSdkError) -> Self {
        match error {
            OTelSdkError::Timeout(after) => TelemetryError::Timeout(after),
            OTelSdkError::AlreadyShutdown => TelemetryError::AlreadyShutdown,
            other => TelemetryError::Export(other.to_string()),
        }
    }
}

impl TelemetryGuard {
    /// Whether a tracer was installed (false with `OTEL_SDK_DISABLED=true`).
    pub fn is_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Every warning so far: configuration problems found at start, and the
    /// first export failure of each failing stretch.
    pub fn warnings(&self) -> Vec<Warning> {
        self.warnings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// This pipeline's export counters.
    pub fn stats(&self) -> ExportStats {
        self.counters.snapshot()
    }

    /// Exports every span ended so far (waits at most
    /// `OTEL_BSP_EXPORT_TIMEOUT`).
    pub fn force_flush(&self) -> Result<(), TelemetryError> {
        use opentelemetry_sdk::trace::SpanProcessor as _;
        match &self.processor {
            Some(processor) => Ok(processor.force_flush()?),
            None => Ok(()),
        }
    }

    /// Shuts down with [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub fn shutdown(self) -> Result<(), TelemetryError> {
        self.shutdown_with_timeout(DEFAULT_SHUTDOWN_TIMEOUT)
    }

    /// Stops starting spans, exports what is queued within `timeout`, then
    /// stops the export thread (abandoning an export still in flight).
    pub fn shutdown_with_timeout(mut self, timeout: Duration) -> Result<(), TelemetryError> {
        self.stop(timeout)
    }

    fn stop(&mut self, timeout: Duration) -> Result<(), TelemetryError> {
        use opentelemetry_sdk::trace::SpanProcessor as _;
        let Some(provider) = self.provider.take() else {
            return Ok(());
        };
        state::uninstall();
        opentelemetry::global::set_tracer_provider(
            opentelemetry::trace::noop::NoopTracerProvider::new(),
        );
        let exported = match self.processor.take() {
            Some(processor) => processor.shutdown_with_timeout(timeout),
            None => Ok(()),
        };
        // The processor is already stopped; this releases the provider.
        let _ = provider.shutdown_with_timeout(timeout);
        Ok(exported?)
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.stop(DEFAULT_SHUTDOWN_TIMEOUT) {
            tracing::warn!(target: "llmd_runtime::telemetry", "telemetry shutdown: {error}");
        }
    }
}
