//! `TelemetryConfig::from_lookup`: every variable, good and bad values, one
//! warning per bad value naming the variable, the value and the fallback.

use llmd_runtime::telemetry::{
    BatchSettings, Compression, DEFAULT_OTLP_TIMEOUT, ExporterSetting, LogFormat, LogSettings,
    OtlpSettings, OtlpTls, Propagators, Protocol, SamplerSetting, TelemetryConfig, Warning,
};
use std::collections::HashMap;
use std::time::Duration;

fn read(pairs: &[(&str, &str)]) -> TelemetryConfig {
    let env: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TelemetryConfig::from_lookup("default-svc", move |name| env.get(name).cloned())
}

/// The only warning, which must be about `variable` and `value`.
fn only_warning<'a>(config: &'a TelemetryConfig, variable: &str, value: &str) -> &'a Warning {
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 1, "expected one warning, got {warnings:?}");
    assert_eq!(warnings[0].subject, variable);
    assert_eq!(warnings[0].value, value);
    &warnings[0]
}

fn otlp(config: &TelemetryConfig) -> &OtlpSettings {
    match &config.exporter {
        ExporterSetting::Otlp(otlp) => otlp,
        other => panic!("expected the OTLP exporter, got {other:?}"),
    }
}

#[test]
fn defaults_when_nothing_is_set() {
    let config = read(&[]);
    assert!(config.warnings().is_empty());
    assert!(!config.disabled);
    assert_eq!(config.service_name, "default-svc");
    assert!(config.resource_attributes.is_empty());
    assert_eq!(
        config.exporter,
        ExporterSetting::Otlp(OtlpSettings {
            protocol: Protocol::Grpc,
            endpoint: "http://localhost:4317".into(),
            headers: vec![],
            timeout: DEFAULT_OTLP_TIMEOUT,
            compression: Compression::None,
            tls: OtlpTls::default(),
        })
    );
    assert_eq!(config.sampler, SamplerSetting::ParentBasedTraceIdRatio(0.1));
    assert_eq!(config.propagators, Propagators::default());
    assert!(config.propagators.trace_context && config.propagators.baggage);
    assert_eq!(config.batch, BatchSettings::default());
    assert_eq!(config.logging, LogSettings::default());
    assert_eq!(config.logging.filter, "info");
}

#[test]
fn empty_values_count_as_unset() {
    let config = read(&[("OTEL_TRACES_SAMPLER", ""), ("OTEL_SERVICE_NAME", " ")]);
    assert!(config.warnings().is_empty());
    assert_eq!(config.sampler, SamplerSetting::default());
    assert_eq!(config.service_name, "default-svc");
}

#[test]
fn sdk_disabled() {
    assert!(read(&[("OTEL_SDK_DISABLED", "true")]).disabled);
    assert!(read(&[("OTEL_SDK_DISABLED", "TRUE")]).disabled);
    assert!(!read(&[("OTEL_SDK_DISABLED", "false")]).disabled);
    let bad = read(&[("OTEL_SDK_DISABLED", "yes")]);
    assert!(!bad.disabled);
    let warning = only_warning(&bad, "OTEL_SDK_DISABLED", "yes");
    assert!(warning.message.contains("using false"), "{warning}");
}

#[test]
fn service_name_precedence() {
    let attrs = "service.name=from-attrs,deployment.environment=prod";
    assert_eq!(
        read(&[("OTEL_RESOURCE_ATTRIBUTES", attrs)]).service_name,
        "from-attrs"
    );
    let both = read(&[
        ("OTEL_RESOURCE_ATTRIBUTES", attrs),
        ("OTEL_SERVICE_NAME", "from-name"),
    ]);
    assert_eq!(both.service_name, "from-name");
    assert_eq!(
        both.resource_attributes,
        vec![("deployment.environment".to_owned(), "prod".to_owned())]
    );
}

