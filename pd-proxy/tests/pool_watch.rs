//! SSRF protection from an InferencePool: the real binary as a child
//! process, with its in-cluster settings pointing at a fake Kubernetes API
//! server (HTTPS, with its own CA in the service account folder) whose pod
//! watch the test feeds.

mod common;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use common::*;
use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use llmd_runtime::routing::LEGACY_PREFILLER_HEADER;
use llmd_runtime::testing::pki::TestPki;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

const BINARY: &str = env!("CARGO_BIN_EXE_llmd-pd-proxy");
const TOKEN: &str = "service-account-token-1";
const POOL_PATH: &str = "/apis/inference.networking.k8s.io/v1/namespaces/team/inferencepools";
const PODS_PATH: &str = "/api/v1/namespaces/team/pods";

/// A request the fake API server got.
#[derive(Clone, Debug)]
struct ApiCall {
    path: String,
    query: String,
    authorization: Option<String>,
}

/// The fake API server: one InferencePool `team/pool` selecting
/// `app=prefill` on `port`, the pods listed at first, and a pod watch that
/// streams the lines sent on `pod_events`.
struct FakeKube {
    address: SocketAddr,
    calls: Arc<Mutex<Vec<ApiCall>>>,
    pod_events: mpsc::UnboundedSender<String>,
}

impl FakeKube {
    async fn start(pki: &TestPki, port: u16, pods: Value) -> FakeKube {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (pod_events, events) = mpsc::unbounded_channel::<String>();
        let events = Arc::new(tokio::sync::Mutex::new(events));
        let app = {
            let calls = calls.clone();
            Router::new().fallback(move |request: Request| {
                let calls = calls.clone();
                let events = events.clone();
                let pods = pods.clone();
                async move {
                    let call = ApiCall {
                        path: request.uri().path().to_owned(),
                        query: request.uri().query().unwrap_or_default().to_owned(),
                        authorization: request
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned),
                    };
                    calls.lock().unwrap().push(call.clone());
                    answer(&call, port, pods, &events)
                }
            })
        };
        let acceptor = TlsAcceptor::from(pki.server_config(false).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
                            .await;
                    }
                });
            }
        });
        FakeKube {
            address,
            calls,
            pod_events,
        }
    }

    fn calls(&self) -> Vec<ApiCall> {
        self.calls.lock().unwrap().clone()
    }

    /// Streams one pod watch event.
    fn send_pod(&self, kind: &str, ip: &str) {
        let line = json!({"type": kind, "object": pod("prefill-a", ip)}).to_string();
        self.pod_events.send(line + "\n").unwrap();
    }
}

/// The pod events the test sends, read by whichever pod watch is open.
type Events = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>>;

