//! End to end: the `llmd-stack` binary itself. The demo exits 0 and
//! forwards every span to the user's collector; `--serve` prints each
//! trace, refuses a port in use, and leaves no child behind even when it is
//! killed outright.

mod support;

use llmd_runtime::testing::otlp_receiver::OtlpReceiver;
use llmd_tests::client::ChatRequest;
use llmd_tests::process::ComponentProcess;
use llmd_tests::stack::{DEFAULT_MODEL, services};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};
use support::WAIT;

/// The binary with a clean OpenTelemetry environment plus `env`.
fn llmd_stack(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut command = Command::new(support::launcher());
    command.args(args);
    for name in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command
}

#[test]
fn the_demo_exits_zero_and_forwards_every_span_to_the_users_collector() {
    let collector = OtlpReceiver::start().expect("collector");
    let output = llmd_stack(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.grpc_endpoint()),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".to_owned()),
        ],
    )
    .output()
    .expect("llmd-stack runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("every request succeeded and every trace has the expected shape"),
        "{stdout}"
    );
    assert!(
        stdout.contains("decision=prefill_decode"),
        "a P/D trace was printed:\n{stdout}"
    );
    let services: BTreeSet<String> = collector
        .spans()
        .iter()
        .filter_map(|s| s.service_name.clone())
        .collect();
    for wanted in [services::SCHEDULER, services::PD_PROXY, services::PREFILL] {
        assert!(
            services.contains(wanted),
            "{wanted} forwarded: {services:?}"
        );
    }
    assert!(
        services
            .iter()
            .any(|s| s.starts_with(services::DECODE_PREFIX)),
        "{services:?}"
    );
    assert!(
        collector
            .spans()
            .iter()
            .any(|s| s.name() == "gateway.request"),
        "the gateway's spans were forwarded"
    );
    let requests = collector.requests();
    assert!(
        stdout.contains(&format!(
            "forwarded {} export requests to the collector (0 failed, 0 dropped)",
            requests.len()
        )),
        "{stdout}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.encoding.as_deref() == Some("gzip")),
        "forwarded with the compression the user asked for"
    );
}

#[test]
fn serve_refuses_a_gateway_port_in_use_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("address").port().to_string();
    let output = llmd_stack(&["--serve", "--port", &port], &[])
        .output()
        .expect("llmd-stack runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("port {port} on 127.0.0.1 is already in use")),
        "{stderr}"
    );
    assert!(
        stderr.contains("--port"),
        "says how to choose another: {stderr}"
    );
}

/// Whether process `pid` is gone (or a zombie no one reaped yet).
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn serve_prints_each_trace_and_a_killed_stack_leaves_no_child_behind() {
    let log_dir = support::log_dir("e2e-serve");
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let command = llmd_stack(&["--serve", "--port", "0"], &[]);
    let mut serve =
        ComponentProcess::spawn_command("llmd-stack-serve", command, &log_dir).expect("starts");
    let mut children = Vec::new();
    for _ in 0..6 {
        let started = serve
            .wait_for_line("  · started ", WAIT)
            .expect("a child starts");
        let pid = started
            .rsplit_once("pid ")
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no pid in {started:?}"));
        children.push(pid);
    }
    let gateway = serve
        .wait_for_line("  gateway (OpenAI API): ", WAIT)
        .expect("the endpoints are printed");
    let base = gateway.trim_end_matches("/v1").to_owned();
    let runtime = support::runtime();
    let request = ChatRequest::new(DEFAULT_MODEL, "hello from the serve test");
    assert!(support::send(&runtime, &base, &request).succeeded());
    serve
        .wait_for_line("gateway.request (", WAIT)
        .expect("the trace is printed");

    serve.kill().expect("killed");
    let deadline = Instant::now() + WAIT;
    while !children.iter().all(|pid| is_gone(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<u32> = children.into_iter().filter(|pid| !is_gone(*pid)).collect();
    assert!(left.is_empty(), "orphaned children: {left:?}");
}
