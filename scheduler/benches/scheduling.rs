//! Scheduler benchmarks:
//! - one scheduling decision over 100 endpoints with a warm KV index
//!   (tokenization excluded), for the default and the P/D configuration,
//!   with telemetry off and with every span recorded (under a sampled
//!   parent, as the gateway runs it; spans dropped at their end, so export
//!   costs nothing);
//! - local tokenization of an ~8k-token chat prompt (trained BPE tokenizer
//!   with a chat template);
//! - the gateway's added latency over calling the chosen pod directly.
//!
//! Besides criterion's estimates, each group prints p50/p99 over a fixed
//! number of timed runs.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use llmd_kv_cache::PodId;
use llmd_kv_cache::events::{BlockStored, EngineHash, EventBatch, EventSource, KvEvent};
use llmd_runtime::Context;
use llmd_runtime::state;
use llmd_runtime::testing::install_discarding;
use llmd_scheduler::config::EndpointPickerConfig;
use llmd_scheduler::kv_index::PrefixCache;
use llmd_scheduler::plugins::SchedulingRequest;
use llmd_scheduler::plugins::registry::{build, prefix_cache_settings};
use llmd_scheduler::pool::{EndpointSpec, Load, PoolSnapshot};
use llmd_scheduler::scheduler::Scheduler;
use llmd_scheduler::tokenize::{LocalTokenizer, Prompt};
use opentelemetry::context::FutureExt;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::trace::Sampler;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const ENDPOINTS: usize = 100;
const PROMPT_TOKENS: u32 = 2048;

/// Whether criterion runs for measurement (`cargo bench`), not as a quick
/// check under `cargo test`, where the timed loops are kept short.
fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `full` runs when measuring, a handful otherwise.
fn runs(full: usize) -> usize {
    if measuring() { full } else { 3 }
}

fn percentiles(mut samples: Vec<Duration>, what: &str) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "{what}: p50 {:.1} us, p99 {:.1} us over {} runs",
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        samples.len()
    );
}

/// 100 ready endpoints with varied load; a third hold a prefix of the
/// prompt in the index, of varied length.
async fn warm_pool(config_text: &str) -> (Scheduler, PoolSnapshot, Vec<u32>) {
    let config = EndpointPickerConfig::parse(config_text).unwrap();
    let settings = prefix_cache_settings(&config).unwrap().unwrap();
    let cache = Arc::new(PrefixCache::new(&settings).unwrap());
    let scheduler = build(&config, Some(cache.clone())).unwrap();
    let specs = (0..ENDPOINTS)
        .map(|i| {
            let spec = EndpointSpec::new(
                format!("10.0.{}.{}:8000", i / 250, i % 250 + 1)
                    .parse()
                    .unwrap(),
                "m",
            );
            if i % 4 == 0 {
                spec.with_role("prefill")
            } else {
                spec.with_role("decode")
            }
        })
        .collect();
    let pool = PoolSnapshot::new(specs);
    let prompt: Vec<u32> = (0..PROMPT_TOKENS).collect();
    for (i, endpoint) in pool.endpoints().iter().enumerate() {
        endpoint.record_load(Load {
            waiting: (i * 7 % 13) as u64,
            running: 4,
            kv_cache_usage: (i % 10) as f64 / 10.0,
        });
        if i % 3 == 0 {
            let held = (PROMPT_TOKENS as usize / 16) * (i % 7 + 1) / 8 * 16;
            let batch = EventBatch {
                ts: 0.0,
                events: vec![KvEvent::BlockStored(BlockStored {
                    block_hashes: (0..held as u64 / 16)
                        .map(|b| EngineHash::U64(i as u64 * 1_000_000 + b))
                        .collect(),
                    token_ids: prompt[..held].to_vec(),
                    block_size: 16,
                    ..BlockStored::default()
                })],
                data_parallel_rank: None,
            };
            let source = EventSource {
                pod: PodId::new(endpoint.id()),
                model: "m".to_owned(),
            };
            cache.indexer().ingestor().apply(&source, &batch).await;
        }
    }
    (scheduler, pool, prompt)
}

fn scheduling(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pd = include_str!("../tests/fixtures/pd-epp-config.yaml");
    for (name, config) in [
        ("default", llmd_scheduler::config::DEFAULT_CONFIG),
        ("pd", pd),
    ] {
        let (scheduler, pool, prompt) = rt.block_on(warm_pool(config));
        let request = SchedulingRequest::with_tokens("m", "bench", prompt);
        let candidates = pool.endpoints().to_vec();
        let mut samples = Vec::with_capacity(20_000);
        for _ in 0..runs(20_000) {
            let start = Instant::now();
            rt.block_on(scheduler.schedule(&request, &candidates))
                .unwrap();
            samples.push(start.elapsed());
        }
        percentiles(samples, &format!("schedule/{name}/100 endpoints"));
        c.bench_function(&format!("schedule/{name}/100_endpoints"), |b| {
            b.iter(|| {
                rt.block_on(scheduler.schedule(&request, &candidates))
                    .unwrap()
            })
        });
        let provider = install_discarding(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        let parent = Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(1_u128),
            SpanId::from(1_u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ));
        c.bench_function(&format!("schedule/{name}/100_endpoints/sampled"), |b| {
            b.iter(|| {
                rt.block_on(
                    scheduler
                        .schedule(&request, &candidates)
                        .with_context(parent.clone()),
                )
                .unwrap()
            })
        });
        state::uninstall();
        let _ = provider.shutdown();
    }
}

