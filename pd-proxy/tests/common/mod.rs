//! Test support: fake vLLM prefill/decode servers on loopback that record
//! what they receive, and a proxy started in process against them.

#![allow(dead_code)]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use llmd_pd_proxy::config::{Config, ListenerTls, UpstreamTls};
use llmd_pd_proxy::{KvConnector, Proxy};
use llmd_runtime::http::ServerTraceLayer;
use llmd_runtime::span::{SpanKind, SpanMeta};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// vLLM's span, emitted by the fakes so parent links can be checked.
pub static LLM_REQUEST: SpanMeta = SpanMeta::new("llm_request", SpanKind::Server);

/// A prompt no span may contain.
pub const SECRET_PROMPT: &str = "zebra-quokka-7731 tell me the launch codes";

/// What a fake server received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("fake received JSON")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// (trace id, parent span id) of the received `traceparent`.
    pub fn traceparent(&self) -> Option<(String, String)> {
        let value = self.header("traceparent")?;
        let parts: Vec<&str> = value.split('-').collect();
        Some((parts[1].to_owned(), parts[2].to_owned()))
    }
}

/// How a fake answers.
pub enum Reply {
    Json(StatusCode, Value),
    /// SSE events (each the JSON of a `data:` line), then `[DONE]`.
    Sse(Vec<Value>),
    /// SSE events forever, every 20 ms; counts a cancellation when dropped.
    Endless,
    /// Sleep, then answer.
    Delayed(Duration, Box<Reply>),
    /// `307 Temporary Redirect` to this location.
    Redirect(String),
    /// SSE events (then `[DONE]`), each sent after a pause.
    SlowSse(Vec<Value>, Duration),
}

pub type Behaviour = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// A fake vLLM server.
pub struct Fake {
    pub address: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    pub async fn start(behaviour: Behaviour) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Fake::start_with(behaviour, None, listener).await
    }

    /// Two fakes on consecutive ports (data-parallel decoder ranks).
    pub async fn start_pair(first: Behaviour, second: Behaviour) -> (Fake, Fake) {
        for _ in 0..50 {
            let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = a.local_addr().unwrap().port();
            let Some(next) = port.checked_add(1) else {
                continue;
            };
            if let Ok(b) = TcpListener::bind(("127.0.0.1", next)).await {
                return (
                    Fake::start_with(first, None, a).await,
                    Fake::start_with(second, None, b).await,
                );
            }
        }
        panic!("no two consecutive free ports");
    }

    pub async fn start_tls(behaviour: Behaviour) -> Fake {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Fake::start_with(
            behaviour,
            Some(TlsAcceptor::from(Arc::new(config))),
            listener,
        )
        .await
    }

    async fn start_with(
        behaviour: Behaviour,
        tls: Option<TlsAcceptor>,
        listener: TcpListener,
    ) -> Fake {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let cancelled = Arc::new(AtomicUsize::new(0));
        let app = {
            let seen = seen.clone();
            let cancelled = cancelled.clone();
            Router::new()
                .fallback(move |request: Request| {
                    let seen = seen.clone();
                    let cancelled = cancelled.clone();
                    let behaviour = behaviour.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let record = Seen {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_owned(),
                            headers: parts.headers,
                            body,
                        };
                        let reply = behaviour(&record);
                        seen.lock().unwrap().push(record);
                        respond(reply, cancelled).await
                    }
                })
                .layer(ServerTraceLayer::new(&LLM_REQUEST))
        };
        let address = listener.local_addr().unwrap();
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let app = app.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = TowerToHyperService::new(app);
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        Fake {
            address,
            seen,
            connections,
            cancelled,
            task,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }

    pub fn host_port(&self) -> String {
        self.address.to_string()
    }
}

