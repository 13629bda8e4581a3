//! The `vllm-sim` binary as a child process: flags, the OpenAI API, KV
//! event replay and `llm_request` spans exported over real OTLP.

mod common;

use llmd_kv_cache::events::{KvEvent, decode_batch};
use llmd_runtime::testing::otlp_receiver::OtlpReceiver;
use llmd_sim::kv_events::END_OF_REPLAY;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

/// Kills the child when the test ends, passing or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn vllm_sim() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vllm-sim"));
    command
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_RESOURCE_ATTRIBUTES");
    command
}

/// Reads the startup lines until `prefix`, returning the rest of that line.
fn startup_value(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    prefix: &str,
) -> String {
    for line in lines {
        let line = line.expect("child stdout");
        if let Some(value) = line.strip_prefix(prefix) {
            return value.to_owned();
        }
    }
    panic!("the simulator exited before printing {prefix:?}");
}

#[tokio::test]
async fn the_binary_serves_publishes_and_traces() {
    let receiver = OtlpReceiver::start().unwrap();
    let events_config = json!({"enable_kv_cache_events": true, "publisher": "zmq",
        "endpoint": "tcp://127.0.0.1:*", "replay_endpoint": "tcp://127.0.0.1:*", "topic": "kv@test@m"});
    let mut child = vllm_sim()
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--model",
            "m",
            "--block-size",
            "4",
        ])
        .args(["--otlp-traces-endpoint", &receiver.grpc_endpoint()])
        .args(["--kv-events-config", &events_config.to_string()])
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout: ChildStdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let mut lines = BufReader::new(stdout).lines();
    let addr = startup_value(&mut lines, "vllm-sim listening on ");
    startup_value(&mut lines, "vllm-sim kv events on ");
    let replay_endpoint = startup_value(&mut lines, "vllm-sim kv events replay on ");

    let client = common::client();
    let answer: Value = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "a b c d e f"}], "max_tokens": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["usage"]["prompt_tokens"], 8);
    assert_eq!(answer["usage"]["completion_tokens"], 3);

    let spans = receiver.wait_for_spans(1, Duration::from_secs(60));
    let span = spans
        .iter()
        .find(|s| s.name() == "llm_request")
        .expect("llm_request exported");
    assert_eq!(span.service_name.as_deref(), Some("vllm"));
    assert_eq!(span.span.kind, 2, "SERVER");
    assert_eq!(span.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span.parent_span_id(), "00f067aa0ba902b7");

    let context = zmq::Context::new();
    let dealer = context.socket(zmq::DEALER).unwrap();
    dealer.set_rcvtimeo(30_000).unwrap();
    dealer.connect(&replay_endpoint).unwrap();
    dealer
        .send_multipart([&[][..], &0u64.to_be_bytes()[..]], 0)
        .unwrap();
    let first = dealer.recv_multipart(0).unwrap();
    assert_eq!(first[1], 0u64.to_be_bytes());
    let events = decode_batch(&first[2]).unwrap().batch.events;
    assert!(
        matches!(&events[..], [KvEvent::BlockStored(stored)] if stored.block_hashes.len() == 2)
    );
    let end = dealer.recv_multipart(0).unwrap();
    assert_eq!(end[1], END_OF_REPLAY);

    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("vllm:prefix_cache_queries_total{engine=\"0\",model_name=\"m\"} 8.0"),
        "{metrics}"
    );
}

#[test]
fn bad_flags_exit_with_a_clear_message() {
    let output = vllm_sim()
        .args([
            "--model",
            "m",
            "--kv-transfer-config",
            r#"{"kv_connector":"Nope","kv_role":"kv_both"}"#,
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("NixlConnector"), "{stderr}");

    let output = vllm_sim()
        .args(["--model", "m", "--block-size", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--block-size"));
}