#[test]
fn resource_attributes_are_decoded_and_bad_entries_skipped() {
    let config = read(&[(
        "OTEL_RESOURCE_ATTRIBUTES",
        "team=llm%20d,notapair,region=eu",
    )]);
    assert_eq!(
        config.resource_attributes,
        vec![
            ("team".to_owned(), "llm d".to_owned()),
            ("region".to_owned(), "eu".to_owned())
        ]
    );
    let warning = only_warning(&config, "OTEL_RESOURCE_ATTRIBUTES", "notapair");
    assert!(warning.message.contains("skipped"), "{warning}");
}

#[test]
fn exporter_choice() {
    assert_eq!(
        read(&[("OTEL_TRACES_EXPORTER", "console")]).exporter,
        ExporterSetting::Console
    );
    assert_eq!(
        read(&[("OTEL_TRACES_EXPORTER", "none")]).exporter,
        ExporterSetting::None
    );
    assert_eq!(
        read(&[("OTEL_TRACES_EXPORTER", "OTLP")]).exporter,
        read(&[]).exporter
    );
    let bad = read(&[("OTEL_TRACES_EXPORTER", "zipkin")]);
    assert_eq!(bad.exporter, read(&[]).exporter);
    let warning = only_warning(&bad, "OTEL_TRACES_EXPORTER", "zipkin");
    assert!(warning.message.contains("using otlp"), "{warning}");
}

#[test]
fn protocols_and_their_default_endpoints() {
    let http = read(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]);
    assert_eq!(otlp(&http).protocol, Protocol::HttpProtobuf);
    assert_eq!(otlp(&http).endpoint, "http://localhost:4318/v1/traces");
    let json = read(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
    assert_eq!(otlp(&json).protocol, Protocol::HttpJson);
    let signal_wins = read(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
    ]);
    assert_eq!(otlp(&signal_wins).protocol, Protocol::Grpc);
    let bad = read(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")]);
    assert_eq!(otlp(&bad).protocol, Protocol::Grpc);
    let warning = only_warning(&bad, "OTEL_EXPORTER_OTLP_PROTOCOL", "thrift");
    assert!(warning.message.contains("using grpc"), "{warning}");
}

#[test]
fn compression_is_gzip_or_none_and_an_unknown_one_is_a_warning() {
    for unset_or_none in [
        read(&[]),
        read(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "none")]),
        read(&[("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "None")]),
    ] {
        assert!(unset_or_none.warnings().is_empty());
        assert_eq!(otlp(&unset_or_none).compression, Compression::None);
    }
    let gzip = read(&[("OTEL_EXPORTER_OTLP_COMPRESSION", " GZIP ")]);
    assert!(gzip.warnings().is_empty());
    assert_eq!(otlp(&gzip).compression, Compression::Gzip);
    let signal_wins = read(&[
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd"),
    ]);
    let warning = only_warning(
        &signal_wins,
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "zstd",
    );
    assert!(
        warning
            .message
            .contains("expected none or gzip; using none"),
        "{warning}"
    );
    assert_eq!(otlp(&signal_wins).compression, Compression::None);
    assert_eq!(otlp(&signal_wins).protocol, Protocol::Grpc);
}

#[test]
fn generic_endpoint_gets_the_traces_path_for_http_only() {
    let http = read(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
    ]);
    assert_eq!(otlp(&http).endpoint, "http://collector:4318/v1/traces");
    let grpc = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")]);
    assert_eq!(otlp(&grpc).endpoint, "http://collector:4317");
    let signal = read(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "https://traces:443/custom",
        ),
    ]);
    assert_eq!(otlp(&signal).endpoint, "https://traces:443/custom");
    assert!(signal.warnings().is_empty());
}

#[test]
fn unparsable_endpoints_fall_back_to_the_default() {
    for bad in ["not a url", "ftp://collector:4317", "http://"] {
        let config = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", bad)]);
        assert_eq!(otlp(&config).endpoint, "http://localhost:4317");
        let warning = only_warning(&config, "OTEL_EXPORTER_OTLP_ENDPOINT", bad);
        assert!(
            warning.message.contains("using http://localhost:4317"),
            "{warning}"
        );
    }
    let http = read(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318"),
    ]);
    assert_eq!(otlp(&http).endpoint, "http://localhost:4318/v1/traces");
    only_warning(
        &http,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "collector:4318",
    );
}

