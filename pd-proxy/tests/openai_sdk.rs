//! A streaming chat completion through the proxy with the official OpenAI
//! Python SDK (`openai` pinned in scripts/requirements-test.txt).

mod common;

use common::*;
use serde_json::Value;
use std::path::PathBuf;

/// The interpreter: `LLMD_TEST_PYTHON`, else the workspace's `.venv`.
fn python() -> PathBuf {
    let python = match std::env::var_os("LLMD_TEST_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python")),
    };
    assert!(
        python.exists(),
        "no Python interpreter at {} (set LLMD_TEST_PYTHON or run scripts/setup-test-deps.sh)",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_streams_a_chat_completion_through_the_proxy() {
    let prefill = Fake::start(prefiller()).await;
    let decoder = Fake::start(decoder()).await;
    let proxy = start_proxy(config(&decoder)).await;
    let output = tokio::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/openai_stream.py"
        ))
        .arg(format!("http://{}/v1", proxy.address()))
        .arg(prefill.host_port())
        .output()
        .await
        .expect("python runs");
    assert!(
        output.status.success(),
        "the SDK script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(result["text"], "Hello world");
    assert_eq!(result["chunks"], 4);
    assert_eq!(result["usage"]["prompt_tokens"], 64);
    assert_eq!(
        result["usage"]["prompt_tokens_details"]["cached_tokens"],
        48
    );

    let prefill_body = prefill.seen()[0].json();
    assert_eq!(prefill_body["stream"], false);
    let decode_body = decoder.seen()[0].json();
    assert_eq!(decode_body["stream"], true);
    assert_eq!(decode_body["kv_transfer_params"], prefiller_params());
    assert_eq!(
        decoder.seen()[0].header("authorization"),
        Some("Bearer test-key")
    );
}
