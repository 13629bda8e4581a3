//! `telemetry::init` reads the real process environment: each case re-runs
//! this test binary as a child process with `OTEL_*` variables set (so no
//! test mutates its own environment) and checks what the child printed.

use llmd_runtime::span::{self, SpanMeta};
use llmd_runtime::{state, telemetry};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use std::process::{Command, Output};

static CHILD_SPAN: SpanMeta = SpanMeta::new("llm_d.test.env.child", SpanKind::Internal);

/// Set in the child to the name of the case it runs.
const CASE: &str = "LLMD_TELEMETRY_ENV_CASE";

fn run_child(test: &str, vars: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CASE, test)
        .env_remove("RUST_LOG");
    for key in std::env::vars()
        .map(|(key, _)| key)
        .filter(|k| k.starts_with("OTEL_"))
    {
        command.env_remove(key);
    }
    command.envs(vars.iter().copied());
    let output = command.output().expect("child test process");
    assert!(
        output.status.success(),
        "child failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn in_child(test: &str) -> bool {
    std::env::var(CASE).is_ok_and(|case| case == test)
}

#[test]
fn console_exporter_and_json_warnings_from_the_environment() {
    const TEST: &str = "console_exporter_and_json_warnings_from_the_environment";
    if in_child(TEST) {
        let guard = telemetry::init("default-name");
        assert!(guard.is_enabled());
        span::start(&CHILD_SPAN, None, || {
            [KeyValue::new("gen_ai.request.model", "m")]
        })
        .end();
        guard.shutdown().expect("clean shutdown");
        return;
    }
    let output = run_child(
        TEST,
        &[
            ("OTEL_TRACES_EXPORTER", "console"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "bogus"),
            ("LOG_FORMAT", "json"),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let span_line = stderr
        .lines()
        .find(|line| line.starts_with("span llm_d.test.env.child kind=internal "))
        .unwrap_or_else(|| panic!("no console span line in:\n{stderr}"));
    assert!(span_line.contains("gen_ai.request.model=m"), "{span_line}");
    let warning = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|record| record["level"] == "WARN")
        .unwrap_or_else(|| panic!("no JSON warning in:\n{stderr}"));
    let message = warning["fields"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("OTEL_BSP_MAX_QUEUE_SIZE=\"bogus\"") && message.contains("using 2048"),
        "{message}"
    );
}

#[test]
fn sdk_disabled_from_the_environment() {
    const TEST: &str = "sdk_disabled_from_the_environment";
    if in_child(TEST) {
        let guard = telemetry::init("default-name");
        assert!(!guard.is_enabled());
        assert!(!state::enabled());
        span::start(&CHILD_SPAN, None, || [KeyValue::new("k", 1_i64)]).end();
        return;
    }
    let output = run_child(
        TEST,
        &[
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "console"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("span llm_d.test.env.child"), "{stderr}");
}
