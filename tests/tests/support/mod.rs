//! Shared by the end-to-end tests: starting a stack of real processes from
//! the `llmd-stack` binary, sending requests, W3C trace parents, and the
//! export barrier used to prove that spans were NOT exported.

#![allow(dead_code)]

use llmd_runtime::testing::otlp_receiver::OtlpReceiver;
use llmd_tests::client::{self, ChatOutcome, ChatRequest};
use llmd_tests::collect;
use llmd_tests::sampling::Sampling;
use llmd_tests::stack::{PodRole, Stack, StackOptions, Tracing, services};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Longest wait for spans (debug builds on a loaded 2-core machine).
pub const WAIT: Duration = Duration::from_secs(30);

/// The `llmd-stack` binary built for these tests.
pub fn launcher() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_llmd-stack"))
}

/// A log directory for `name` under Cargo's target tmp dir (kept after the
/// run for inspection).
pub fn log_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()))
}

/// Starts a stack exporting to `receiver` with `sampling`.
pub fn start_stack(
    name: &str,
    receiver: &OtlpReceiver,
    sampling: Sampling,
    decode_pods: usize,
) -> Stack {
    let options = StackOptions {
        decode_pods,
        log_dir: Some(log_dir(name)),
        ..StackOptions::new(
            launcher(),
            Tracing::Otlp {
                endpoint: receiver.grpc_endpoint(),
                sampling,
            },
        )
    };
    Stack::start(options, &mut |line| eprintln!("[{name}] {line}")).expect("the stack starts")
}

/// A multi-threaded runtime for the HTTP client.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Sends `request` to `base_url` and returns the answer (panics on
/// transport errors).
pub fn send(
    runtime: &tokio::runtime::Runtime,
    base_url: &str,
    request: &ChatRequest,
) -> ChatOutcome {
    let client = client::http_client().expect("an HTTP client");
    runtime
        .block_on(client::chat(&client, base_url, request))
        .unwrap_or_else(|error| panic!("request to {base_url} failed: {error}"))
}

/// A word unique to this call, for prompts and request ids.
pub fn unique(label: &str) -> String {
    format!("{label}-{}", uuid::Uuid::new_v4().simple())
}

/// A W3C trace parent made up by the test (the "caller").
#[derive(Clone, Debug)]
pub struct TraceParent {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits: the caller's span, the parent of the first server span.
    pub span_id: String,
    /// The sampled flag.
    pub sampled: bool,
}

impl TraceParent {
    /// New random ids.
    pub fn new(sampled: bool) -> TraceParent {
        let trace = uuid::Uuid::new_v4().simple().to_string();
        let span = uuid::Uuid::new_v4().simple().to_string();
        TraceParent {
            trace_id: trace,
            span_id: span[..16].to_owned(),
            sampled,
        }
    }

    /// The `traceparent` header value.
    pub fn header(&self) -> String {
        let flags = if self.sampled { "01" } else { "00" };
        format!("00-{}-{}-{flags}", self.trace_id, self.span_id)
    }
}

/// A chat request with a unique prompt of `words` words.
pub fn request(model: &str, label: &str, words: usize, stream: bool) -> ChatRequest {
    let id = unique(label);
    ChatRequest {
        stream,
        request_id: Some(id.clone()),
        ..ChatRequest::new(model, &llmd_tests::demo::prompt(&id, label, words))
    }
}

/// A prompt long enough for P/D on a stack with the default threshold.
pub fn long_words(stack: &Stack) -> usize {
    stack.non_cached_tokens() * 2
}

/// Sends a sampled request through every process of the stack (the
/// gateway, each pd-proxy with its decode pod, the prefill pod) and waits
/// until each one's spans arrived. Each process exports its spans in the
/// order they ended, so afterwards any span of an earlier request would
/// have arrived too: what has not arrived was not exported. Returns the
/// barrier's trace ids.
pub fn export_barrier(
    stack: &Stack,
    receiver: &OtlpReceiver,
    runtime: &tokio::runtime::Runtime,
) -> Vec<String> {
    let mut hops: Vec<(SocketAddr, Vec<String>)> =
        vec![(stack.gateway(), vec![services::SCHEDULER.to_owned()])];
    for pod in stack.pods() {
        match (pod.role, pod.proxy) {
            (PodRole::Decode, Some(proxy)) => {
                hops.push((proxy, vec![services::PD_PROXY.to_owned(), pod.name.clone()]))
            }
            _ => hops.push((pod.vllm, vec![pod.name.clone()])),
        }
    }
    let mut trace_ids = Vec::new();
    for (address, expected) in hops {
        let parent = TraceParent::new(true);
        let mut barrier = request(stack.model(), "barrier", 4, false);
        barrier.traceparent = Some(parent.header());
        let answer = send(runtime, &format!("http://{address}"), &barrier);
        assert!(
            answer.succeeded(),
            "barrier request to {address}: {answer:?}"
        );
        let wanted: Vec<collect::Wanted<'_>> =
            expected.iter().map(|s| (s.as_str(), None)).collect();
        let missing = collect::wait_for_spans(receiver, &parent.trace_id, &wanted, WAIT);
        assert!(missing.is_empty(), "barrier spans missing from {missing:?}");
        trace_ids.push(parent.trace_id);
    }
    trace_ids
}

/// The Python interpreter of the tests: `LLMD_TEST_PYTHON`, else the
/// workspace's `.venv/bin/python`; panics with a clear message when
/// neither exists or the OpenTelemetry SDK is missing.
pub fn python() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("LLMD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join(".venv/bin/python"));
    let probe = std::process::Command::new(&python)
        .args([
            "-c",
            "import opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.http.trace_exporter",
        ])
        .output();
    match probe {
        Ok(output) if output.status.success() => python,
        Ok(output) => panic!(
            "{} lacks the OpenTelemetry SDK ({}); run scripts/setup-test-deps.sh (installs scripts/requirements-test.txt)",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => panic!(
            "no Python interpreter at {} ({error}); set LLMD_TEST_PYTHON or run scripts/setup-test-deps.sh",
            python.display()
        ),
    }
}
