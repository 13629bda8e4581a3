//! `OTEL_TRACES_EXPORTER=console`: one readable line per span.

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::fmt::{self, Write as _};
use std::io::Write;
use std::sync::{Mutex, PoisonError};

/// Writes one line per span (name, kind, trace/span/parent ids, duration,
/// status, attributes) to stderr, or to the writer given.
pub struct ConsoleExporter {
    out: Mutex<Box<dyn Write + Send>>,
}

impl ConsoleExporter {
    /// An exporter writing to stderr.
    pub fn stderr() -> ConsoleExporter {
        ConsoleExporter::to_writer(Box::new(std::io::stderr()))
    }

    /// An exporter writing to `out`.
    pub fn to_writer(out: Box<dyn Write + Send>) -> ConsoleExporter {
        ConsoleExporter {
            out: Mutex::new(out),
        }
    }
}

impl fmt::Debug for ConsoleExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConsoleExporter")
    }
}

impl SpanExporter for ConsoleExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut text = String::new();
        for span in &batch {
            // Writing to a String cannot fail.
            let _ = writeln!(text, "{}", SpanLine(span));
        }
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|error| OTelSdkError::InternalFailure(error.to_string()))
    }
}

/// Formats a span as one line.
pub struct SpanLine<'a>(pub &'a SpanData);

impl fmt::Display for SpanLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let span = self.0;
        let context = &span.span_context;
        let duration = span
            .end_time
            .duration_since(span.start_time)
            .unwrap_or_default();
        write!(
            f,
            "span {} kind={} trace_id={} span_id={} parent_span_id={} duration_us={}",
            span.name,
            kind_name(&span.span_kind),
            context.trace_id(),
            context.span_id(),
            parent_text(span.parent_span_id),
            duration.as_micros(),
        )?;
        match &span.status {
            Status::Unset => {}
            Status::Ok => f.write_str(" status=ok")?,
            Status::Error { description } => write!(f, " status=error({description})")?,
        }
        for attribute in &span.attributes {
            write!(f, " {}={}", attribute.key, attribute.value)?;
        }
        Ok(())
    }
}

fn parent_text(parent: SpanId) -> String {
    if parent == SpanId::INVALID {
        "-".to_owned()
    } else {
        parent.to_string()
    }
}

fn kind_name(kind: &SpanKind) -> &'static str {
    match kind {
        SpanKind::Client => "client",
        SpanKind::Server => "server",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    }
}
