//! Decode-only pass-through cost of the proxy, against a fast local backend.
//!
//! Scenarios:
//! - 64 keep-alive connections sending small non-streaming requests as fast
//!   as answers come (saturation; `PD_BENCH_SECONDS` each, default 3,
//!   after a 1 s warm-up): directly to the backend, through the
//!   proxy binary (a child process, like nginx) with tracing off, through
//!   nginx when `nginx` is installed (`pd-proxy/benches/install-nginx.sh`);
//! - the proxy with tracing off, with tracing on at 100 % sampling (spans
//!   recorded and dropped), and with spans exported over OTLP/gRPC to a
//!   receiver in this process, at saturation in turn, 7 rounds of 1 s:
//!   throughput and the proxy's CPU time per request (from `/proc`), the
//!   traced ones against the untraced one round by round;
//! - the same 64 connections paced at a fixed total rate below saturation
//!   (`PD_BENCH_RATE`, default 10,000 req/s), latency counted from each
//!   send: the latency the proxy adds without queueing (tokio's 1 ms timer
//!   sends them in bursts of about rate / 1,000), and each proxy's CPU time
//!   per request. The targets take turns in 7 rounds of 1 s (after 250 ms
//!   of warm-up each), so that drift in the machine's state falls on all of
//!   them alike;
//! - one connection, streaming (SSE) requests: time to the first body byte,
//!   directly, through the proxy and through nginx.
//!
//! Saturation and paced scenarios also run through a bare hyper proxy (this
//! bench binary re-run as a child process: hyper's HTTP/1 server and the
//! same pooled hyper client the proxy uses, nothing else): the floor that
//! the proxy's own layers (routing, tracing, header handling) add to.
//!
//! `PD_BENCH_BASELINE`, when set, names another build of the proxy binary
//! (say, the commit before a change): it runs with tracing off beside this
//! build in the tracing and paced rounds, so that a change is measured
//! against it round by round rather than across runs.
//!
//! CPU layout (`PD_BENCH_LAYOUT`): `pinned` (the default on two or more
//! CPUs) keeps the load generator and the backend (this process) on CPU 0
//! and runs the proxy under test (ours or nginx, one worker each) alone on
//! CPU 1, as a sidecar with its own CPU would run; `shared` lets every
//! process use every CPU (nginx with two workers).
//!
//! The idle CPUs' settings are printed with the results: the streaming
//! scenario's added time to first byte is mostly the cost of waking an idle
//! CPU, which they decide (`pd-proxy/benches/cross_cpu_wakeup.py`).
//!
//! Run: `cargo bench -p llmd-pd-proxy --bench passthrough`.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use llmd_runtime::testing::otlp_receiver::OtlpReceiver;
use std::convert::Infallible;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

const CONNECTIONS: usize = 64;
/// Rounds of the paced scenario, and each round's warm-up and measurement.
const PACED_ROUNDS: usize = 7;
const PACED_WARM_UP: Duration = Duration::from_millis(250);
const PACED_ROUND: Duration = Duration::from_secs(1);
/// Rounds of the tracing comparison at saturation, and each round's
/// warm-up and measurement.
const TRACING_ROUNDS: usize = 7;
const TRACING_WARM_UP: Duration = Duration::from_millis(250);
const TRACING_ROUND: Duration = Duration::from_secs(1);
const REQUEST_BODY: &str = r#"{"model":"m","prompt":"hello","max_tokens":4}"#;
const RESPONSE_BODY: &str = r#"{"id":"c","choices":[{"text":"hi","finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":1}}"#;
const SSE_BODY: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";

/// Where the processes run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// This process on CPU 0, the proxy under test alone on CPU 1.
    Pinned,
    /// Every process on every CPU.
    Shared,
}

impl Layout {
    fn from_env() -> Layout {
        match std::env::var("PD_BENCH_LAYOUT").as_deref() {
            Ok("shared") => Layout::Shared,
            Ok("pinned") => Layout::Pinned,
            Ok(other) => panic!("PD_BENCH_LAYOUT={other}: expected pinned or shared"),
            Err(_) => {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                if cpus >= 2 && Command::new("taskset").arg("-V").output().is_ok() {
                    Layout::Pinned
                } else {
                    Layout::Shared
                }
            }
        }
    }

