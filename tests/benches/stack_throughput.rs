//! Throughput and latency of the whole local stack (gateway, scheduler
//! plugins, KV index, pd-proxy, simulated vLLM), with
//! tracing off and at 1%, 10% and 100% parent-based sampling, spans
//! exported over OTLP gRPC to a receiver in this process (which counts
//! them from the export's framing, without decoding them, and keeps
//! nothing).
//!
//! ```text
//! cargo bench -p llmd-tests --bench stack_throughput
//! LLMD_BENCH_SECONDS=5 LLMD_BENCH_CONCURRENCY=8 cargo bench -p llmd-tests --bench stack_throughput
//! LLMD_BENCH_TRACING=off,1 cargo bench -p llmd-tests --bench stack_throughput
//! ```
//!
//! `LLMD_BENCH_TRACING` picks the settings: `off` and sampling ratios
//! (default `off,0.01,0.1,1`). `LLMD_BENCH_MODEL_TIME` picks the simulated
//! model's timing: `none` (the default: every request is CPU work of the
//! stack alone, the case where tracing costs the most) or `demo` (15 ms to
//! the first token, 50 us per prompt token, 2 ms between tokens, as in the
//! demo: the stack waits on the model, as a real deployment does).
//!
//! Under `cargo test` (no `--bench` argument) it runs one short setting as
//! a smoke test.

use llmd_runtime::testing::otlp_receiver::OtlpReceiver;
use llmd_tests::client::{self, ChatRequest};
use llmd_tests::sampling::Sampling;
use llmd_tests::stack::{SimLatency, Stack, StackOptions, Tracing};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Requests sent before measuring.
const WARM_UP_REQUESTS: usize = 50;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let setting = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let seconds = setting("LLMD_BENCH_SECONDS", if benchmarking { 5 } else { 1 });
    let concurrency = setting("LLMD_BENCH_CONCURRENCY", 8);
    let latency = match std::env::var("LLMD_BENCH_MODEL_TIME").as_deref() {
        Err(_) | Ok("none") => SimLatency::NONE,
        Ok("demo") => SimLatency::DEMO,
        Ok(other) => {
            return Err(format!("LLMD_BENCH_MODEL_TIME: {other:?} is not none or demo").into());
        }
    };
    let ratios: Vec<Option<f64>> = match std::env::var("LLMD_BENCH_TRACING") {
        Ok(list) => list
            .split(',')
            .map(|item| match item.trim() {
                "off" => Ok(None),
                ratio => match ratio.parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => Ok(Some(r)),
                    _ => Err(format!(
                        "LLMD_BENCH_TRACING: {ratio:?} is not off or a ratio in [0, 1]"
                    )),
                },
            })
            .collect::<Result<_, _>>()?,
        Err(_) if benchmarking => vec![None, Some(0.01), Some(0.1), Some(1.0)],
        Err(_) => vec![Some(1.0)],
    };
    let model_time = if latency == SimLatency::NONE {
        "no model time"
    } else {
        "demo model time"
    };
    println!(
        "stack throughput: decode-only chat requests, {concurrency} concurrent clients, {model_time}, {seconds} s per setting"
    );
    println!(
        "{:<14} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "tracing", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "spans"
    );
    for ratio in ratios {
        let measured = measure(
            ratio,
            latency,
            Duration::from_secs(seconds),
            concurrency as usize,
        )?;
        let label = ratio.map_or_else(|| "off".to_owned(), |r| format!("{}%", r * 100.0));
        println!(
            "{label:<14} {:>10.1} {:>10.2} {:>10.2} {:>10.2} {:>8} {:>10}",
            measured.throughput,
            measured.p50,
            measured.p90,
            measured.p99,
            measured.errors,
            measured.spans
        );
        if !benchmarking && (measured.errors > 0 || measured.spans == 0) {
            return Err("smoke run: requests failed or no span was exported".into());
        }
    }
    Ok(())
}

struct Measured {
    throughput: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    errors: usize,
    spans: usize,
}

fn measure(
    ratio: Option<f64>,
    latency: SimLatency,
    duration: Duration,
    concurrency: usize,
) -> Result<Measured, Box<dyn std::error::Error>> {
    let receiver = OtlpReceiver::start_counting()?;
    let tracing = match ratio {
        None => Tracing::Off,
        Some(ratio) => Tracing::Otlp {
            endpoint: receiver.grpc_endpoint(),
            sampling: Sampling::ratio(ratio),
        },
    };
    let launcher = PathBuf::from(env!("CARGO_BIN_EXE_llmd-stack"));
    let options = StackOptions {
        latency,
        ..StackOptions::new(launcher, tracing)
    };
    let stack = Stack::start(options, &mut |_| {})?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = client::http_client()?;
    let url = stack.gateway_url();
    let request = ChatRequest::new(stack.model(), "how fast is the stack today");
    let (latencies, errors) = runtime.block_on(async {
        for _ in 0..WARM_UP_REQUESTS {
            let _ = client::chat(&client, &url, &request).await;
        }
        let deadline = Instant::now() + duration;
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, url, request) = (client.clone(), url.clone(), request.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut errors = 0;
                    while Instant::now() < deadline {
                        let start = Instant::now();
                        match client::chat(&client, &url, &request).await {
                            Ok(outcome) if outcome.succeeded() => latencies.push(start.elapsed()),
                            _ => errors += 1,
                        }
                    }
                    (latencies, errors)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut errors = 0;
        for worker in workers {
            if let Ok((latencies, failed)) = worker.await {
                all.extend(latencies);
                errors += failed;
            }
        }
        (all, errors)
    });
    drop(stack);
    let mut millis: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    millis.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        let index = ((millis.len() as f64 - 1.0) * p).round() as usize;
        millis.get(index).copied().unwrap_or(f64::NAN)
    };
    Ok(Measured {
        throughput: millis.len() as f64 / duration.as_secs_f64(),
        p50: percentile(0.5),
        p90: percentile(0.9),
        p99: percentile(0.99),
        errors,
        spans: receiver.span_count(),
    })
}
