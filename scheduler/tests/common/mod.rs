//! Test support: fake vLLM pods (real HTTP servers), a KV-event publisher
//! (a real ZMQ PUB socket), a small generated tokenizer and temporary files.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use llmd_kv_cache::events::{BlockStored, Encoding, EngineHash, EventBatch, KvEvent, encode_batch};
use llmd_scheduler::app::App;
use llmd_scheduler::cli::Options;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "llmd-scheduler-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a fake pod saw of one inference request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

/// A fake vLLM pod: `/metrics` with settable load, the OpenAI routes
/// (answering with its own name, streaming when asked), `/tokenize`.
pub struct FakePod {
    pub addr: SocketAddr,
    pub name: &'static str,
    pub waiting: Arc<AtomicU64>,
    pub kv_usage_permille: Arc<AtomicU64>,
    pub metrics_up: Arc<AtomicBool>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Released by the test to let a streamed answer send its last chunk.
    pub release_stream: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct PodState {
    name: &'static str,
    waiting: Arc<AtomicU64>,
    kv_usage_permille: Arc<AtomicU64>,
    metrics_up: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    release_stream: Arc<Notify>,
}

impl FakePod {
    pub async fn start(name: &'static str) -> FakePod {
        let state = PodState {
            name,
            waiting: Arc::new(AtomicU64::new(0)),
            kv_usage_permille: Arc::new(AtomicU64::new(0)),
            metrics_up: Arc::new(AtomicBool::new(true)),
            seen: Arc::new(Mutex::new(Vec::new())),
            release_stream: Arc::new(Notify::new()),
        };
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/v1/completions", post(infer))
            .route("/v1/chat/completions", post(infer))
            .route("/tokenize", post(tokenize))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePod {
            addr,
            name,
            waiting: state.waiting,
            kv_usage_permille: state.kv_usage_permille,
            metrics_up: state.metrics_up,
            seen: state.seen,
            release_stream: state.release_stream,
            task,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn set_waiting(&self, n: u64) {
        self.waiting.store(n, Ordering::Relaxed);
    }
}

impl Drop for FakePod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn metrics(State(s): State<PodState>) -> Response {
    if !s.metrics_up.load(Ordering::Relaxed) {
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    format!(
        "# TYPE vllm:num_requests_waiting gauge\n\
         vllm:num_requests_waiting{{engine=\"0\",model_name=\"m\"}} {}\n\
         vllm:num_requests_running{{engine=\"0\",model_name=\"m\"}} 1\n\
         vllm:kv_cache_usage_perc{{engine=\"0\",model_name=\"m\"}} {}\n",
        s.waiting.load(Ordering::Relaxed),
        s.kv_usage_permille.load(Ordering::Relaxed) as f64 / 1000.0
    )
    .into_response()
}

async fn infer(
    State(s): State<PodState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    let stream = body
        .get("stream")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    s.seen.lock().unwrap().push(Seen {
        path: uri.path().to_owned(),
        headers,
        body,
    });
    if !stream {
        return axum::Json(
            serde_json::json!({ "id": "cmpl-1", "object": "text_completion", "pod": s.name }),
        )
        .into_response();
    }
    let release = s.release_stream.clone();
    let name = s.name;
    let chunks = async_stream(name, release);
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(chunks))
        .unwrap()
}

/// Two SSE chunks; the second only after the test releases it.
fn async_stream(
    name: &'static str,
    release: Arc<Notify>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_util::stream::unfold(0u8, move |step| {
        let release = release.clone();
        async move {
            match step {
                0 => Some((
                    Ok(bytes::Bytes::from(format!(
                        "data: {{\"pod\":\"{name}\",\"n\":1}}\n\n"
                    ))),
                    1,
                )),
                1 => {
                    release.notified().await;
                    Some((Ok(bytes::Bytes::from_static(b"data: [DONE]\n\n")), 2))
                }
                _ => None,
            }
        }
    })
}

async fn tokenize(body: String) -> Response {
    let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let text = body.get("prompt").and_then(|p| p.as_str()).unwrap_or("");
    let tokens: Vec<u32> = text.split_whitespace().map(|w| w.len() as u32).collect();
    axum::Json(
        serde_json::json!({ "count": tokens.len(), "max_model_len": 4096, "tokens": tokens }),
    )
    .into_response()
}

/// A ZMQ PUB socket publishing vLLM KV events for one pod.
pub struct EventPublisher {
    socket: zmq::Socket,
    pub port: u16,
    seq: u64,
    _context: zmq::Context,
}

impl EventPublisher {
    pub fn bind() -> EventPublisher {
        let context = zmq::Context::new();
        let socket = context.socket(zmq::PUB).unwrap();
        socket.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = socket.get_last_endpoint().unwrap().unwrap();
        let port = endpoint.rsplit(':').next().unwrap().parse().unwrap();
        EventPublisher {
            socket,
            port,
            seq: 0,
            _context: context,
        }
    }

    /// Publishes that `pod` stored the full blocks of `tokens`.
    pub fn store(
        &mut self,
        pod: SocketAddr,
        model: &str,
        tokens: &[u32],
        block_size: usize,
        first_hash: u64,
    ) {
        let blocks = tokens.len() / block_size;
        let batch = EventBatch {
            ts: 0.0,
            events: vec![KvEvent::BlockStored(BlockStored {
                block_hashes: (0..blocks as u64)
                    .map(|i| EngineHash::U64(first_hash + i))
                    .collect(),
                token_ids: tokens[..blocks * block_size].to_vec(),
                block_size: block_size as u32,
                medium: Some("GPU".to_owned()),
                ..BlockStored::default()
            })],
            data_parallel_rank: None,
        };
        let payload = encode_batch(&batch, Encoding::Array);
        let topic = format!("kv@{pod}@{model}");
        self.socket
            .send_multipart([topic.as_bytes(), &self.seq.to_be_bytes(), &payload], 0)
            .unwrap();
        self.seq += 1;
    }
}

/// Polls `condition` every 10 ms until it holds; fails the test after 20 s.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A pool file entry.
pub fn endpoint(pod: &FakePod, role: Option<&str>, kv_events_port: Option<u16>) -> String {
    let mut entry = format!("- address: {}\n  model: m\n", pod.addr);
    if let Some(role) = role {
        entry.push_str(&format!("  labels: {{llm-d.ai/role: {role}}}\n"));
    }
    if let Some(port) = kv_events_port {
        entry.push_str(&format!("  kvEventsPort: {port}\n"));
    }
    entry
}

/// A started gateway on a loopback port.
pub struct Gateway {
    pub app: Arc<App>,
    pub addr: SocketAddr,
    pub dir: TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gateway {
    /// Starts a gateway over `endpoints` (pool-file entries) with the
    /// scheduler `config` (None: the built-in default).
    pub async fn start(
        endpoints: &[String],
        config: Option<&str>,
        adjust: impl FnOnce(&mut Options),
    ) -> Gateway {
        let dir = TempDir::new();
        let pool = dir.write("pool.yaml", &format!("endpoints:\n{}", endpoints.concat()));
        let mut options = Options::new(pool);
        options.config_file = config.map(|c| dir.write("config.yaml", c));
        options.scrape.interval = Duration::from_millis(10);
        options.reload_pool = false;
        adjust(&mut options);
        let app = Arc::new(App::start(&options).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = app.clone();
        let task = tokio::spawn(async move {
            let _ = serving.serve(listener).await;
        });
        Gateway {
            app,
            addr,
            dir,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn wait_ready(&self, n: usize) {
        let gateway = self.app.gateway().clone();
        wait_until("endpoints are ready", || {
            gateway.pool.snapshot().ready_count() == n
        })
        .await;
    }
}

/// Writes a WordLevel tokenizer (whitespace pre-tokenizer, words `w0`..`w999`
/// plus the chat-template markers) and a `tokenizer_config.json` with a chat
/// template into `dir`.
pub fn write_tokenizer(dir: &Path) {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    let mut words: Vec<String> = vec!["[UNK]".into(), "<s>".into(), "<|".into(), "|>".into()];
    words.extend(["user", "assistant", "system", "end"].map(String::from));
    words.extend((0..1000).map(|i| format!("w{i}")));
    let model = WordLevel::builder()
        .vocab(
            words
                .into_iter()
                .enumerate()
                .map(|(i, w)| (w, i as u32))
                .collect(),
        )
        .unk_token("[UNK]".into())
        .build()
        .unwrap();
    let mut tokenizer = tokenizers::Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(Whitespace {}));
    tokenizer.add_special_tokens(&[tokenizers::AddedToken::from("<s>", true)]);
    tokenizer.save(dir.join("tokenizer.json"), false).unwrap();
    let config = serde_json::json!({
        "bos_token": "<s>",
        "eos_token": {"content": "<|end|>"},
        "chat_template": "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}",
    });
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
}