    /// Pins this process (before its runtime starts threads) to CPU 0.
    fn pin_self(self) {
        if self == Layout::Pinned {
            let status = Command::new("taskset")
                .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
                .stdout(Stdio::null())
                .status()
                .expect("taskset runs");
            assert!(status.success(), "taskset could not pin the bench");
        }
    }

    /// A command running `program`, alone on CPU 1 when pinned.
    fn command(self, program: &str) -> Command {
        match self {
            Layout::Pinned => {
                let mut command = Command::new("taskset");
                command.args(["-c", "1", program]);
                command
            }
            Layout::Shared => Command::new(program),
        }
    }

    fn nginx_workers(self) -> usize {
        match self {
            Layout::Pinned => 1,
            Layout::Shared => 2,
        }
    }
}

/// Set on the bench binary re-run as the bare hyper proxy: the backend's
/// address.
const BARE_PROXY_ENV: &str = "PD_BENCH_BARE_PROXY_BACKEND";

/// Another build of the proxy binary to compare this one with.
const BASELINE_ENV: &str = "PD_BENCH_BASELINE";

fn main() {
    if let Ok(backend) = std::env::var(BARE_PROXY_ENV) {
        run_bare_proxy(backend.parse().expect("backend address"));
        return;
    }
    let seconds: u64 = env_number("PD_BENCH_SECONDS", 3);
    let rate = env_number("PD_BENCH_RATE", 10_000);
    let layout = Layout::from_env();
    layout.pin_self();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(layout, Duration::from_secs(seconds), rate));
    let _ = std::fs::remove_dir_all(proxy_logs());
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn run(layout: Layout, duration: Duration, rate: u64) {
    let backend = start_backend().await;
    println!(
        "layout: {}; {CONNECTIONS} connections, {} s per scenario, small non-streaming responses",
        match layout {
            Layout::Pinned => "bench on CPU 0, proxy under test alone on CPU 1",
            Layout::Shared => "every process on every CPU",
        },
        duration.as_secs()
    );
    println!("idle CPUs: {}", idle_settings());
    let direct = load("direct backend", backend, duration).await;
    let tracing_off = [("OTEL_SDK_DISABLED", "true".to_owned())];
    let untraced = ProxyProcess::start(layout, backend, &tracing_off);
    let baseline = std::env::var(BASELINE_ENV).ok().map(|program| {
        println!("baseline build: {program}");
        ProxyProcess::start_program(layout, &program, backend, &tracing_off)
    });
    let plain = load("proxy, tracing off", untraced.address, duration).await;
    report_overhead(&direct, &plain);

    let bare = ProxyProcess::bare(layout, backend);
    let through_bare = load("bare hyper proxy", bare.address, duration).await;
    report_overhead(&direct, &through_bare);
    report_proxy_against("bare hyper", &plain, &through_bare);

    let nginx = Nginx::start(layout, backend);
    if let Some(nginx) = &nginx {
        let through_nginx = load("nginx proxy_pass", nginx.address, duration).await;
        report_overhead(&direct, &through_nginx);
        report_proxy_against("nginx", &plain, &through_nginx);
    } else {
        println!("nginx not installed (pd-proxy/benches/install-nginx.sh): skipped");
    }

    let sampled = ("OTEL_TRACES_SAMPLER", "always_on".to_owned());
    let recording = ProxyProcess::start(
        layout,
        backend,
        &[sampled.clone(), ("OTEL_TRACES_EXPORTER", "none".to_owned())],
    );
    let receiver = OtlpReceiver::start().expect("otlp receiver");
    let exporting = ProxyProcess::start(
        layout,
        backend,
        &[
            sampled,
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc_endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ],
    );
    let mut compared = vec![("proxy, tracing off", &untraced)];
    if let Some(baseline) = &baseline {
        compared.push(("baseline, tracing off", baseline));
    }
    compared.extend([
        ("tracing, no export", &recording),
        ("tracing, OTLP", &exporting),
    ]);
    tracing_rounds(&compared).await;
    drop((recording, exporting));
    println!("  spans received: {}", receiver.spans().len());
    drop(receiver);

    println!(
        "{CONNECTIONS} connections paced at {rate} req/s in total, below saturation; \
         {PACED_ROUNDS} interleaved rounds of {} ms per target",
        PACED_ROUND.as_millis()
    );
    let mut targets = vec![
        PacedTarget {
            name: "direct backend",
            address: backend,
            cpu: None,
        },
        PacedTarget::proxy("proxy, tracing off", &untraced),
    ];
    if let Some(baseline) = &baseline {
        targets.push(PacedTarget::proxy("baseline, tracing off", baseline));
    }
    targets.push(PacedTarget::proxy("bare hyper proxy", &bare));
    if let Some(nginx) = &nginx {
        targets.push(PacedTarget {
            name: "nginx proxy_pass",
            address: nginx.address,
            cpu: Some(nginx.workers_cpu()),
        });
    }
    paced_rounds(&targets, rate).await;
    drop(bare);

    println!("1 connection, streaming responses: time to first byte");
    let direct_ttfb = ttfb("direct backend", backend, duration).await;
    let proxy_ttfb = ttfb("proxy", untraced.address, duration).await;
    println!(
        "  added time to first byte: p50 {:+.1} us",
        proxy_ttfb - direct_ttfb
    );
    if let Some(nginx) = &nginx {
        let nginx_ttfb = ttfb("nginx", nginx.address, duration).await;
        println!(
            "  nginx's added time to first byte: p50 {:+.1} us",
            nginx_ttfb - direct_ttfb
        );
    }
    drop(nginx);
}

