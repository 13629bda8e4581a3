//! The subscriber against real publishers: a Python process encoding
//! events with msgspec structs that mirror vLLM's, over pyzmq, in both
//! encodings vLLM has shipped.

mod common;

use common::{MODEL, eventually};
use llmd_kv_cache::events::{EventSource, IngestStats, SubscriberConfig};
use llmd_kv_cache::{KvCacheConfig, KvCacheIndexer, PodId};
use llmd_runtime::Identifier;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

const POD: &str = "127.0.0.1:8100";

fn python() -> PathBuf {
    let python = std::env::var_os("LLMD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"))
        });
    let usable = Command::new(&python)
        .args(["-c", "import zmq, msgspec"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        usable,
        "no Python with pyzmq and msgspec at {} (set LLMD_TEST_PYTHON or run scripts/setup-test-deps.sh)",
        python.display()
    );
    python
}

/// A running `vllm_publisher.py`.
struct Publisher {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub_port: u16,
    replay_port: u16,
}

impl Publisher {
    fn start(encoding: &str, scenario: &str, placement: &[&str]) -> Publisher {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/vllm_publisher.py"
        );
        let topic = EventSource {
            pod: PodId::new(POD),
            model: MODEL.into(),
        }
        .topic();
        let mut child = Command::new(python())
            .arg(script)
            .args([
                "--encoding",
                encoding,
                "--scenario",
                scenario,
                "--topic",
                &topic,
            ])
            .args(placement)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the python publisher");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let ready = read_line(&mut stdout);
        let ports: Vec<u16> = ready
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("unexpected publisher output {ready:?}"))
            .split(' ')
            .map(|p| p.parse().unwrap())
            .collect();
        Publisher {
            child,
            stdin,
            stdout,
            pub_port: ports[0],
            replay_port: ports[1],
        }
    }

    fn wait_published(&mut self) {
        assert_eq!(read_line(&mut self.stdout), "PUBLISHED");
    }

    fn exit(mut self) {
        let _ = writeln!(self.stdin, "exit");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "publisher failed: {status}");
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_line(out: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

fn prompt(start: u32, blocks: u32) -> Vec<u32> {
    (start..start + 16 * blocks).collect()
}

async fn blocks_on_pod(ix: &KvCacheIndexer, tokens: &[u32]) -> usize {
    let scores = ix
        .get_scores(&Identifier::new(MODEL), tokens, &[PodId::new(POD)])
        .await
        .unwrap();
    scores.pods[0].blocks
}

async fn stats_once(
    ix: &KvCacheIndexer,
    what: &str,
    done: impl Fn(&IngestStats) -> bool,
) -> IngestStats {
    eventually(what, || done(&ix.ingest_stats())).await;
    ix.ingest_stats()
}

async fn full_scenario(encoding: &str) {
    let ix = KvCacheIndexer::new(&KvCacheConfig::default()).unwrap();
    let mut publisher = Publisher::start(encoding, "full", &[]);
    let config = SubscriberConfig {
        connect: vec![format!("tcp://127.0.0.1:{}", publisher.pub_port)],
        replay_endpoints: BTreeMap::from([(
            POD.to_owned(),
            format!("tcp://127.0.0.1:{}", publisher.replay_port),
        )]),
        ..SubscriberConfig::default()
    };
    let subscriber = ix.start_events(&config).unwrap();
    publisher.wait_published();
    let stats = stats_once(&ix, "the scenario's batches", |s| {
        s.batches >= 5 && s.malformed_frames >= 1
    })
    .await;
    assert_eq!(stats.batches, 5, "{encoding}: {stats:?}");
    assert_eq!(stats.gaps, 1, "{encoding}: {stats:?}");
    assert_eq!(stats.missed_batches, 1, "{encoding}: {stats:?}");
    assert_eq!(stats.replayed_batches, 1, "{encoding}: {stats:?}");
    assert_eq!(stats.decode_errors, 1, "{encoding}: {stats:?}");
    assert_eq!(stats.unknown_events, 1, "{encoding}: {stats:?}");
    assert_eq!(stats.malformed_frames, 1, "{encoding}: {stats:?}");
    assert_eq!(stats.malformed_events, 0, "{encoding}: {stats:?}");
    assert_eq!(stats.blocks_stored, 6, "{encoding}: {stats:?}");
    assert_eq!(stats.blocks_removed, 1, "{encoding}: {stats:?}");

    // Blocks 0-2 on GPU, 3 removed (replayed), 4 on CPU behind the hole.
    let first = prompt(1000, 5);
    assert_eq!(blocks_on_pod(&ix, &first).await, 3, "{encoding}");
    let scores = ix
        .get_scores(&Identifier::new(MODEL), &first, &[PodId::new(POD)])
        .await
        .unwrap();
    assert!(
        (scores.pods[0].score - 0.6).abs() < 1e-12,
        "{encoding}: {scores:?}"
    );
    assert_eq!(blocks_on_pod(&ix, &prompt(5000, 1)).await, 1, "{encoding}");

    // The publisher goes away and a new one (sequence from 0, empty cache)
    // comes back on the same port: the subscriber reconnects, clears the pod
    // and indexes the new events.
    let port = publisher.pub_port.to_string();
    publisher.exit();
    let mut restarted = Publisher::start(encoding, "restart", &["--port", &port]);
    restarted.wait_published();
    let stats = stats_once(&ix, "the restarted publisher's batch", |s| s.batches >= 6).await;
    assert_eq!(stats.publisher_restarts, 1, "{encoding}: {stats:?}");
    assert_eq!(blocks_on_pod(&ix, &first).await, 0, "{encoding}");
    assert_eq!(blocks_on_pod(&ix, &prompt(9000, 1)).await, 1, "{encoding}");
    restarted.exit();
    subscriber.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vllm_array_encoding_from_a_python_publisher() {
    full_scenario("array").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vllm_map_encoding_from_a_python_publisher() {
    full_scenario("map").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_can_connect_to_a_bound_subscriber() {
    let ix = KvCacheIndexer::new(&KvCacheConfig::default()).unwrap();
    let config = SubscriberConfig {
        bind: Some("tcp://127.0.0.1:*".into()),
        ..SubscriberConfig::default()
    };
    let subscriber = ix.start_events(&config).unwrap();
    let endpoint = subscriber
        .bound_endpoint()
        .expect("a bound endpoint")
        .to_owned();
    let mut publisher = Publisher::start("map", "simple", &["--connect", &endpoint]);
    publisher.wait_published();
    let stats = stats_once(&ix, "the batch", |s| s.batches >= 1).await;
    // Stored two blocks, cleared them, stored the first again.
    assert_eq!((stats.blocks_stored, stats.pods_cleared), (3, 1));
    assert_eq!(blocks_on_pod(&ix, &prompt(1000, 2)).await, 1);
    publisher.exit();
    subscriber.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_added_at_runtime_are_subscribed() {
    let ix = KvCacheIndexer::new(&KvCacheConfig::default()).unwrap();
    let subscriber = ix.start_events(&SubscriberConfig::default()).unwrap();
    let mut publisher = Publisher::start("array", "simple", &[]);
    subscriber.connect(&format!("tcp://127.0.0.1:{}", publisher.pub_port));
    publisher.wait_published();
    let stats = stats_once(&ix, "the batch", |s| s.batches >= 1).await;
    assert_eq!(stats.blocks_stored, 3);
    assert_eq!(blocks_on_pod(&ix, &prompt(1000, 2)).await, 1);
    subscriber.disconnect(&format!("tcp://127.0.0.1:{}", publisher.pub_port));
    publisher.exit();
    subscriber.stop();
}
