//! Builds the tracer provider a [`TelemetryConfig`] describes.

use super::config::TelemetryConfig;
use super::console::ConsoleExporter;
use super::exporter::{ExporterSetting, OtlpSettings, Protocol};
use super::processor::{BoundedBatchProcessor, Counters, FailureReport};
use super::warning::Warning;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter};
use std::sync::Arc;

/// A started provider and the processor exporting its spans (none for
/// `OTEL_TRACES_EXPORTER=none` or when the exporter could not start).
pub(crate) struct Pipeline {
    pub(crate) provider: SdkTracerProvider,
    pub(crate) processor: Option<BoundedBatchProcessor>,
    pub(crate) warning: Option<Warning>,
}

/// Starts the provider for `config`; export failures are passed to
/// `report_failure`.
pub(crate) fn start(
    config: &TelemetryConfig,
    counters: Arc<Counters>,
    report_failure: FailureReport,
) -> Pipeline {
    let resource = resource(config);
    let builder = SdkTracerProvider::builder()
        .with_sampler(config.sampler.sampler())
        .with_resource(resource.clone());
    let started = match &config.exporter {
        ExporterSetting::None => Ok(None),
        ExporterSetting::Console => {
            let build = || Ok(ConsoleExporter::stderr());
            start_processor(config, resource, build, counters, report_failure).map(Some)
        }
        ExporterSetting::Otlp(otlp) => {
            let otlp = otlp.clone();
            let build = move || otlp_exporter(&otlp);
            start_processor(config, resource, build, counters, report_failure).map(Some)
        }
    };
    let (processor, warning) = match started {
        Ok(processor) => (processor, None),
        Err(error) => {
            let message =
                format!("the span exporter could not start ({error}); spans are not exported");
            (
                None,
                Some(Warning::new("OTEL_TRACES_EXPORTER", "", message)),
            )
        }
    };
    let provider = match &processor {
        Some(processor) => builder.with_span_processor(processor.clone()).build(),
        None => builder.build(),
    };
    Pipeline {
        provider,
        processor,
        warning,
    }
}

fn start_processor<E, B>(
    config: &TelemetryConfig,
    resource: Resource,
    build: B,
    counters: Arc<Counters>,
    report_failure: FailureReport,
) -> Result<BoundedBatchProcessor, String>
where
    E: SpanExporter + 'static,
    B: FnOnce() -> Result<E, String> + Send + 'static,
{
    let build = move || {
        let mut exporter = build()?;
        exporter.set_resource(&resource);
        Ok(exporter)
    };
    BoundedBatchProcessor::start(config.batch, build, counters, report_failure)
}

/// `service.name`, the other resource attributes and the SDK's own
/// `telemetry.sdk.*` attributes.
fn resource(config: &TelemetryConfig) -> Resource {
    Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(
            config
                .resource_attributes
                .iter()
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
        )
        .with_service_name(config.service_name.clone())
        .build()
}

/// Builds the OTLP exporter; runs on the export thread, inside its runtime.
fn otlp_exporter(settings: &OtlpSettings) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let built = match settings.protocol {
        Protocol::Grpc => builder
            .with_tonic()
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(settings.timeout)
            .with_metadata(grpc_metadata(&settings.headers))
            .build(),
        Protocol::HttpProtobuf | Protocol::HttpJson => {
            let protocol = if settings.protocol == Protocol::HttpJson {
                opentelemetry_otlp::Protocol::HttpJson
            } else {
                opentelemetry_otlp::Protocol::HttpBinary
            };
            builder
                .with_http()
                .with_http_client(http_client(settings)?)
                .with_endpoint(settings.endpoint.clone())
                .with_protocol(protocol)
                .with_timeout(settings.timeout)
                .with_headers(settings.headers.iter().cloned().collect())
                .build()
        }
    };
    built.map_err(|error| error.to_string())
}

fn grpc_metadata(headers: &[(String, String)]) -> tonic::metadata::MetadataMap {
    let headers = headers
        .iter()
        .filter_map(|(name, value)| {
            Some((
                http::HeaderName::try_from(name.as_str()).ok()?,
                http::HeaderValue::try_from(value.as_str()).ok()?,
            ))
        })
        .collect();
    tonic::metadata::MetadataMap::from_headers(headers)
}

/// Our own reqwest client (rustls with the ring provider).
fn http_client(settings: &OtlpSettings) -> Result<reqwest::Client, String> {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one first; either way one is set.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
        .timeout(settings.timeout)
        .build()
        .map_err(|error| format!("cannot build the HTTP client: {error}"))
}