struct CountOnDrop(Arc<AtomicUsize>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn respond(
    reply: Reply,
    cancelled: Arc<AtomicUsize>,
) -> futures_util::future::BoxFuture<'static, Response> {
    Box::pin(async move {
        match reply {
            Reply::Json(status, body) => (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response(),
            Reply::Sse(events) => {
                let mut text = String::new();
                for event in events {
                    text.push_str(&format!("data: {event}\n\n"));
                }
                text.push_str("data: [DONE]\n\n");
                let chunks: Vec<Result<Bytes, std::io::Error>> = text
                    .split_inclusive("\n\n")
                    .map(|c| Ok(Bytes::from(c.to_owned())))
                    .collect();
                sse_response(Body::from_stream(futures_util::stream::iter(chunks)))
            }
            Reply::SlowSse(events, pause) => {
                let lines = events
                    .into_iter()
                    .map(|event| format!("data: {event}\n\n"))
                    .chain(std::iter::once("data: [DONE]\n\n".to_owned()));
                let stream = futures_util::stream::iter(lines).then(move |line| async move {
                    tokio::time::sleep(pause).await;
                    Ok::<_, std::io::Error>(Bytes::from(line))
                });
                sse_response(Body::from_stream(stream))
            }
            Reply::Endless => {
                let guard = CountOnDrop(cancelled);
                let stream = futures_util::stream::unfold(guard, |guard| async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let chunk = Bytes::from_static(
                        b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n",
                    );
                    Some((Ok::<_, std::io::Error>(chunk), guard))
                });
                sse_response(Body::from_stream(stream.boxed()))
            }
            Reply::Delayed(delay, inner) => {
                tokio::time::sleep(delay).await;
                respond(*inner, cancelled).await
            }
            Reply::Redirect(location) => (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response(),
        }
    })
}

fn sse_response(body: Body) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(body)
        .unwrap()
}

/// The kv_transfer_params a NIXL prefiller answers with.
pub fn prefiller_params() -> Value {
    json!({
        "do_remote_prefill": true,
        "do_remote_decode": false,
        "remote_block_ids": [1, 2, 3],
        "remote_engine_id": "engine-7",
        "remote_host": "10.1.2.3",
        "remote_port": 5600,
        "tp_size": 1
    })
}

/// A prefiller that answers like vLLM with the NixlConnector.
pub fn prefiller() -> Behaviour {
    Arc::new(|_| {
        Reply::Json(
            StatusCode::OK,
            json!({
                "id": "cmpl-prefill",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 64, "completion_tokens": 1, "total_tokens": 65, "prompt_tokens_details": {"cached_tokens": 48}},
                "kv_transfer_params": prefiller_params()
            }),
        )
    })
}

/// A decoder that streams `events` chunks of its answer, `pause` apart.
pub fn slow_decoder(events: usize, pause: Duration) -> Behaviour {
    Arc::new(move |_| {
        let chunk = json!({"id": "c3", "choices": [{"index": 0, "delta": {"content": "x"}}]});
        Reply::SlowSse(vec![chunk; events], pause)
    })
}

/// A decoder that streams when asked to, else answers one JSON body.
pub fn decoder() -> Behaviour {
    Arc::new(|seen: &Seen| {
        let body: Value = serde_json::from_slice(&seen.body).unwrap_or(Value::Null);
        if body["stream"] == json!(true) {
            Reply::Sse(vec![
                json!({"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
                json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hello"}}]}),
                json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": " world"}, "finish_reason": "stop"}]}),
                json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 64, "completion_tokens": 2, "total_tokens": 66, "prompt_tokens_details": null}}),
            ])
        } else {
            Reply::Json(
                StatusCode::OK,
                json!({
                    "id": "c2",
                    "object": "chat.completion",
                    "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello world"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 64, "completion_tokens": 2, "total_tokens": 66}
                }),
            )
        }
    })
}

/// A fixed reply.
pub fn always(status: StatusCode, body: Value) -> Behaviour {
    Arc::new(move |_| Reply::Json(status, body.clone()))
}

/// Long enough that only the connect timeout can end a request first:
/// without it, a connection attempt lasts the kernel's SYN retries (about
/// two minutes), and a TLS handshake as long as the connection is open.
pub const UNLESS_CONNECT_TIMES_OUT: Duration = Duration::from_secs(60);

/// Upstream TLS that accepts the fakes' self-signed certificates.
pub const INSECURE_TLS: UpstreamTls = UpstreamTls {
    enabled: true,
    insecure_skip_verify: true,
};