fn answer(call: &ApiCall, port: u16, pods: Value, events: &Events) -> Response {
    let watching = call.query.contains("watch=true");
    match (call.path.as_str(), watching) {
        (path, false) if path == format!("{POOL_PATH}/pool") => axum::Json(json!({
            "metadata": {"name": "pool", "resourceVersion": "7"},
            "spec": {
                "selector": {"matchLabels": {"app": "prefill"}},
                "targetPorts": [{"number": port}],
            },
        }))
        .into_response(),
        (PODS_PATH, false) => axum::Json(json!({
            "metadata": {"resourceVersion": "11"},
            "items": pods,
        }))
        .into_response(),
        (PODS_PATH, true) => streamed(events.clone()),
        (POOL_PATH, true) => Response::new(Body::from_stream(futures_util::stream::pending::<
            Result<Bytes, Infallible>,
        >())),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A watch answer: the lines of `events`, as they come.
fn streamed(events: Events) -> Response {
    let body = futures_util::stream::unfold(events, |events| async move {
        let line = events.lock().await.recv().await?;
        Some((Ok::<_, Infallible>(Bytes::from(line)), events))
    });
    Response::new(Body::from_stream(body))
}

fn pod(name: &str, ip: &str) -> Value {
    json!({"metadata": {"name": name}, "status": {"podIP": ip}})
}

/// A service account folder with the token and the fake's CA.
struct Account(PathBuf);

impl Account {
    fn new(pki: &TestPki) -> Account {
        let dir = std::env::temp_dir().join(format!(
            "llmd-pool-watch-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
        std::fs::write(dir.join("ca.crt"), &pki.ca).unwrap();
        Account(dir)
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The status of a P/D chat completion naming `target` as the prefiller.
async fn status_via(proxy: &str, target: &str) -> u16 {
    client()
        .post(format!("http://{proxy}/v1/chat/completions"))
        .header(LEGACY_PREFILLER_HEADER, target)
        .body(chat_body(false).to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Sends requests naming `target` until one gets `status` (the watch
/// applies events on its own time); fails after a minute.
async fn until_status(proxy: &str, target: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = status_via(proxy, target).await;
        if seen == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{target}: still {seen}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allowlist_follows_the_pools_pods() {
    let prefiller = Fake::start(prefiller()).await;
    let decoder = Fake::start(decoder()).await;
    let port = prefiller.address.port();
    let pki = TestPki::generate().unwrap();
    // At first the pool's one pod is at an address nothing listens on.
    let kube = FakeKube::start(&pki, port, json!([pod("prefill-a", "127.0.0.9")])).await;
    let account = Account::new(&pki);
    let (child, proxy) = Running::start(
        Command::new(BINARY)
            .args([
                "--port=0",
                "--secure-proxy=false",
                "--bind-address=127.0.0.1",
                "--decoder-host=127.0.0.1",
                &format!("--vllm-port={}", decoder.address.port()),
                "--enable-ssrf-protection",
                "--inference-pool=team/pool",
                "--prefill-max-retries=0",
            ])
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", kube.address.port().to_string())
            .env("LLMD_SERVICE_ACCOUNT_DIR", &account.0)
            .env("OTEL_SDK_DISABLED", "true"),
    )
    .await;
    let listed = format!("127.0.0.9:{port}");
    let reachable = format!("127.0.0.1:{port}");

    // Listed: allowed, so the prefill is tried and fails (502), not 403.
    until_status(&proxy, &listed, 502).await;
    assert_eq!(status_via(&proxy, &reachable).await, 403);
    assert_eq!(
        status_via(&proxy, &format!("prefill-a:{}", port + 1)).await,
        403
    );
    assert!(
        prefiller.seen().is_empty(),
        "a denied target is never called"
    );

    // The pod moves to the prefiller's address.
    kube.send_pod("MODIFIED", "127.0.0.1");
    until_status(&proxy, &reachable, 200).await;
    assert_eq!(status_via(&proxy, &listed).await, 403);
    assert_eq!(prefiller.seen().len(), 1);

    // The pod goes away.
    kube.send_pod("DELETED", "127.0.0.1");
    until_status(&proxy, &reachable, 403).await;
    assert_eq!(prefiller.seen().len(), 1);

    let calls = kube.calls();
    assert!(
        calls
            .iter()
            .all(|call| call.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "{calls:?}"
    );
    let pod_watch = calls
        .iter()
        .find(|call| call.path == PODS_PATH && call.query.contains("watch=true"))
        .expect("the pods are watched");
    assert!(
        pod_watch.query.contains("labelSelector=app%3Dprefill")
            && pod_watch.query.contains("resourceVersion=11"),
        "{pod_watch:?}"
    );
    let pool_watch = calls
        .iter()
        .find(|call| call.path == POOL_PATH)
        .expect("the pool is watched");
    assert!(
        pool_watch
            .query
            .contains("fieldSelector=metadata.name%3Dpool")
            && pool_watch.query.contains("resourceVersion=7"),
        "{pool_watch:?}"
    );
    assert!(child.stop().await.success());
}

#[tokio::test]
async fn outside_kubernetes_a_pool_stops_the_start() {
    let output = Command::new(BINARY)
        .args([
            "--port=0",
            "--secure-proxy=false",
            "--enable-ssrf-protection",
            "--inference-pool=team/pool",
        ])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot watch the InferencePool")
            && stderr.contains("KUBERNETES_SERVICE_HOST is not set"),
        "{stderr}"
    );
}
