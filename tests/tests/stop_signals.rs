//! Each service stops cleanly on SIGTERM (what Kubernetes sends), not only
//! on Ctrl-C: it exits 0 and its queued spans reach the collector first.
//! The batch delay is set far beyond the test, so a span that arrives was
//! flushed by the shutdown.

mod support;

use llmd_runtime::testing::otlp_receiver::OtlpReceiver;
use llmd_tests::component::Component;
use llmd_tests::process::{ComponentProcess, Launch};
use llmd_tests::sampling::Sampling;
use llmd_tests::stack::{DEFAULT_MODEL, PodRole, SimLatency, StackOptions, Tracing, readiness};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::WAIT;

/// Stack options exporting every span to `receiver`.
fn traced(receiver: &OtlpReceiver) -> StackOptions {
    StackOptions::new(
        support::launcher(),
        Tracing::Otlp {
            endpoint: receiver.grpc_endpoint(),
            sampling: Sampling::ratio(1.0),
        },
    )
}

/// `launch` with spans held in the queue until shutdown.
fn held(mut launch: Launch) -> Launch {
    launch
        .env
        .push(("OTEL_BSP_SCHEDULE_DELAY".into(), "600000".into()));
    launch
}

/// Sends one POST of `body` to `path` at `address` and returns the status
/// line.
fn post(address: &str, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connects");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer read");
    answer.lines().next().unwrap_or_default().to_owned()
}

/// The launch of a scheduler named `name` on an ephemeral loopback port
/// with `env`, its pool one pod of the default model at `pod_address`
/// (written to a file in the returned directory, where its log goes too).
fn scheduler_launch(
    name: &str,
    pod_address: &str,
    env: Vec<(String, String)>,
) -> (Launch, std::path::PathBuf) {
    let dir = support::log_dir(&format!("{name}-files"));
    std::fs::create_dir_all(&dir).expect("dir");
    let pool = dir.join("pool.yaml");
    std::fs::write(
        &pool,
        format!("endpoints:\n- address: {pod_address}\n  model: {DEFAULT_MODEL}\n"),
    )
    .expect("pool written");
    let launch = Launch {
        name: name.to_owned(),
        component: Component::Scheduler,
        args: vec![
            "--pool".into(),
            pool.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--no-reload".into(),
        ],
        env,
    };
    (launch, dir)
}

/// Starts `launch`, sends one request, stops the process with SIGTERM and
/// checks that it exited 0 with the span named `span` exported.
fn stops_on_sigterm(
    receiver: &OtlpReceiver,
    launch: Launch,
    listening: &str,
    path: &str,
    body: &str,
    span: &str,
) {
    let dir = support::log_dir(&launch.name);
    std::fs::create_dir_all(&dir).expect("log dir");
    let mut process =
        ComponentProcess::spawn(&support::launcher(), &held(launch), &dir).expect("starts");
    let address = process.wait_for_line(listening, WAIT).expect("listening");
    let status_line = post(&address, path, body);
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    assert!(
        receiver.spans().iter().all(|s| s.name() != span),
        "{span} exported before the shutdown: the batch delay did not hold it"
    );
    let status = process.terminate().expect("stopped");
    assert!(status.success(), "{}: {status}", process.name());
    let names: Vec<String> = receiver
        .spans()
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    assert!(names.iter().any(|n| n == span), "{span} not in {names:?}");
}