/// The kernel's idle settings, shown with the results: how long an idle
/// virtual CPU polls before it halts decides what waking it costs, about
/// 25 us a hop on a VM that halts at once
/// (`pd-proxy/benches/cross_cpu_wakeup.py` measures it), and the
/// streaming scenario wakes the proxy's CPU and the bench's twice each per
/// request.
fn idle_settings() -> String {
    const SHOWN: [(&str, &str); 2] = [
        (
            "cpuidle driver",
            "/sys/devices/system/cpu/cpuidle/current_driver",
        ),
        (
            "guest_halt_poll_ns",
            "/sys/module/haltpoll/parameters/guest_halt_poll_ns",
        ),
    ];
    SHOWN
        .iter()
        .map(|(name, path)| match std::fs::read_to_string(path) {
            Ok(value) => format!("{name} {}", value.trim()),
            Err(_) => format!("{name} not shown"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Our proxy's p50 and throughput against another proxy's.
fn report_proxy_against(name: &str, proxy: &Outcome, other: &Outcome) {
    println!(
        "  proxy vs {name}: p50 {:+.1} us, throughput {:.1} %",
        proxy.p50_us - other.p50_us,
        100.0 * proxy.rps / other.rps
    );
}

/// Reads the CPU time (user and system) that processes have used, summed
/// over their threads, from the scheduler's statistics in `/proc` (in
/// nanoseconds, where `/proc/PID/stat` counts in 10 ms ticks).
struct CpuMeter(Vec<u32>);

impl CpuMeter {
    fn time(&self) -> Duration {
        let nanoseconds = self
            .0
            .iter()
            .flat_map(|pid| {
                let tasks = format!("/proc/{pid}/task");
                std::fs::read_dir(&tasks).unwrap_or_else(|e| panic!("{tasks}: {e}"))
            })
            .filter_map(|thread| {
                std::fs::read_to_string(thread.ok()?.path().join("schedstat")).ok()
            })
            .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        Duration::from_nanos(nanoseconds)
    }
}

/// The real `llmd-pd-proxy` binary in front of the backend, in its own
/// process (as nginx is), with telemetry set by `env`. Its standard error
/// goes to a file, shown when it stops and searched for panics when a
/// request through it fails.
struct ProxyProcess {
    address: SocketAddr,
    child: Child,
    stderr: PathBuf,
}

/// The folder of the proxies' standard error files.
fn proxy_logs() -> PathBuf {
    std::env::temp_dir().join(format!("pd-proxy-bench-logs-{}", std::process::id()))
}

/// The panics the proxies have reported so far, each with its message (the
/// line after it), one per line; empty when there are none. A failed
/// request's own panic message carries them, so the cause of a proxy
/// dropping a connection is seen beside the failure.
fn proxy_panics() -> String {
    let mut panics = String::new();
    let Ok(logs) = std::fs::read_dir(proxy_logs()) else {
        return panics;
    };
    for log in logs.flatten() {
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if line.contains("panicked at") {
                let message = lines.next().unwrap_or_default();
                panics.push_str(&format!("\n  proxy {line} {message}"));
            }
        }
    }
    panics
}

impl ProxyProcess {
    fn start(layout: Layout, backend: SocketAddr, env: &[(&str, String)]) -> ProxyProcess {
        ProxyProcess::start_program(layout, env!("CARGO_BIN_EXE_llmd-pd-proxy"), backend, env)
    }

    /// Like [`ProxyProcess::start`], with another build of the binary.
    fn start_program(
        layout: Layout,
        program: &str,
        backend: SocketAddr,
        env: &[(&str, String)],
    ) -> ProxyProcess {
        let mut command = layout.command(program);
        command
            .args([
                "--port=0",
                "--secure-proxy=false",
                "--bind-address=127.0.0.1",
            ])
            .args([
                "--decoder-host=127.0.0.1",
                &format!("--vllm-port={}", backend.port()),
            ])
            .env_remove("OTEL_SDK_DISABLED")
            .env("RUST_LOG", "warn");
        for (key, value) in env {
            command.env(key, value);
        }
        ProxyProcess::spawn(command)
    }

    /// Reads the proxy's CPU time.
    fn cpu(&self) -> CpuMeter {
        CpuMeter(vec![self.child.id()])
    }

    /// This bench binary, re-run as the bare hyper proxy.
    fn bare(layout: Layout, backend: SocketAddr) -> ProxyProcess {
        let program = std::env::current_exe().expect("bench binary path");
        let mut command = layout.command(program.to_str().expect("UTF-8 path"));
        command.env(BARE_PROXY_ENV, backend.to_string());
        ProxyProcess::spawn(command)
    }

    /// Starts `command`, which prints `... listening on ADDRESS` first.
    fn spawn(mut command: Command) -> ProxyProcess {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let logs = proxy_logs();
        std::fs::create_dir_all(&logs).expect("a folder for the proxies' logs");
        let stderr = logs.join(format!(
            "proxy-{}.stderr",
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let log = File::create(&stderr).expect("a proxy's log file");
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("proxy starts");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("address line");
        let address = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .expect("listening address");
        ProxyProcess {
            address,
            child,
            stderr,
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(said) = std::fs::read_to_string(&self.stderr) {
            eprint!("{said}");
        }
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// The bare hyper proxy: hyper's HTTP/1 server forwarding every request,
/// body streaming, to `backend` through hyper's stock pooled client (the
/// one a plain hyper proxy would use), on a current-thread runtime.
fn run_bare_proxy(backend: SocketAddr) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!(
            "bare proxy listening on {}",
            listener.local_addr().expect("address")
        );
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = LegacyClient::builder(TokioExecutor::new()).build::<_, Incoming>(connector);
        let authority: http::uri::Authority = backend.to_string().parse().expect("authority");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            let authority = authority.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let (mut parts, body) = request.into_parts();
                    let mut uri = http::uri::Parts::default();
                    uri.scheme = Some(http::uri::Scheme::HTTP);
                    uri.authority = Some(authority.clone());
                    uri.path_and_query = parts.uri.path_and_query().cloned();
                    parts.uri = http::Uri::from_parts(uri).expect("upstream URI");
                    client.request(Request::from_parts(parts, body))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// A minimal HTTP/1 backend: small JSON, or SSE when the path says so.
async fn start_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|request: Request<Incoming>| async move {
                    let streaming = request.uri().path() == "/v1/chat/completions";
                    let _ = request.into_body().collect().await;
                    let (content_type, body) = if streaming {
                        ("text/event-stream", SSE_BODY)
                    } else {
                        ("application/json", RESPONSE_BODY)
                    };
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(StatusCode::OK)
                            .header("content-type", content_type)
                            .body(Full::new(Bytes::from_static(body.as_bytes())))
                            .expect("response"),
                    )
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

struct Outcome {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    /// The target's CPU time per request, when measured (else NaN).
    cpu_us_per_request: f64,
}

impl Outcome {
    /// Gathers the latencies (µs) the `workers` measured over `measured`.
    async fn of_workers(
        workers: Vec<tokio::task::JoinHandle<Vec<u32>>>,
        measured: Duration,
    ) -> Outcome {
        let mut all = Vec::new();
        for worker in workers {
            all.extend(worker.await.expect("worker"));
        }
        all.sort_unstable();
        Outcome {
            rps: all.len() as f64 / measured.as_secs_f64(),
            p50_us: percentile(&all, 0.50),
            p99_us: percentile(&all, 0.99),
            cpu_us_per_request: f64::NAN,
        }
    }

    /// Records `cpu`, the CPU time the target used over `measured`, per
    /// request measured.
    fn set_cpu(&mut self, cpu: Duration, measured: Duration) {
        self.cpu_us_per_request = cpu.as_secs_f64() * 1e6 / (self.rps * measured.as_secs_f64());
    }

    fn print(&self, name: &str) {
        println!(
            "{name:>22}: {:>8.0} req/s  p50 {:>7.1} us  p99 {:>7.1} us",
            self.rps, self.p50_us, self.p99_us
        );
    }
}

/// Posts one small completion request on `sender` and reads the answer.
async fn post_completion(sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>) {
    let request = Request::post("/v1/completions")
        .header("host", "bench")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(REQUEST_BODY.as_bytes())))
        .expect("request");
    sender.ready().await.expect("connection ready");
    let response = sender
        .send_request(request)
        .await
        .unwrap_or_else(|error| panic!("response: {error}{}", proxy_panics()));
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("body");
}

/// `CONNECTIONS` keep-alive connections posting small requests to
/// `/v1/completions` as fast as answers come, measured for `duration`
/// after a 1 s warm-up; prints the outcome as `name`'s.
async fn load(name: &str, target: SocketAddr, duration: Duration) -> Outcome {
    let outcome = saturate(target, Duration::from_secs(1), duration, None).await;
    outcome.print(name);
    outcome
}

/// The saturation load of [`load`], measured for `duration` after
/// `warm_up`; with `cpu`, also the CPU time the target spends per request
/// over the measured time.
async fn saturate(
    target: SocketAddr,
    warm_up: Duration,
    duration: Duration,
    cpu: Option<&CpuMeter>,
) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let stop = stop.clone();
        let measuring = measuring.clone();
        workers.push(tokio::spawn(async move {
            let mut sender = connect(target).await;
            let mut latencies = Vec::with_capacity(100_000);
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                post_completion(&mut sender).await;
                if measuring.load(Ordering::Relaxed) {
                    latencies.push(started.elapsed().as_micros() as u32);
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(warm_up).await;
    let cpu_before = cpu.map(CpuMeter::time);
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let cpu_used = cpu_before.zip(cpu.map(CpuMeter::time));
    stop.store(true, Ordering::Relaxed);
    let mut outcome = Outcome::of_workers(workers, elapsed).await;
    if let Some((before, after)) = cpu_used {
        outcome.set_cpu(after - before, elapsed);
    }
    outcome
}

/// The proxies at saturation in turn, `TRACING_ROUNDS` times over (each
/// round `TRACING_ROUND` after `TRACING_WARM_UP`), so that drift in the
/// machine's state falls on all of them alike: the first with tracing off,
/// the others traced (or a baseline build). Prints for each its median
/// throughput and CPU time per request (user and system, all its threads:
/// what a sidecar's own CPU pays per request, which sets its throughput
/// where that CPU is the limit) and, for the others, the median and range
/// of their change against the first in the same round.
async fn tracing_rounds(proxies: &[(&str, &ProxyProcess)]) {
    println!(
        "tracing at 100 % against off: {CONNECTIONS} connections at saturation, \
         {TRACING_ROUNDS} interleaved rounds of {} ms per proxy",
        TRACING_ROUND.as_millis()
    );
    let mut rounds: Vec<Vec<Outcome>> = (0..proxies.len()).map(|_| Vec::new()).collect();
    for _ in 0..TRACING_ROUNDS {
        for (outcomes, (_, proxy)) in rounds.iter_mut().zip(proxies) {
            let cpu = proxy.cpu();
            let outcome = saturate(proxy.address, TRACING_WARM_UP, TRACING_ROUND, Some(&cpu));
            outcomes.push(outcome.await);
        }
    }
    let median = |values: Vec<f64>| {
        let values = sorted(values);
        (
            values[values.len() / 2],
            values[0],
            values[values.len() - 1],
        )
    };
    let change = |index: usize, of: fn(&Outcome) -> f64| {
        median(
            rounds[index]
                .iter()
                .zip(&rounds[0])
                .map(|(on, off)| 100.0 * (of(on) / of(off) - 1.0))
                .collect(),
        )
    };
    for (index, (name, _)) in proxies.iter().enumerate() {
        let (rps, ..) = median(rounds[index].iter().map(|o| o.rps).collect());
        let (cpu, ..) = median(rounds[index].iter().map(|o| o.cpu_us_per_request).collect());
        print!("{name:>22}: {rps:>8.0} req/s, CPU {cpu:.1} us per request");
        if index > 0 {
            let (rps, rps_low, rps_high) = change(index, |o| o.rps);
            let (cpu, cpu_low, cpu_high) = change(index, |o| o.cpu_us_per_request);
            print!(
                "; throughput {rps:+.1} % (rounds {rps_low:+.1} to {rps_high:+.1}), \
                 CPU per request {cpu:+.1} % (rounds {cpu_low:+.1} to {cpu_high:+.1})"
            );
        }
        println!();
    }
}

/// `CONNECTIONS` keep-alive connections, each sending on a fixed schedule
/// so that all together offer `rate` requests per second (tokio's timer
/// ticks in milliseconds, so a request's latency runs from its send, not
/// from its scheduled time).
async fn paced(
    target: SocketAddr,
    rate: u64,
    duration: Duration,
    cpu: Option<&CpuMeter>,
) -> Outcome {
    let interval = Duration::from_secs_f64(CONNECTIONS as f64 / rate as f64);
    let start = Instant::now() + Duration::from_millis(50);
    let measured_from = start + PACED_WARM_UP;
    let end = measured_from + duration;
    let mut workers = Vec::new();
    for connection in 0..CONNECTIONS {
        let offset = interval.mul_f64(connection as f64 / CONNECTIONS as f64);
        workers.push(tokio::spawn(async move {
            let mut sender = connect(target).await;
            let mut latencies = Vec::new();
            let mut scheduled = start + offset;
            while scheduled < end {
                tokio::time::sleep_until(scheduled.into()).await;
                let sent = Instant::now();
                post_completion(&mut sender).await;
                if scheduled >= measured_from {
                    latencies.push(sent.elapsed().as_micros() as u32);
                }
                scheduled += interval;
            }
            latencies
        }));
    }
    let cpu_used = match cpu {
        Some(cpu) => {
            tokio::time::sleep_until(measured_from.into()).await;
            let before = cpu.time();
            tokio::time::sleep_until(end.into()).await;
            Some(cpu.time() - before)
        }
        None => None,
    };
    let mut outcome = Outcome::of_workers(workers, duration).await;
    if let Some(cpu_used) = cpu_used {
        outcome.set_cpu(cpu_used, duration);
    }
    outcome
}

/// A target of the paced scenario, and its CPU time when it is a process
/// of its own.
struct PacedTarget<'a> {
    name: &'a str,
    address: SocketAddr,
    cpu: Option<CpuMeter>,
}

impl<'a> PacedTarget<'a> {
    /// A proxy process of this bench, its CPU time measured.
    fn proxy(name: &'a str, process: &ProxyProcess) -> PacedTarget<'a> {
        PacedTarget {
            name,
            address: process.address,
            cpu: Some(process.cpu()),
        }
    }
}

/// Paced load on each target in turn, `PACED_ROUNDS` times over, so that
/// drift in the machine's state falls on every target alike; prints each
/// target's median p50 and, against the first target (the backend called
/// directly), the median and range of the p50 it adds per round, and the
/// median CPU time per request of each target that has its own process.
async fn paced_rounds(targets: &[PacedTarget<'_>], rate: u64) {
    let mut rounds: Vec<Vec<Outcome>> = targets.iter().map(|_| Vec::new()).collect();
    for _ in 0..PACED_ROUNDS {
        for (outcomes, target) in rounds.iter_mut().zip(targets) {
            outcomes.push(paced(target.address, rate, PACED_ROUND, target.cpu.as_ref()).await);
        }
    }
    let direct = &rounds[0];
    for (index, (outcomes, target)) in rounds.iter().zip(targets).enumerate() {
        let p50s = sorted(outcomes.iter().map(|o| o.p50_us).collect());
        print!(
            "{:>22}: p50 {:>7.1} us (median of rounds)",
            target.name,
            p50s[p50s.len() / 2]
        );
        if index > 0 {
            let added = sorted(
                outcomes
                    .iter()
                    .zip(direct)
                    .map(|(o, d)| o.p50_us - d.p50_us)
                    .collect(),
            );
            print!(
                ", added {:+.1} us (rounds {:+.1} to {:+.1})",
                added[added.len() / 2],
                added[0],
                added[added.len() - 1]
            );
        }
        if target.cpu.is_some() {
            let cpu = sorted(outcomes.iter().map(|o| o.cpu_us_per_request).collect());
            print!(", CPU {:.1} us per request", cpu[cpu.len() / 2]);
        }
        println!();
    }
}

/// `values` in increasing order.
fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

fn report_overhead(direct: &Outcome, other: &Outcome) {
    println!(
        "  added p50 {:+.1} us, throughput {:.1} % of direct",
        other.p50_us - direct.p50_us,
        100.0 * other.rps / direct.rps
    );
}

/// Median time to the first body byte of a streaming response, one connection.
async fn ttfb(name: &str, target: SocketAddr, duration: Duration) -> f64 {
    let mut sender = connect(target).await;
    let mut samples = Vec::new();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let started = Instant::now();
        let request = Request::post("/v1/chat/completions")
            .header("host", "bench")
            .body(Full::new(Bytes::from_static(b"{\"stream\":true}")))
            .expect("request");
        sender.ready().await.expect("connection ready");
        let response = sender
            .send_request(request)
            .await
            .unwrap_or_else(|error| panic!("response: {error}{}", proxy_panics()));
        let mut body = response.into_body();
        let first = body.frame().await;
        samples.push(started.elapsed().as_micros() as u32);
        assert!(first.is_some());
        while body.frame().await.is_some() {}
    }
    samples.sort_unstable();
    let p50 = percentile(&samples, 0.50);
    println!(
        "{name:>22}: TTFB p50 {p50:>7.1} us  p99 {:>7.1} us",
        percentile(&samples, 0.99)
    );
    p50
}

async fn connect(target: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(target).await.expect("connect");
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted[index])
}

/// nginx reverse-proxying to the backend, started with a generated config.
struct Nginx {
    address: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    fn start(layout: Layout, backend: SocketAddr) -> Option<Nginx> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let dir = std::env::temp_dir().join(format!("pd-proxy-bench-nginx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let config = format!(
            "worker_processes {workers};\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dir};\n  proxy_temp_path {dir};\n\
               upstream backend {{ server {backend}; keepalive 128; keepalive_requests 100000000; }}\n\
               server {{\n    listen 127.0.0.1:{port};\n    keepalive_requests 100000000;\n    location / {{\n\
                 proxy_pass http://backend;\n      proxy_http_version 1.1;\n\
                 proxy_set_header Connection \"\";\n      proxy_buffering off;\n    }}\n  }}\n}}\n",
            dir = dir.display(),
            workers = layout.nginx_workers(),
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, config).ok()?;
        let child = layout
            .command(binary)
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(&dir)
            .spawn()
            .ok()?;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..100 {
            if std::net::TcpStream::connect(address).is_ok() {
                return Some(Nginx {
                    address,
                    child,
                    dir,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Nginx {
    /// Reads the CPU time of nginx's workers (the master's children, from
    /// `/proc/PID/task/PID/children`), which serve every request.
    fn workers_cpu(&self) -> CpuMeter {
        let master = self.child.id();
        let path = format!("/proc/{master}/task/{master}/children");
        let children = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        CpuMeter(
            children
                .split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect(),
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers; SIGKILL would orphan them.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
