//! End to end, real processes: a service instrumented with the Python
//! OpenTelemetry SDK, placed where vLLM would be (the decoder behind an
//! `llmd-pd-proxy`), receives our `traceparent` and its span joins our
//! trace under the right parent, on the P/D path (under
//! `llm_d.pd_proxy.decode`) and the decode-only path (under
//! `llm_d.pd_proxy.request`).

mod support;

use llmd_runtime::testing::otlp_receiver::{OtlpReceiver, Transport};
use llmd_tests::client::ChatRequest;
use llmd_tests::collect;
use llmd_tests::process::ComponentProcess;
use llmd_tests::sampling::Sampling;
use llmd_tests::stack::{PodRole, StackOptions, Tracing, services};
use llmd_tests::trace_tree::{Node, TraceTree};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::{TraceParent, WAIT};

const PYTHON_SERVICE: &str = "python-decoder";

fn start_python_decoder(
    receiver: &OtlpReceiver,
    log_dir: &std::path::Path,
) -> (ComponentProcess, SocketAddr) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/otel_decoder.py");
    let mut command = Command::new(support::python());
    command
        .arg(script)
        .args(["--port", "0"])
        .env("OTEL_SERVICE_NAME", PYTHON_SERVICE)
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            receiver.http_traces_url(),
        )
        .env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
        .env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        .env("OTEL_TRACES_SAMPLER_ARG", "1.0")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let mut process =
        ComponentProcess::spawn_command(PYTHON_SERVICE, command, log_dir).expect("python starts");
    let address = process
        .wait_for_line("python decoder listening on ", Duration::from_secs(60))
        .expect("the python decoder reports its address");
    (process, address.parse().expect("an address"))
}

fn node<'t>(tree: &'t TraceTree, service: &str, name: &str) -> &'t Node {
    let found: Vec<&Node> = tree
        .nodes()
        .into_iter()
        .filter(|n| n.service() == service && n.span.name() == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {name} from {service} in\n{}",
        tree.render()
    );
    found[0]
}

#[test]
fn a_python_otel_service_behind_the_pd_proxy_joins_the_trace_under_the_right_parent() {
    let receiver = OtlpReceiver::start().expect("receiver");
    let log_dir = support::log_dir("e2e-python");
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let options = StackOptions::new(
        support::launcher(),
        Tracing::Otlp {
            endpoint: receiver.grpc_endpoint(),
            sampling: Sampling::ratio(1.0),
        },
    );
    let (_python, decoder) = start_python_decoder(&receiver, &log_dir);
    let mut prefill = ComponentProcess::spawn(
        &options.launcher,
        &options.vllm_launch(services::PREFILL, PodRole::Prefill),
        &log_dir,
    )
    .expect("prefill starts");
    let mut proxy = ComponentProcess::spawn(
        &options.launcher,
        &options.pd_proxy_launch("pd-proxy", decoder.port()),
        &log_dir,
    )
    .expect("pd-proxy starts");
    let prefill_address = prefill
        .wait_for_line("vllm-sim listening on ", WAIT)
        .expect("prefill address");
    let proxy_address = proxy
        .wait_for_line("llmd-pd-proxy listening on ", WAIT)
        .expect("proxy address");
    let runtime = support::runtime();
    let proxy_url = format!("http://{proxy_address}");

    // P/D: the Python span is the decode leg's child.
    let parent = TraceParent::new(true);
    let words = llmd_tests::stack::DEFAULT_NON_CACHED_TOKENS * 2;
    let request = ChatRequest {
        traceparent: Some(parent.header()),
        headers: vec![("x-prefiller-host-port".into(), prefill_address.clone())],
        ..support::request(&options.model, "python-pd", words, false)
    };
    let answer = support::send(&runtime, &proxy_url, &request);
    assert!(answer.succeeded(), "{answer:?}");
    let missing = collect::wait_for_spans(
        &receiver,
        &parent.trace_id,
        &[
            (services::PD_PROXY, Some("llm_d.pd_proxy.request")),
            (services::PD_PROXY, Some("llm_d.pd_proxy.prefill")),
            (services::PD_PROXY, Some("llm_d.pd_proxy.decode")),
            (services::PREFILL, Some("llm_request")),
            (PYTHON_SERVICE, Some("llm_request")),
        ],
        WAIT,
    );
    assert!(missing.is_empty(), "missing: {missing:?}");
    let tree = TraceTree::build(&parent.trace_id, &receiver.spans());
    let proxied = node(&tree, services::PD_PROXY, "llm_d.pd_proxy.request");
    assert_eq!(proxied.span.parent_span_id(), parent.span_id);
    let decode = node(&tree, services::PD_PROXY, "llm_d.pd_proxy.decode");
    let prefill_leg = node(&tree, services::PD_PROXY, "llm_d.pd_proxy.prefill");
    let python = node(&tree, PYTHON_SERVICE, "llm_request");
    assert_eq!(decode.span.parent_span_id(), proxied.span.span_id());
    assert_eq!(
        python.span.parent_span_id(),
        decode.span.span_id(),
        "under the decode leg"
    );
    assert_eq!(
        node(&tree, services::PREFILL, "llm_request")
            .span
            .parent_span_id(),
        prefill_leg.span.span_id()
    );
    assert!(python.is_server());
    assert_eq!(
        python.span.transport,
        Transport::HttpProtobuf,
        "exported by the Python SDK"
    );
    assert_eq!(
        python
            .attribute_text("test.kv_transfer.do_remote_prefill")
            .as_deref(),
        Some("true"),
        "the decoder got the prefiller's kv_transfer_params"
    );

    // Decode only (no prefiller header), streamed: under the proxy's span.
    let parent = TraceParent::new(true);
    let request = ChatRequest {
        traceparent: Some(parent.header()),
        ..support::request(&options.model, "python-decode", 8, true)
    };
    let answer = support::send(&runtime, &proxy_url, &request);
    assert!(answer.succeeded(), "{answer:?}");
    let missing = collect::wait_for_spans(
        &receiver,
        &parent.trace_id,
        &[
            (services::PD_PROXY, Some("llm_d.pd_proxy.request")),
            (PYTHON_SERVICE, Some("llm_request")),
        ],
        WAIT,
    );
    assert!(missing.is_empty(), "missing: {missing:?}");
    let tree = TraceTree::build(&parent.trace_id, &receiver.spans());
    let proxied = node(&tree, services::PD_PROXY, "llm_d.pd_proxy.request");
    let python = node(&tree, PYTHON_SERVICE, "llm_request");
    assert_eq!(proxied.span.parent_span_id(), parent.span_id);
    assert_eq!(
        python.span.parent_span_id(),
        proxied.span.span_id(),
        "under the proxy's span"
    );
    assert_eq!(tree.roots.len(), 1, "{}", tree.render());
}