/// Trains a byte-level BPE tokenizer on a synthetic corpus and writes it
/// with a chat template.
fn trained_tokenizer(dir: &std::path::Path) {
    use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{
        DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
        TokenizerBuilder,
    };
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(4000)
        .min_frequency(2)
        .build();
    let mut tokenizer = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default())
    .with_pre_tokenizer(Some(ByteLevel::default().into()))
    .build()
    .unwrap();
    tokenizer
        .train(&mut trainer, corpus(20_000).into_iter())
        .unwrap();
    tokenizer.save(dir.join("tokenizer.json"), false).unwrap();
    let config = serde_json::json!({
        "bos_token": "<s>",
        "chat_template": "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}",
    });
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
}

/// Deterministic pseudo-English sentences.
fn corpus(sentences: usize) -> Vec<String> {
    const WORDS: [&str; 24] = [
        "the",
        "model",
        "cache",
        "request",
        "token",
        "prefill",
        "decode",
        "scheduler",
        "routes",
        "every",
        "prompt",
        "to",
        "a",
        "pod",
        "with",
        "its",
        "blocks",
        "and",
        "latency",
        "of",
        "serving",
        "is",
        "low",
        "when",
    ];
    let mut state = 7u64;
    (0..sentences)
        .map(|_| {
            (0..12)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    WORDS[(state >> 33) as usize % WORDS.len()]
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn tokenization(c: &mut Criterion) {
    let dir = common::TempDir::new();
    trained_tokenizer(&dir.0);
    let tokenizer = LocalTokenizer::from_dir(&dir.0).unwrap();
    let mut turns = Vec::new();
    let mut sentences = corpus(4000).into_iter();
    let prompt = loop {
        let content: Vec<String> = sentences.by_ref().take(20).collect();
        turns.push(serde_json::json!({"role": if turns.len() % 2 == 0 { "user" } else { "assistant" }, "content": content.join(". ")}));
        let prompt = Prompt::Chat(serde_json::Value::Array(turns.clone()));
        if tokenizer.encode(&prompt).unwrap().len() >= 8192 {
            break prompt;
        }
    };
    let tokens = tokenizer.encode(&prompt).unwrap().len();
    let mut samples = Vec::new();
    for _ in 0..runs(200) {
        let start = Instant::now();
        tokenizer.encode(&prompt).unwrap();
        samples.push(start.elapsed());
    }
    percentiles(samples, &format!("tokenize/chat/{tokens} tokens"));
    c.bench_function("tokenize/chat_8k", |b| {
        b.iter(|| tokenizer.encode(&prompt).unwrap())
    });
}

const QUEUE_AND_KV: &str = "\
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: decode-filter
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: decode-filter
  - pluginRef: queue-scorer
  - pluginRef: kv-cache-utilization-scorer
  - pluginRef: max-score-picker
";

fn gateway_overhead(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let pod = rt.block_on(common::FakePod::start("p"));
    let gateway = rt.block_on(async {
        let gateway = common::Gateway::start(
            &[common::endpoint(&pod, None, None)],
            Some(QUEUE_AND_KV),
            |_| {},
        )
        .await;
        gateway.wait_ready(1).await;
        gateway
    });
    let client = llmd_scheduler::app::http_client().unwrap();
    let body = serde_json::json!({"model": "m", "prompt": "hello"}).to_string();
    let call = |url: String| {
        let request = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone());
        async move { request.send().await.unwrap().bytes().await.unwrap() }
    };
    let direct = format!("http://{}/v1/completions", pod.addr);
    let via = gateway.url("/v1/completions");
    let mut p50 = Vec::new();
    for (name, url) in [("direct", &direct), ("via_gateway", &via)] {
        let mut samples = Vec::new();
        for _ in 0..runs(3000) {
            let start = Instant::now();
            rt.block_on(call(url.clone()));
            samples.push(start.elapsed());
        }
        samples.sort_unstable();
        p50.push(samples[samples.len() / 2]);
        percentiles(samples, &format!("completion/{name}"));
        c.bench_function(&format!("completion/{name}"), |b| {
            b.iter(|| rt.block_on(call(url.clone())))
        });
    }
    println!(
        "gateway added latency (p50 via - p50 direct): {:.1} us",
        (p50[1].as_secs_f64() - p50[0].as_secs_f64()) * 1e6
    );
    pod.seen.lock().unwrap().clear();
}

criterion_group!(benches, scheduling, tokenization, gateway_overhead);
criterion_main!(benches);
