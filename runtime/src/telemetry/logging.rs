//! Log records that carry the current OpenTelemetry trace and span ids.
//!
//! llmd spans are OpenTelemetry spans, not `tracing` spans, so the ids come
//! from the OpenTelemetry context current on the logging thread (the one an
//! entered or instrumented llmd span makes current).

use super::env::EnvReader;
use super::warning::Warning;
use opentelemetry::Context;
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use std::fmt;
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{FmtSpan, Format, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The level filter used when `RUST_LOG` is unset or invalid.
pub const DEFAULT_FILTER: &str = "info";

/// How log records are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per record (the default).
    Text,
    /// One JSON object per line (`LOG_FORMAT=json`).
    Json,
}

/// The logger's settings, from `RUST_LOG` and `LOG_FORMAT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// Line format.
    pub format: LogFormat,
    /// An `EnvFilter` directive string, such as `info,llmd_runtime=debug`.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            filter: DEFAULT_FILTER.to_owned(),
        }
    }
}

impl LogSettings {
    pub(crate) fn read<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>) -> LogSettings {
        let format =
            env.parse_first(
                &["LOG_FORMAT"],
                LogFormat::Text,
                "text or json",
                |value| match value.to_ascii_lowercase().as_str() {
                    "text" => Some(LogFormat::Text),
                    "json" => Some(LogFormat::Json),
                    _ => None,
                },
            );
        let filter = match env.get("RUST_LOG") {
            None => DEFAULT_FILTER.to_owned(),
            Some(filter) if EnvFilter::builder().parse(&filter).is_ok() => filter,
            Some(bad) => {
                env.warn(
                    "RUST_LOG",
                    &bad,
                    format!("not a valid log filter; using {DEFAULT_FILTER}"),
                );
                DEFAULT_FILTER.to_owned()
            }
        };
        LogSettings { format, filter }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// A subscriber writing records with `settings` to `writer`, each record
/// carrying the current `trace_id` and `span_id` when a span is current.
pub fn subscriber<W>(settings: &LogSettings, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::builder()
        .parse(&settings.filter)
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .with_span_events(FmtSpan::NONE);
    match settings.format {
        LogFormat::Text => Box::new(
            builder
                .event_format(WithTraceIds::text(Format::default()))
                .finish(),
        ),
        LogFormat::Json => Box::new(
            builder
                .fmt_fields(JsonFields::new())
                .event_format(WithTraceIds::json(Format::default().json()))
                .finish(),
        ),
    }
}

/// Installs the logger process-wide, writing to stderr; when another global
/// subscriber is already set, that one is kept and a warning returned.
pub(crate) fn install(settings: &LogSettings) -> Option<Warning> {
    tracing::subscriber::set_global_default(subscriber(settings, std::io::stderr))
        .err()
        .map(|_| {
            Warning::new(
                "logging",
                "",
                "a global tracing subscriber is already installed; keeping it \
                 (its records may lack trace_id/span_id)",
            )
        })
}

/// The ids of the span current on this thread, if any.
fn current_ids() -> Option<(TraceId, SpanId)> {
    Context::map_current(|cx| {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
    })
}

/// Wraps a formatter and appends the current trace and span ids.
struct WithTraceIds<E> {
    inner: E,
    json: bool,
}

impl<E> WithTraceIds<E> {
    fn text(inner: E) -> Self {
        WithTraceIds { inner, json: false }
    }

    fn json(inner: E) -> Self {
        WithTraceIds { inner, json: true }
    }
}

impl<S, N, E> FormatEvent<S, N> for WithTraceIds<E>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    E: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some((trace_id, span_id)) = current_ids() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let record = line.trim_end_matches('\n');
        match record.strip_suffix('}').filter(|_| self.json) {
            Some(object) => writeln!(
                writer,
                r#"{object},"trace_id":"{trace_id}","span_id":"{span_id}"}}"#
            ),
            None => writeln!(writer, "{record} trace_id={trace_id} span_id={span_id}"),
        }
    }
}
