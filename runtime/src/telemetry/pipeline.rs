//! Builds the tracer provider a [`TelemetryConfig`] describes.

use super::config::TelemetryConfig;
use super::console::ConsoleExporter;
use super::exporter::ExporterSetting;
use super::otlp::OtlpExporter;
use super::processor::{BoundedBatchProcessor, Counters, FailureReport};
use super::warning::Warning;
use opentelemetry::KeyValue;
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
            let build = move || OtlpExporter::new(&otlp);
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
