//! SSRF protection from an InferencePool: the real binary as a child
//! process, with its in-cluster settings pointing at a fake Kubernetes API
//! server (HTTPS, with its own CA in the service account folder) whose
//! pool and pods the tests change.

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
use tokio::sync::watch;
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

/// What the fake API server holds: the pods and whether the pool exists,
/// and every event so far of each kind, so that a watch streams the events
/// after the resource version it names, as the API does (an event sent
/// while the proxy lists again is not lost).
#[derive(Default)]
struct Cluster {
    pool_exists: bool,
    pods: Vec<Value>,
    pod_events: Vec<String>,
    pool_events: Vec<String>,
    /// Pool lists still to be answered with 503.
    pool_list_failures: usize,
}

/// The resource version of the first event of each kind; a list gives
/// this plus the number of events so far.
const PODS_VERSION: usize = 11;
const POOL_VERSION: usize = 7;

/// The fake API server: the InferencePool `team/pool` selecting
/// `app=prefill` on `port`, and its pods. Pool lists wait while `held`,
/// after the first `pool_list_failures` have been answered with 503.
#[derive(Clone)]
struct FakeKube {
    address: SocketAddr,
    calls: Arc<Mutex<Vec<ApiCall>>>,
    cluster: Arc<Mutex<Cluster>>,
    changed: Arc<watch::Sender<()>>,
    held: Arc<watch::Sender<bool>>,
    port: u16,
}

impl FakeKube {
    async fn start(pki: &TestPki, port: u16, pods: Vec<Value>) -> FakeKube {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let kube = FakeKube {
            address: listener.local_addr().unwrap(),
            calls: Arc::default(),
            cluster: Arc::new(Mutex::new(Cluster {
                pool_exists: true,
                pods,
                ..Cluster::default()
            })),
            changed: Arc::new(watch::channel(()).0),
            held: Arc::new(watch::channel(false).0),
            port,
        };
        let app = {
            let kube = kube.clone();
            Router::new().fallback(move |request: Request| {
                let kube = kube.clone();
                async move { kube.answer(request).await }
            })
        };
        let acceptor = TlsAcceptor::from(pki.server_config(false).unwrap());
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
        kube
    }

    fn calls(&self) -> Vec<ApiCall> {
        self.calls.lock().unwrap().clone()
    }

    /// How many calls were made to `path` (watches included).
    fn calls_to(&self, path: &str) -> usize {
        self.calls().iter().filter(|call| call.path == path).count()
    }

    fn change(&self, change: impl FnOnce(&mut Cluster)) {
        change(&mut self.cluster.lock().unwrap());
        self.changed.send_replace(());
    }

    /// Changes the pod `prefill-a` (`ADDED`, `MODIFIED`, `DELETED`) and
    /// streams the event.
    fn send_pod(&self, kind: &str, ip: &str) {
        let object = pod("prefill-a", ip);
        self.change(|cluster| {
            cluster
                .pods
                .retain(|pod| pod["metadata"]["name"] != "prefill-a");
            if kind != "DELETED" {
                cluster.pods.push(object.clone());
            }
            cluster
                .pod_events
                .push(json!({"type": kind, "object": object}).to_string() + "\n");
        });
    }

    /// Deletes the pool (`false`) or creates it again, and streams the event.
    fn set_pool(&self, exists: bool) {
        let kind = if exists { "ADDED" } else { "DELETED" };
        let object = pool_object(self.port);
        self.change(|cluster| {
            cluster.pool_exists = exists;
            cluster
                .pool_events
                .push(json!({"type": kind, "object": object}).to_string() + "\n");
        });
    }

    /// Whether this pool list is to be answered with 503.
    fn fail_pool_list(&self) -> bool {
        let mut cluster = self.cluster.lock().unwrap();
        let fail = cluster.pool_list_failures > 0;
        cluster.pool_list_failures = cluster.pool_list_failures.saturating_sub(1);
        fail
    }