#[test]
fn insecure_picks_the_scheme_of_a_grpc_endpoint_without_one() {
    let secure = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]);
    assert_eq!(otlp(&secure).endpoint, "https://collector:4317");
    let insecure = read(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
    ]);
    assert_eq!(otlp(&insecure).endpoint, "http://collector:4317");
    let explicit = read(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
    ]);
    assert_eq!(otlp(&explicit).endpoint, "https://collector:4317");
    let bad = read(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "maybe"),
    ]);
    assert_eq!(otlp(&bad).endpoint, "https://collector:4317");
    only_warning(&bad, "OTEL_EXPORTER_OTLP_INSECURE", "maybe");
}

#[test]
fn headers_are_decoded_and_bad_ones_skipped_without_showing_values() {
    let config = read(&[(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "api-key=s3cret,x-tenant=team%20a,bad header=hunter2",
    )]);
    assert_eq!(
        otlp(&config).headers,
        vec![
            ("api-key".to_owned(), "s3cret".to_owned()),
            ("x-tenant".to_owned(), "team a".to_owned())
        ]
    );
    let warning = only_warning(&config, "OTEL_EXPORTER_OTLP_HEADERS", "bad header");
    assert!(!warning.to_string().contains("hunter2"), "{warning}");
    let signal = read(&[
        ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2"),
    ]);
    assert_eq!(
        otlp(&signal).headers,
        vec![("b".to_owned(), "2".to_owned())]
    );
}

#[test]
fn otlp_timeout() {
    let good = read(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")]);
    assert_eq!(otlp(&good).timeout, Duration::from_millis(2500));
    let signal = read(&[
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
    ]);
    assert_eq!(otlp(&signal).timeout, Duration::from_millis(700));
    let bad = read(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]);
    assert_eq!(otlp(&bad).timeout, DEFAULT_OTLP_TIMEOUT);
    let warning = only_warning(&bad, "OTEL_EXPORTER_OTLP_TIMEOUT", "10s");
    assert!(warning.message.contains("using 10000 ms"), "{warning}");
}

#[test]
fn all_six_samplers() {
    let cases = [
        ("always_on", SamplerSetting::AlwaysOn),
        ("always_off", SamplerSetting::AlwaysOff),
        ("traceidratio", SamplerSetting::TraceIdRatio(0.1)),
        ("parentbased_always_on", SamplerSetting::ParentBasedAlwaysOn),
        (
            "parentbased_always_off",
            SamplerSetting::ParentBasedAlwaysOff,
        ),
        (
            "parentbased_traceidratio",
            SamplerSetting::ParentBasedTraceIdRatio(0.1),
        ),
    ];
    for (name, expected) in cases {
        let config = read(&[("OTEL_TRACES_SAMPLER", name)]);
        assert_eq!(config.sampler, expected, "{name}");
        assert!(config.warnings().is_empty(), "{name}");
    }
}

#[test]
fn sampler_arg_sets_the_ratio() {
    let ratio = read(&[
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
    ]);
    assert_eq!(ratio.sampler, SamplerSetting::TraceIdRatio(0.25));
    let default_sampler = read(&[("OTEL_TRACES_SAMPLER_ARG", "1")]);
    assert_eq!(
        default_sampler.sampler,
        SamplerSetting::ParentBasedTraceIdRatio(1.0)
    );
    let ignored = read(&[
        ("OTEL_TRACES_SAMPLER", "always_on"),
        ("OTEL_TRACES_SAMPLER_ARG", "not-read"),
    ]);
    assert_eq!(ignored.sampler, SamplerSetting::AlwaysOn);
    assert!(ignored.warnings().is_empty());
}

#[test]
fn bad_sampler_arg_falls_back_to_the_default_ratio() {
    for bad in ["1.5", "-0.1", "abc", "NaN"] {
        let config = read(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", bad),
        ]);
        assert_eq!(config.sampler, SamplerSetting::ParentBasedTraceIdRatio(0.1));
        let warning = only_warning(&config, "OTEL_TRACES_SAMPLER_ARG", bad);
        assert!(warning.message.contains("using 0.1"), "{warning}");
    }
}