#[test]
fn the_simulator_flushes_its_spans_and_exits_zero_on_sigterm() {
    let receiver = OtlpReceiver::start().expect("receiver");
    let launch = traced(&receiver).vllm_launch("vllm-sigterm", PodRole::Decode);
    let body = format!(r#"{{"model":"{DEFAULT_MODEL}","prompt":"hi","max_tokens":1}}"#);
    stops_on_sigterm(
        &receiver,
        launch,
        "vllm-sim listening on ",
        "/v1/completions",
        &body,
        "llm_request",
    );
}

#[test]
fn the_pd_proxy_flushes_its_spans_and_exits_zero_on_sigterm() {
    let receiver = OtlpReceiver::start().expect("receiver");
    // Nothing listens on port 1: the request span ends with a 503.
    let launch = traced(&receiver).pd_proxy_launch("pd-proxy-sigterm", 1);
    stops_on_sigterm(
        &receiver,
        launch,
        "llmd-pd-proxy listening on ",
        "/v1/completions",
        r#"{"model":"m","prompt":"hi"}"#,
        "llm_d.pd_proxy.request",
    );
}

#[test]
fn the_scheduler_flushes_its_spans_and_exits_zero_on_sigterm() {
    let receiver = OtlpReceiver::start().expect("receiver");
    // One pod nobody serves: the request span ends with "no ready endpoint".
    let (launch, _) = scheduler_launch(
        "scheduler-sigterm",
        "127.0.0.1:1",
        traced(&receiver).telemetry_env("llm-d-scheduler"),
    );
    let body =
        format!(r#"{{"model":"{DEFAULT_MODEL}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    stops_on_sigterm(
        &receiver,
        launch,
        "llmd-scheduler listening on ",
        "/v1/chat/completions",
        &body,
        "gateway.request",
    );
}

/// Tokens of the answers streamed while a process is stopped, one every
/// [`SLOW_TOKENS`]`.inter_token_latency`.
const STREAMED_TOKENS: usize = 20;

/// A simulated model slow enough that SIGTERM arrives mid-answer.
const SLOW_TOKENS: SimLatency = SimLatency {
    inter_token_latency: Duration::from_millis(50),
    ..SimLatency::NONE
};

/// Starts a simulated decode pod streaming at [`SLOW_TOKENS`]' pace;
/// gives it and its address.
fn slow_pod(name: &str) -> (ComponentProcess, String) {
    let options = StackOptions {
        latency: SLOW_TOKENS,
        ..StackOptions::new(support::launcher(), Tracing::Off)
    };
    let launch = options.vllm_launch(name, PodRole::Decode);
    let dir = support::log_dir(name);
    std::fs::create_dir_all(&dir).expect("log dir");
    let mut pod = ComponentProcess::spawn(&support::launcher(), &launch, &dir).expect("starts");
    let address = pod
        .wait_for_line("vllm-sim listening on ", WAIT)
        .expect("listening");
    (pod, address)
}

/// Sends a streamed chat completion of [`STREAMED_TOKENS`] tokens to
/// `address`, sends `process` SIGTERM once the first event has arrived,
/// and checks that the answer still ends with its usage and `[DONE]` and
/// that the process then exits 0.
fn finishes_a_stream_on_sigterm(process: &mut ComponentProcess, address: &str) {
    let body = format!(
        r#"{{"model":"{DEFAULT_MODEL}","messages":[{{"role":"user","content":"hi"}}],"max_tokens":{STREAMED_TOKENS},"stream":true,"stream_options":{{"include_usage":true}}}}"#
    );
    let mut stream = TcpStream::connect(address).expect("connects");
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request sent");
    let mut answer = Vec::new();
    let mut buffer = [0; 4096];
    while !String::from_utf8_lossy(&answer).contains("data: {") {
        let read = stream.read(&mut buffer).expect("answer read");
        assert_ne!(read, 0, "{}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buffer[..read]);
    }

    process.ask_to_terminate();
    stream
        .read_to_end(&mut answer)
        .expect("the answer is not cut");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(&format!(r#""completion_tokens":{STREAMED_TOKENS}"#)),
        "{answer}"
    );
    assert!(answer.contains("data: [DONE]"), "{answer}");
    assert!(
        answer.ends_with("0\r\n\r\n"),
        "the chunked body ends: {answer}"
    );
    let status = process.terminate().expect("stopped");
    assert!(status.success(), "{}: {status}", process.name());
}

#[test]
fn the_simulator_finishes_a_streamed_answer_on_sigterm() {
    let (mut pod, address) = slow_pod("vllm-sigterm-stream");
    finishes_a_stream_on_sigterm(&mut pod, &address);
}

#[test]
fn the_scheduler_finishes_a_streamed_answer_on_sigterm() {
    let (_pod, pod_address) = slow_pod("vllm-behind-scheduler-sigterm");
    let (launch, dir) = scheduler_launch(
        "scheduler-sigterm-stream",
        &pod_address,
        StackOptions::new(support::launcher(), Tracing::Off).telemetry_env("llm-d-scheduler"),
    );
    let mut scheduler =
        ComponentProcess::spawn(&support::launcher(), &launch, &dir).expect("starts");
    let address = scheduler
        .wait_for_line("llmd-scheduler listening on ", WAIT)
        .expect("listening");
    let gateway = address.parse().expect("a socket address");
    readiness::wait_until(gateway, "/metrics", WAIT, |status, body| {
        status == 200 && readiness::all_pods_ready(body, 1)
    })
    .expect("the pod is ready");
    finishes_a_stream_on_sigterm(&mut scheduler, &address);
}
