//! The real `llmd-pd-proxy` binary as a child process: its command line,
//! and the spans it exports over OTLP to a real receiver.

mod common;

use common::*;
use llmd_runtime::testing::otlp_receiver::{OtlpReceiver, ReceivedSpan};
use std::process::Command;
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_llmd-pd-proxy");
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

/// Posts a chat completion, streamed or not, to the proxy at `address`.
async fn post_chat(address: &str, stream: bool) -> reqwest::Response {
    let response = client()
        .post(format!("http://{address}/v1/chat/completions"))
        .body(chat_body(stream).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
}

#[test]
fn help_documents_the_llm_d_flags() {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--port",
        "--vllm-port",
        "--kv-connector",
        "--connector",
        "--enable-ssrf-protection",
        "--allowed-prefill-hosts",
        "--secure-proxy",
        "--cert-path",
        "--enable-tls",
        "--tls-insecure-skip-verify",
        "--data-parallel-size",
        "--connect-timeout-ms",
        "--enable-prefiller-sampling",
        "--max-idle-conns-per-host",
        "--inference-pool",
        "--prefiller-use-tls",
        "--zap-log-level",
        "--configuration",
        "--configuration-file",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

/// Runs the binary with `args` in front of a fake decoder, sends it one
/// chat completion and one malformed request (which its connection logs at
/// debug level), stops it and returns what it logged.
async fn log_of_a_run(args: &[&str]) -> String {
    let decoder = Fake::start(decoder()).await;
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = std::env::temp_dir().join(format!("pd-proxy-log-{}-{run}.txt", std::process::id()));
    let (child, address) = Running::start(
        Command::new(BINARY)
            .args(args)
            .arg(format!("-vllm-port={}", decoder.address.port()))
            .args([
                "--decoder-host=127.0.0.1",
                "--bind-address=127.0.0.1",
                "-port=0",
            ])
            .env_remove("RUST_LOG")
            .env_remove("LOG_FORMAT")
            .stderr(std::fs::File::create(&log).unwrap()),
    )
    .await;
    post_chat(&address, false).await.bytes().await.unwrap();
    let mut raw = tokio::net::TcpStream::connect(&address).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut raw, b"NOT HTTP\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut answer)
        .await
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 400"), "{answer:?}");
    // A drained stop: every connection's record is written before the exit.
    assert!(child.stop().await.success());
    std::fs::read_to_string(&log).unwrap()
}

/// The arguments llm-d-modelservice's older chart renders for the routing
/// proxy (`-v=5` always, deprecated TLS flags), with Go's single-dash flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_d_charts_arguments_start_the_proxy_and_set_its_logging() {
    let chart = [
        "--connector=nixlv2",
        "-v=5",
        "--secure-proxy=false",
        "--prefiller-use-tls=false",
    ];
    let verbose = log_of_a_run(&chart).await;
    assert!(
        verbose.contains("prefiller-use-tls is deprecated: use enable-tls=prefiller"),
        "the deprecation is logged once the logger is up: {verbose}"
    );
    assert!(
        verbose.contains("connection ended with an error"),
        "-v=5 logs the proxy's debug records: {verbose}"
    );
    let quiet = log_of_a_run(&["--secure-proxy=false"]).await;
    assert!(
        !quiet.contains("connection ended with an error"),
        "at the default level debug records are not logged: {quiet}"
    );
    let json = log_of_a_run(&[
        "--secure-proxy=false",
        "--zap-encoder=json",
        "--zap-log-level=debug",
    ])
    .await;
    let record = json
        .lines()
        .find(|line| line.contains("connection ended with an error"))
        .unwrap_or_else(|| panic!("debug record in {json}"));
    let record: serde_json::Value = serde_json::from_str(record).unwrap();
    assert_eq!(record["level"], "DEBUG");
}

#[test]
fn unknown_configuration_keys_stop_the_start() {
    let output = Command::new(BINARY)
        .args(["--configuration", "port: 1\nprefill-retries: 3\n"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("prefill-retries"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_exports_the_p_d_trace_over_otlp() {
    let receiver = OtlpReceiver::start().unwrap();
    let prefill = Fake::start(prefiller()).await;
    let decoder = Fake::start(decoder()).await;
    let config_file =
        std::env::temp_dir().join(format!("pd-proxy-binary-{}.yaml", std::process::id()));
    std::fs::write(
        &config_file,
        format!(
            "kv-connector: nixlv2\nsecure-proxy: false\nbind-address: 127.0.0.1\ndecoder-host: 127.0.0.1\nvllm-port: {}\nprefill-max-retries: 1\n",
            decoder.address.port()
        ),
    )
    .unwrap();
    let (child, address) = Running::start(
        Command::new(BINARY)
            .args(["--port=0", "--configuration-file"])
            .arg(&config_file)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc_endpoint())
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            .env("OTEL_TRACES_SAMPLER", "parentbased_always_on")
            .env("OTEL_BSP_SCHEDULE_DELAY", "50")
            .env_remove("OTEL_SERVICE_NAME")
            .env_remove("OTEL_SDK_DISABLED"),
    )
    .await;

    let response = client()
        .post(format!("http://{address}/v1/chat/completions"))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .header("x-prefiller-host-port", prefill.host_port())
        .body(chat_body(true).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = sse_events(&response.text().await.unwrap());
    assert_eq!(
        events[3]["usage"]["prompt_tokens_details"]["cached_tokens"],
        48
    );

    let exit = child.stop().await;
    assert!(exit.success(), "graceful exit on SIGTERM: {exit:?}");

    let spans = tokio::task::spawn_blocking(move || {
        receiver.wait_for_spans(3, Duration::from_secs(10));
        receiver
    })
    .await
    .unwrap();
    let all = spans.spans();
    let find = |name: &str| -> ReceivedSpan {
        let found: Vec<_> = all.iter().filter(|s| s.name() == name).cloned().collect();
        assert_eq!(
            found.len(),
            1,
            "one {name} in {:?}",
            all.iter().map(|s| s.name().to_owned()).collect::<Vec<_>>()
        );
        found.into_iter().next().unwrap()
    };
    let request = find("llm_d.pd_proxy.request");
    let prefill_span = find("llm_d.pd_proxy.prefill");
    let decode = find("llm_d.pd_proxy.decode");
    assert_eq!(request.service_name.as_deref(), Some("llm-d-pd-proxy"));
    assert_eq!(request.span.kind, 2, "SERVER");
    assert_eq!(prefill_span.span.kind, 1, "INTERNAL");
    for span in [&request, &prefill_span, &decode] {
        assert_eq!(span.trace_id(), TRACE_ID);
    }
    assert_eq!(request.parent_span_id(), CALLER_SPAN);
    assert_eq!(prefill_span.parent_span_id(), request.span_id());
    assert_eq!(decode.parent_span_id(), request.span_id());
    assert_eq!(
        prefill.seen()[0].traceparent(),
        Some((TRACE_ID.into(), prefill_span.span_id()))
    );
    assert_eq!(
        decoder.seen()[0].traceparent(),
        Some((TRACE_ID.into(), decode.span_id()))
    );
    assert_eq!(
        request.string_attribute("llm_d.pd_proxy.connector"),
        Some("nixlv2")
    );
    assert_eq!(
        request.string_attribute("llm_d.pd_proxy.prefill_target"),
        Some(prefill.host_port().as_str())
    );
    assert!(request.attribute("llm_d.pd_proxy.true_ttft_ms").is_some());
    assert!(decode.attribute("gen_ai.usage.output_tokens").is_some());
    assert!(
        !spans.raw_bytes_contain(SECRET_PROMPT.as_bytes()),
        "no prompt byte left the process"
    );
    assert!(!spans.raw_bytes_contain(b"zebra-quokka"));
}

/// Pinned to one CPU, the proxy serves from its main thread alone (a
/// current-thread runtime: no worker threads beside it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_cpu_the_proxy_serves_from_one_thread() {
    let decoder = Fake::start(decoder()).await;
    let (child, address) = Running::start(
        Command::new("taskset")
            .args(["-c", "0", BINARY, "--port=0", "--secure-proxy=false"])
            .args(["--bind-address=127.0.0.1", "--decoder-host=127.0.0.1"])
            .arg(format!("--vllm-port={}", decoder.address.port()))
            .env("OTEL_SDK_DISABLED", "true"),
    )
    .await;
    post_chat(&address, false).await.bytes().await.unwrap();
    let threads = std::fs::read_dir(format!("/proc/{}/task", child.0.id()))
        .unwrap()
        .count();
    assert_eq!(threads, 1, "one thread serves on one CPU");
}

/// SIGTERM (what Kubernetes sends a sidecar) while an answer streams: the
/// proxy stops accepting, lets the answer finish, then exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_streaming_answer_finish_before_exiting() {
    const EVENTS: usize = 20;
    let decoder = Fake::start(slow_decoder(EVENTS, Duration::from_millis(50))).await;
    let (mut child, address) = Running::start(Command::new(BINARY).args([
        "--port=0",
        "--secure-proxy=false",
        "--bind-address=127.0.0.1",
        "--decoder-host=127.0.0.1",
        &format!("--vllm-port={}", decoder.address.port()),
    ]))
    .await;
    let mut response = post_chat(&address, true).await;
    let mut text = String::from_utf8(response.chunk().await.unwrap().unwrap().to_vec()).unwrap();

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    while let Some(chunk) = response.chunk().await.expect("the stream is not cut") {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(sse_events(&text).len(), EVENTS, "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let exit = tokio::task::spawn_blocking(move || child.0.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        tokio::net::TcpStream::connect(&address).await.is_err(),
        "nothing listens after the exit"
    );
}