#[test]
fn unknown_sampler_falls_back_to_the_default() {
    let config = read(&[("OTEL_TRACES_SAMPLER", "jaeger_remote")]);
    assert_eq!(config.sampler, SamplerSetting::ParentBasedTraceIdRatio(0.1));
    let warning = only_warning(&config, "OTEL_TRACES_SAMPLER", "jaeger_remote");
    assert!(
        warning
            .message
            .contains("using parentbased_traceidratio with ratio 0.1"),
        "{warning}"
    );
}

#[test]
fn propagators() {
    let only_trace = read(&[("OTEL_PROPAGATORS", "tracecontext")]).propagators;
    assert_eq!(
        only_trace,
        Propagators {
            trace_context: true,
            baggage: false
        }
    );
    let only_baggage = read(&[("OTEL_PROPAGATORS", "baggage")]).propagators;
    assert_eq!(
        only_baggage,
        Propagators {
            trace_context: false,
            baggage: true
        }
    );
    let none = read(&[("OTEL_PROPAGATORS", "none")]).propagators;
    assert_eq!(
        none,
        Propagators {
            trace_context: false,
            baggage: false
        }
    );
    let both = read(&[("OTEL_PROPAGATORS", "baggage, tracecontext")]).propagators;
    assert_eq!(both, Propagators::default());
    let unsupported = read(&[("OTEL_PROPAGATORS", "b3,tracecontext")]);
    assert_eq!(
        unsupported.propagators,
        Propagators {
            trace_context: true,
            baggage: false
        }
    );
    only_warning(&unsupported, "OTEL_PROPAGATORS", "b3");
}

#[test]
fn batch_settings() {
    let config = read(&[
        ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
        ("OTEL_BSP_SCHEDULE_DELAY", "250"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "1500"),
    ]);
    assert!(config.warnings().is_empty());
    assert_eq!(
        config.batch,
        BatchSettings {
            max_queue_size: 100,
            schedule_delay: Duration::from_millis(250),
            max_export_batch_size: 10,
            export_timeout: Duration::from_millis(1500),
        }
    );
}

#[test]
fn bad_batch_settings_fall_back() {
    let defaults = BatchSettings::default();
    for (variable, bad) in [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "lots"),
        ("OTEL_BSP_SCHEDULE_DELAY", "-5"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "30s"),
    ] {
        let config = read(&[(variable, bad)]);
        assert_eq!(config.batch, defaults, "{variable}={bad}");
        only_warning(&config, variable, bad);
    }
    let too_big = read(&[
        ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
    ]);
    assert_eq!(too_big.batch.max_export_batch_size, 64);
    only_warning(&too_big, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512");
    let small_queue = read(&[("OTEL_BSP_MAX_QUEUE_SIZE", "64")]);
    assert_eq!(small_queue.batch.max_export_batch_size, 64);
    assert!(small_queue.warnings().is_empty());
}

#[test]
fn log_settings() {
    let json = read(&[
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "warn,llmd_runtime=debug"),
    ]);
    assert_eq!(json.logging.format, LogFormat::Json);
    assert_eq!(json.logging.filter, "warn,llmd_runtime=debug");
    assert!(json.warnings().is_empty());
    let bad_format = read(&[("LOG_FORMAT", "xml")]);
    assert_eq!(bad_format.logging.format, LogFormat::Text);
    only_warning(&bad_format, "LOG_FORMAT", "xml");
    let bad_filter = read(&[("RUST_LOG", "llmd=loudest")]);
    assert_eq!(bad_filter.logging.filter, "info");
    let warning = only_warning(&bad_filter, "RUST_LOG", "llmd=loudest");
    assert!(warning.message.contains("using info"), "{warning}");
}

#[test]
fn every_bad_value_gives_its_own_warning() {
    let config = read(&[
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_TRACES_EXPORTER", "carrier-pigeon"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "-1"),
    ]);
    let mut subjects: Vec<_> = config.warnings().iter().map(|w| w.subject).collect();
    subjects.sort_unstable();
    assert_eq!(
        subjects,
        [
            "OTEL_BSP_MAX_QUEUE_SIZE",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "OTEL_TRACES_EXPORTER",
            "OTEL_TRACES_SAMPLER"
        ]
    );
}
