//! Log records carry the current llmd span's trace and span ids, in text
//! and JSON, and the console exporter prints readable span lines.

use llmd_runtime::span::{self, SpanMeta};
use llmd_runtime::telemetry::logging::subscriber;
use llmd_runtime::telemetry::{ConsoleExporter, LogFormat, LogSettings};
use llmd_runtime::testing::capture;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, TraceContextExt};
use opentelemetry_sdk::trace::SpanExporter;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

static REQUEST: SpanMeta = SpanMeta::new("llm_d.test.log.request", SpanKind::Server);
static STEP: SpanMeta = SpanMeta::new("llm_d.test.log.step", SpanKind::Internal);

/// A writer whose output the test reads back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Logs one record outside any span and one inside a span, with `format`;
/// returns the lines and the span's (trace id, span id).
fn log_inside_a_span(format: LogFormat) -> (Vec<String>, String, String) {
    let _capture = capture();
    let out = Shared::default();
    let writer = out.clone();
    let settings = LogSettings {
        format,
        filter: "info".to_owned(),
    };
    let logger = subscriber(&settings, move || writer.clone());
    let ids = tracing::subscriber::with_default(logger, || {
        tracing::info!(step = "before", "outside any span");
        let started = span::start(&REQUEST, None, || [KeyValue::new("k", 1_i64)]);
        let ids = started
            .context()
            .map(|cx| {
                let sc = cx.span().span_context().clone();
                (sc.trace_id().to_string(), sc.span_id().to_string())
            })
            .expect("a recorded span");
        let _entered = started.enter();
        tracing::info!(step = "inside", "inside the span");
        tracing::debug!("filtered out at info");
        ids
    });
    (out.lines(), ids.0, ids.1)
}

#[test]
fn text_lines_carry_the_current_span_ids() {
    let (lines, trace_id, span_id) = log_inside_a_span(LogFormat::Text);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("outside any span"), "{}", lines[0]);
    assert!(!lines[0].contains("trace_id="), "{}", lines[0]);
    assert!(lines[1].contains("inside the span"), "{}", lines[1]);
    assert!(
        lines[1].ends_with(&format!(" trace_id={trace_id} span_id={span_id}")),
        "{}",
        lines[1]
    );
}

#[test]
fn json_records_carry_the_current_span_ids() {
    let (lines, trace_id, span_id) = log_inside_a_span(LogFormat::Json);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let outside: serde_json::Value = serde_json::from_str(&lines[0]).expect("JSON record");
    let inside: serde_json::Value = serde_json::from_str(&lines[1]).expect("JSON record");
    assert_eq!(outside["fields"]["step"], "before");
    assert!(outside.get("trace_id").is_none(), "{outside}");
    assert_eq!(inside["fields"]["message"], "inside the span");
    assert_eq!(inside["level"], "INFO");
    assert_eq!(inside["trace_id"], trace_id.as_str());
    assert_eq!(inside["span_id"], span_id.as_str());
}

#[test]
fn nested_span_logs_carry_the_innermost_span_id() {
    let _capture = capture();
    let out = Shared::default();
    let writer = out.clone();
    let logger = subscriber(&LogSettings::default(), move || writer.clone());
    let step_id = tracing::subscriber::with_default(logger, || {
        let _request = span::start(&REQUEST, None, || [KeyValue::new("k", 1_i64)]).enter();
        let step = span::start(&STEP, None, || [KeyValue::new("k", 2_i64)]);
        let step_id = step
            .context()
            .map(|cx| cx.span().span_context().span_id().to_string())
            .expect("a recorded span");
        let _step = step.enter();
        tracing::warn!("in the step");
        step_id
    });
    let lines = out.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!("span_id={step_id}")),
        "{}",
        lines[0]
    );
}

#[test]
fn console_exporter_prints_one_readable_line_per_span() {
    let capture = capture();
    {
        let _request = span::start(&REQUEST, None, || {
            [KeyValue::new("gen_ai.request.model", "m1")]
        })
        .enter();
        span::start(&STEP, None, || {
            [KeyValue::new("llm_d.kv_cache.pod_count", 2_i64)]
        })
        .end();
    }
    let spans = capture.spans();
    let request = capture.one("llm_d.test.log.request");
    let step = capture.one("llm_d.test.log.step");
    let out = Shared::default();
    let exporter = ConsoleExporter::to_writer(Box::new(out.clone()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime
        .block_on(exporter.export(spans))
        .expect("console export");
    let lines = out.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let step_line = &lines[0];
    let request_line = &lines[1];
    assert!(
        step_line.starts_with("span llm_d.test.log.step kind=internal "),
        "{step_line}"
    );
    assert!(step_line.contains(&format!("trace_id={}", step.span_context.trace_id())));
    assert!(step_line.contains(&format!("span_id={}", step.span_context.span_id())));
    assert!(step_line.contains(&format!(
        "parent_span_id={}",
        request.span_context.span_id()
    )));
    assert!(step_line.contains("duration_us="), "{step_line}");
    assert!(
        step_line.ends_with(" llm_d.kv_cache.pod_count=2"),
        "{step_line}"
    );
    assert!(request_line.starts_with("span llm_d.test.log.request kind=server "));
    assert!(request_line.contains("parent_span_id=- "), "{request_line}");
    assert!(
        request_line.contains("gen_ai.request.model=m1"),
        "{request_line}"
    );
}
