//! `err`, `#[derive(ErrorType)]`, early returns, `?` and panics.

use llmd_runtime::testing::{attribute, capture};
use llmd_runtime::{ErrorType, traced_span};
use opentelemetry::Value;
use opentelemetry::trace::Status;
use std::fmt;

/// An error whose message echoes the request: it must appear nowhere in a span.
#[derive(Debug, ErrorType)]
enum ScoreError {
    IndexUnavailable,
    PodRefused(#[allow(dead_code)] String),
    HTTPStatus {
        #[allow(dead_code)]
        code: u16,
    },
}

const SECRET: &str = "PROMPT-TEXT-7d1e tell me everything";

impl fmt::Display for ScoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed on {SECRET}")
    }
}

#[derive(Debug, ErrorType)]
struct ParseFailure;

#[derive(Debug, ErrorType)]
enum Never {}

#[test]
fn derive_gives_snake_case_labels_for_every_variant_shape() {
    assert_eq!(
        ScoreError::IndexUnavailable.error_type(),
        "index_unavailable"
    );
    assert_eq!(
        ScoreError::PodRefused(SECRET.into()).error_type(),
        "pod_refused"
    );
    assert_eq!(
        ScoreError::HTTPStatus { code: 503 }.error_type(),
        "http_status"
    );
    assert_eq!(ParseFailure.error_type(), "parse_failure");
    let never: Result<(), Never> = Ok(());
    assert!(never.is_ok());
}

fn parse(n: i32) -> Result<i32, ScoreError> {
    if n < 0 {
        Err(ScoreError::PodRefused(SECRET.into()))
    } else {
        Ok(n)
    }
}

#[traced_span("llm_d.kv_cache.get_scores", err)]
fn score_sync(n: i32) -> Result<i32, ScoreError> {
    if n == 0 {
        return Err(ScoreError::IndexUnavailable);
    }
    let v = parse(n)?;
    Ok(v * 2)
}

#[traced_span("llm_d.kv_cache.get_scores", err)]
async fn score_async(n: i32) -> Result<i32, ScoreError> {
    tokio::task::yield_now().await;
    if n == 0 {
        return Err(ScoreError::IndexUnavailable);
    }
    let v = parse(n)?;
    Ok(v * 2)
}

fn assert_failed_with(span: &opentelemetry_sdk::trace::SpanData, label: &'static str) {
    assert_eq!(attribute(span, "error.type"), Some(&Value::from(label)));
    assert_eq!(span.status, Status::error(label));
    let everything = format!("{span:?}");
    assert!(
        !everything.contains("PROMPT-TEXT"),
        "error message leaked into the span: {everything}"
    );
}

#[test]
fn sync_err_records_error_type_and_never_the_message() {
    let cap = capture();
    assert_eq!(score_sync(2).ok(), Some(4));
    let ok = cap.one("llm_d.kv_cache.get_scores");
    assert_eq!(ok.status, Status::Unset);
    assert_eq!(attribute(&ok, "error.type"), None);
    cap.clear();

    assert!(score_sync(0).is_err(), "early return");
    assert_failed_with(&cap.one("llm_d.kv_cache.get_scores"), "index_unavailable");
    cap.clear();

    assert!(score_sync(-1).is_err(), "`?`");
    assert_failed_with(&cap.one("llm_d.kv_cache.get_scores"), "pod_refused");
}

#[tokio::test(flavor = "current_thread")]
async fn async_err_records_error_type_and_never_the_message() {
    let cap = capture();
    assert_eq!(score_async(3).await.ok(), Some(6));
    assert_eq!(cap.one("llm_d.kv_cache.get_scores").status, Status::Unset);
    cap.clear();

    assert!(score_async(0).await.is_err(), "early return");
    assert_failed_with(&cap.one("llm_d.kv_cache.get_scores"), "index_unavailable");
    cap.clear();

    assert!(score_async(-5).await.is_err(), "`?`");
    assert_failed_with(&cap.one("llm_d.kv_cache.get_scores"), "pod_refused");
}

#[traced_span("llm_d.kv_cache.storage.lookup")]
fn early_return_without_err(n: u32) -> Result<u32, ScoreError> {
    if n == 0 {
        return Err(ScoreError::IndexUnavailable);
    }
    Ok(n)
}

#[test]
fn without_err_an_error_is_not_recorded() {
    let cap = capture();
    assert!(early_return_without_err(0).is_err());
    let s = cap.one("llm_d.kv_cache.storage.lookup");
    assert_eq!(s.status, Status::Unset);
    assert_eq!(attribute(&s, "error.type"), None);
}

#[traced_span("llm_d.pd_proxy.decode")]
fn panics_sync() {
    panic!("{SECRET}");
}

#[traced_span("llm_d.pd_proxy.prefill", err)]
async fn panics_async() -> Result<(), ScoreError> {
    tokio::task::yield_now().await;
    panic!("{SECRET}");
}

#[test]
fn a_panicking_sync_fn_still_exports_its_span() {
    let cap = capture();
    assert!(std::panic::catch_unwind(panics_sync).is_err());
    assert_failed_with(&cap.one("llm_d.pd_proxy.decode"), "panic");
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_async_fn_still_exports_its_span() {
    let cap = capture();
    assert!(tokio::spawn(panics_async()).await.is_err());
    assert_failed_with(&cap.one("llm_d.pd_proxy.prefill"), "panic");
}