    async fn answer(self, request: Request) -> Response {
        let call = ApiCall {
            path: request.uri().path().to_owned(),
            query: request.uri().query().unwrap_or_default().to_owned(),
            authorization: request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        self.calls.lock().unwrap().push(call.clone());
        let watching = call.query.contains("watch=true");
        let by_name = call.query.contains("fieldSelector=metadata.name%3Dpool");
        match (call.path.as_str(), watching) {
            (POOL_PATH, false) if by_name => {
                if self.fail_pool_list() {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                let _ = self.held.subscribe().wait_for(|held| !held).await;
                let cluster = self.cluster.lock().unwrap();
                let items: Vec<Value> = if cluster.pool_exists {
                    vec![pool_object(self.port)]
                } else {
                    Vec::new()
                };
                let version = POOL_VERSION + cluster.pool_events.len();
                list(version, items)
            }
            (PODS_PATH, false) => {
                let cluster = self.cluster.lock().unwrap();
                list(
                    PODS_VERSION + cluster.pod_events.len(),
                    cluster.pods.clone(),
                )
            }
            (PODS_PATH, true) => self.streamed(&call.query, PODS_VERSION, |c| &c.pod_events),
            (POOL_PATH, true) if by_name => {
                self.streamed(&call.query, POOL_VERSION, |c| &c.pool_events)
            }
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }

    /// A watch answer: the events of `log` from the resource version in
    /// `query` on, as they come.
    fn streamed(
        &self,
        query: &str,
        first_version: usize,
        log: fn(&Cluster) -> &Vec<String>,
    ) -> Response {
        let from: usize = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("resourceVersion="))
            .and_then(|version| version.parse().ok())
            .unwrap();
        let state = (
            self.cluster.clone(),
            self.changed.subscribe(),
            from - first_version,
        );
        let body =
            futures_util::stream::unfold(state, move |(cluster, mut changed, next)| async move {
                loop {
                    let line = log(&cluster.lock().unwrap()).get(next).cloned();
                    if let Some(line) = line {
                        return Some((
                            Ok::<_, Infallible>(Bytes::from(line)),
                            (cluster, changed, next + 1),
                        ));
                    }
                    changed.changed().await.ok()?;
                }
            });
        Response::new(Body::from_stream(body))
    }
}

fn list(version: usize, items: Vec<Value>) -> Response {
    axum::Json(json!({
        "metadata": {"resourceVersion": version.to_string()},
        "items": items,
    }))
    .into_response()
}

fn pool_object(port: u16) -> Value {
    json!({
        "metadata": {"name": "pool", "resourceVersion": "3"},
        "spec": {
            "selector": {"matchLabels": {"app": "prefill"}},
            "targetPorts": [{"number": port}],
        },
    })
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

/// What each test starts from: a prefiller and a decoder, and the fake API
/// with the pool's one pod, `prefill-a` at `pod_ip`, on the prefiller's
/// port.
struct Setup {
    prefiller: Fake,
    decoder: Fake,
    port: u16,
    kube: FakeKube,
    account: Account,
}

impl Setup {
    async fn start(pod_ip: &str) -> Setup {
        let prefiller = Fake::start(prefiller()).await;
        let decoder = Fake::start(decoder()).await;
        let port = prefiller.address.port();
        let pki = TestPki::generate().unwrap();
        let kube = FakeKube::start(&pki, port, vec![pod("prefill-a", pod_ip)]).await;
        let account = Account::new(&pki);
        Setup {
            prefiller,
            decoder,
            port,
            kube,
            account,
        }
    }

    /// The proxy's command line with SSRF protection from `team/pool`, its
    /// in-cluster settings pointing at the fake API.
    fn proxy_command(&self) -> Command {
        let mut command = Command::new(BINARY);
        command
            .args([
                "--port=0",
                "--secure-proxy=false",
                "--bind-address=127.0.0.1",
                "--decoder-host=127.0.0.1",
                &format!("--vllm-port={}", self.decoder.address.port()),
                "--enable-ssrf-protection",
                "--inference-pool=team/pool",
                "--prefill-max-retries=0",
            ])
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env(
                "KUBERNETES_SERVICE_PORT",
                self.kube.address.port().to_string(),
            )
            .env("LLMD_SERVICE_ACCOUNT_DIR", &self.account.0)
            .env("OTEL_SDK_DISABLED", "true");
        command
    }
}

/// Waits until `target` is denied (until then, requests may still reach
/// it), then checks that a denied request never reaches it.
async fn until_denied(proxy: &str, target: &str, prefiller: &Fake) {
    until_status(proxy, target, 403).await;
    let reached = prefiller.seen().len();
    assert_eq!(status_via(proxy, target).await, 403);
    assert_eq!(
        prefiller.seen().len(),
        reached,
        "a denied target is never called"
    );
}

/// Waits until the fake has had `count` calls to `path`; fails after a
/// minute.
async fn until_calls(kube: &FakeKube, path: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while kube.calls_to(path) < count {
        assert!(Instant::now() < deadline, "{:?}", kube.calls());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allowlist_follows_the_pool_and_its_pods() {
    // At first the pool's one pod is at an address nothing listens on.
    let setup = Setup::start("127.0.0.9").await;
    let (prefiller, port, kube) = (&setup.prefiller, setup.port, &setup.kube);
    let (child, proxy) = Running::start(&mut setup.proxy_command()).await;
    let listed = format!("127.0.0.9:{port}");
    let reachable = format!("127.0.0.1:{port}");

    // Listed: allowed, so the prefill is tried and fails (502), not 403.
    assert_eq!(status_via(&proxy, &listed).await, 502);
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

    // The pool is deleted: none of its pods is allowed any more.
    kube.set_pool(false);
    until_denied(&proxy, &reachable, prefiller).await;

    // The pool comes back: its watch notices, and its pods are listed again.
    kube.set_pool(true);
    until_status(&proxy, &reachable, 200).await;

    // The pod goes away.
    kube.send_pod("DELETED", "127.0.0.1");
    until_denied(&proxy, &reachable, prefiller).await;

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
    let pool_calls: Vec<&ApiCall> = calls.iter().filter(|call| call.path == POOL_PATH).collect();
    assert!(
        pool_calls
            .iter()
            .all(|call| call.query.contains("fieldSelector=metadata.name%3Dpool")),
        "{pool_calls:?}"
    );
    let pool_watch = pool_calls
        .iter()
        .find(|call| call.query.contains("watch=true"))
        .expect("the pool is watched");
    assert!(
        pool_watch.query.contains("resourceVersion=7"),
        "{pool_watch:?}"
    );
    assert!(child.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_listens_once_the_pool_is_listed() {
    let setup = Setup::start("127.0.0.1").await;
    let (prefiller, port, kube) = (&setup.prefiller, setup.port, &setup.kube);
    kube.change(|cluster| cluster.pool_list_failures = 1);
    kube.held.send_replace(true);
    let (child, mut first_line) = Running::spawn(&mut setup.proxy_command());

    // The first list fails, the second waits: the proxy does not listen yet.
    until_calls(kube, POOL_PATH, 2).await;
    assert_eq!(
        first_line.try_recv(),
        Err(tokio::sync::oneshot::error::TryRecvError::Empty),
        "the proxy must not listen before the pool is listed"
    );

    // Once listed, the very first P/D request finds its target allowed.
    kube.held.send_replace(false);
    let proxy = listening_address(&first_line.await.unwrap());
    assert_eq!(status_via(&proxy, &format!("127.0.0.1:{port}")).await, 200);
    assert_eq!(prefiller.seen().len(), 1);
    assert!(child.stop().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_waiting_for_its_pool_stops_on_sigterm() {
    let setup = Setup::start("127.0.0.1").await;
    setup.kube.held.send_replace(true);
    let (child, first_line) = Running::spawn(&mut setup.proxy_command());
    until_calls(&setup.kube, POOL_PATH, 1).await;
    assert!(child.stop().await.success());
    assert_eq!(first_line.await.unwrap(), "", "it never listened");
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