/// A configuration for a proxy on loopback in front of `decoder`.
pub fn config(decoder: &Fake) -> Config {
    let mut config = Config::defaults();
    config.bind_address = [127, 0, 0, 1].into();
    config.port = 0;
    config.decoder_host = "127.0.0.1".into();
    config.vllm_port = decoder.address.port();
    config.listener_tls = ListenerTls::Off;
    config.prefill_retry.backoff = Duration::from_millis(1);
    config.prefill_retry.attempt_timeout = Duration::from_secs(10);
    config
}

pub async fn start_proxy(config: Config) -> Proxy {
    Proxy::start(config).await.expect("proxy starts")
}

pub async fn start_with_connector(decoder: &Fake, connector: KvConnector) -> Proxy {
    let mut c = config(decoder);
    c.connector = connector;
    start_proxy(c).await
}

pub fn client() -> reqwest::Client {
    llmd_runtime::http::install_crypto_provider();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub fn chat_body(stream: bool) -> Value {
    json!({
        "model": "meta-llama/Llama-3.1-8B",
        "messages": [{"role": "user", "content": SECRET_PROMPT}],
        "max_tokens": 50,
        "temperature": 0.70,
        "stream": stream,
        "stream_options": {"include_usage": true},
        "vendor_extension": {"keep": [1, 2.50, "x"]}
    })
}

/// Posts `body` to `path` with the prefill header (when given).
pub async fn post(
    proxy: &Proxy,
    path: &str,
    prefiller: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    post_raw(proxy, path, prefiller, body.to_string()).await
}

/// Posts a chat completion (streamed or not) with `prefill` as the P/D
/// prefill target.
pub async fn post_pd_chat(proxy: &Proxy, prefill: &Fake, stream: bool) -> reqwest::Response {
    post(
        proxy,
        "/v1/chat/completions",
        Some(&prefill.host_port()),
        &chat_body(stream),
    )
    .await
}

/// Posts a chat completion (streamed or not), with `prefiller` as the P/D
/// prefill target when given; requires a 200 and reads the whole answer.
pub async fn chat_ok(proxy: &Proxy, prefiller: Option<&str>, stream: bool) {
    let response = post(proxy, "/v1/chat/completions", prefiller, &chat_body(stream)).await;
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
}

/// Posts raw `body` text.
pub async fn post_raw(
    proxy: &Proxy,
    path: &str,
    prefiller: Option<&str>,
    body: String,
) -> reqwest::Response {
    let mut request = client()
        .post(format!("http://{}{}", proxy.address(), path))
        .header("content-type", "application/json")
        .body(body);
    if let Some(target) = prefiller {
        request = request.header("x-prefiller-host-port", target);
    }
    request.send().await.expect("proxy answers")
}

/// The `data:` payloads of an SSE body, `[DONE]` excluded.
pub fn sse_events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// Asserts a vLLM-style JSON error.
pub async fn assert_vllm_error(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(body["object"], "error");
    assert_eq!(body["code"], status);
    assert_eq!(body["param"], "");
    assert!(body["type"].is_string());
    assert!(body["message"].is_string());
    body
}

/// The child, killed if the test fails before it exits.
pub struct Running(pub Child);

impl Running {
    /// Spawns `command`; the proxy's first line (its listening address)
    /// arrives on the receiver once printed.
    pub fn spawn(command: &mut Command) -> (Running, tokio::sync::oneshot::Receiver<String>) {
        let mut child = Running(command.stdout(Stdio::piped()).spawn().unwrap());
        let stdout = child.0.stdout.take().unwrap();
        let (line_sender, first_line) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            let _ = line_sender.send(line);
        });
        (child, first_line)
    }

    /// Spawns `command` and waits for the proxy's first line; returns the
    /// child and the address it listens on.
    pub async fn start(command: &mut Command) -> (Running, String) {
        let (child, first_line) = Running::spawn(command);
        let address = listening_address(&first_line.await.unwrap());
        (child, address)
    }
}

/// The address in the proxy's first line, `llmd-pd-proxy listening on ADDRESS`.
pub fn listening_address(line: &str) -> String {
    assert!(line.contains("listening on 127.0.0.1:"), "{line}");
    line.trim().rsplit(' ').next().unwrap().to_owned()
}

impl Running {
    /// Sends SIGTERM and waits for the proxy to drain and exit.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::task::spawn_blocking(move || self.0.wait().unwrap())
            .await
            .unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
