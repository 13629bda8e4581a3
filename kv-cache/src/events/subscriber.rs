//! The ZMQ subscriber: receives vLLM KV-event batches from every pod,
//! keeps each publisher's order, detects sequence gaps and recovers them
//! through the pod's replay socket, and hands batches to the ingestor.
//!
//! ZMQ runs on a dedicated thread (one SUB socket connected to every
//! publisher, or bound for publishers that connect); decoding happens
//! there too; a Tokio task applies batches to the index in arrival order.
//! libzmq reconnects to publishers that go away and come back; a publisher
//! whose sequence starts over has restarted with an empty cache, so its
//! pod's entries are cleared.

use super::decode::decode_batch;
use super::ingest::{EventSource, Ingestor};
use super::model::EventBatch;
use super::stats::IngestCounters;
use crate::index::KvBlockIndex;
use crate::warn_limit::WarnLimit;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::mpsc;

/// The sequence number of a replay's end marker.
const END_OF_REPLAY: [u8; 8] = [0xff; 8];

/// How often the ZMQ thread looks at its commands.
const POLL_INTERVAL_MS: i64 = 50;

/// Settings of the KV-event subscriber.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriberConfig {
    /// Publisher endpoints to connect to, e.g. `tcp://10.0.0.5:5557`.
    pub connect: Vec<String>,
    /// An endpoint to bind, for publishers that connect (e.g. `tcp://*:5557`).
    pub bind: Option<String>,
    /// Topic prefix to subscribe to.
    pub topic_filter: String,
    /// Pod id (as in the topic) -> its ROUTER replay endpoint.
    pub replay_endpoints: BTreeMap<String, String>,
    /// How long a replay may take, in milliseconds.
    pub replay_timeout_ms: u64,
    /// Batches buffered between the ZMQ thread and the index.
    pub queue_capacity: usize,
}

impl Default for SubscriberConfig {
    fn default() -> SubscriberConfig {
        SubscriberConfig {
            connect: Vec::new(),
            bind: None,
            topic_filter: "kv@".into(),
            replay_endpoints: BTreeMap::new(),
            replay_timeout_ms: 2000,
            queue_capacity: 4096,
        }
    }
}

/// Why the subscriber could not start.
#[derive(Debug, Error)]
pub enum SubscriberError {
    /// A ZMQ socket could not be set up.
    #[error("zmq {action} failed: {source}")]
    Zmq {
        /// What was attempted.
        action: &'static str,
        /// The libzmq error.
        source: zmq::Error,
    },
    /// No Tokio runtime to apply events on.
    #[error("the event subscriber must be started inside a Tokio runtime")]
    NoRuntime,
    /// The ZMQ thread could not be spawned.
    #[error("could not spawn the zmq thread: {0}")]
    Thread(std::io::Error),
}

fn zmq_err(action: &'static str) -> impl FnOnce(zmq::Error) -> SubscriberError {
    move |source| SubscriberError::Zmq { action, source }
}

enum Command {
    Connect(String),
    Disconnect(String),
    SetReplay(String, Option<String>),
    Stop,
}

enum Work {
    Batch(Arc<EventSource>, EventBatch),
    Restarted(Arc<EventSource>),
}

/// A running subscriber. Dropping it stops it.
pub struct EventSubscriber {
    commands: std_mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<IngestCounters>,
    bound_endpoint: Option<String>,
}

impl std::fmt::Debug for EventSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSubscriber").finish_non_exhaustive()
    }
}

impl EventSubscriber {
    /// Starts subscribing as `config` says, applying batches with
    /// `ingestor`. Must be called inside a Tokio runtime.
    pub fn start<I: KvBlockIndex + 'static>(
        config: &SubscriberConfig,
        ingestor: Arc<Ingestor<I>>,
    ) -> Result<EventSubscriber, SubscriberError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| SubscriberError::NoRuntime)?;
        let context = zmq::Context::new();
        let socket = context.socket(zmq::SUB).map_err(zmq_err("socket"))?;
        socket.set_rcvhwm(100_000).map_err(zmq_err("set_rcvhwm"))?;
        socket
            .set_reconnect_ivl(100)
            .map_err(zmq_err("set_reconnect_ivl"))?;
        socket
            .set_reconnect_ivl_max(5000)
            .map_err(zmq_err("set_reconnect_ivl_max"))?;
        socket
            .set_subscribe(config.topic_filter.as_bytes())
            .map_err(zmq_err("subscribe"))?;
        for endpoint in &config.connect {
            socket.connect(endpoint).map_err(zmq_err("connect"))?;
        }
        let bound_endpoint = match &config.bind {
            Some(endpoint) => {
                socket.bind(endpoint).map_err(zmq_err("bind"))?;
                socket
                    .get_last_endpoint()
                    .map_err(zmq_err("get_last_endpoint"))?
                    .ok()
            }
            None => None,
        };
        let counters = ingestor.counters().clone();
        let (work_tx, mut work_rx) = mpsc::channel::<Work>(config.queue_capacity.max(1));
        runtime.spawn(async move {
            while let Some(work) = work_rx.recv().await {
                match work {
                    Work::Batch(source, batch) => ingestor.apply(&source, &batch).await,
                    Work::Restarted(source) => {
                        if let Err(error) = ingestor.clear(&source.pod).await {
                            tracing::warn!(%error, "could not clear a restarted pod");
                        }
                    }
                }
            }
        });
        let (commands, command_rx) = std_mpsc::channel();
        let mut receiver = Receiver {
            context,
            socket,
            commands: command_rx,
            work: work_tx,
            counters: counters.clone(),
            replay_endpoints: config.replay_endpoints.clone().into_iter().collect(),
            replay_timeout: Duration::from_millis(config.replay_timeout_ms),
            topics: HashMap::new(),
            warn: WarnLimit::new(Duration::from_secs(10)),
        };
        let thread = std::thread::Builder::new()
            .name("llmd-kv-events".into())
            .spawn(move || receiver.run())
            .map_err(SubscriberError::Thread)?;
        Ok(EventSubscriber {
            commands,
            thread: Some(thread),
            counters,
            bound_endpoint,
        })
    }

    /// Connects to one more publisher.
    pub fn connect(&self, endpoint: &str) {
        let _ = self.commands.send(Command::Connect(endpoint.to_owned()));
    }

    /// Disconnects from a publisher.
    pub fn disconnect(&self, endpoint: &str) {
        let _ = self.commands.send(Command::Disconnect(endpoint.to_owned()));
    }

    /// Sets (or with `None` removes) the replay endpoint of `pod`.
    pub fn set_replay_endpoint(&self, pod: &str, endpoint: Option<&str>) {
        let _ = self.commands.send(Command::SetReplay(
            pod.to_owned(),
            endpoint.map(str::to_owned),
        ));
    }

    /// The endpoint actually bound when `bind` was configured (with the
    /// port resolved when it was `*`).
    pub fn bound_endpoint(&self) -> Option<&str> {
        self.bound_endpoint.as_deref()
    }

    /// The ingestion counters.
    pub fn counters(&self) -> &Arc<IngestCounters> {
        &self.counters
    }

    /// Stops the ZMQ thread and waits for it (at most one poll interval);
    /// batches already received are still applied.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EventSubscriber {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct TopicState {
    source: Arc<EventSource>,
    last_seq: u64,
}

/// The ZMQ thread's state.
struct Receiver {
    context: zmq::Context,
    socket: zmq::Socket,
    commands: std_mpsc::Receiver<Command>,
    work: mpsc::Sender<Work>,
    counters: Arc<IngestCounters>,
    replay_endpoints: HashMap<String, String>,
    replay_timeout: Duration,
    topics: HashMap<Vec<u8>, TopicState>,
    warn: WarnLimit,
}

impl Receiver {
    fn run(&mut self) {
        loop {
            if !self.handle_commands() {
                return;
            }
            match self.socket.poll(zmq::POLLIN, POLL_INTERVAL_MS) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(error) => {
                    self.warn_bad("zmq poll failed", &error);
                    continue;
                }
            }
            loop {
                match self.socket.recv_multipart(zmq::DONTWAIT) {
                    Ok(frames) => {
                        if !self.on_message(frames) {
                            return;
                        }
                    }
                    Err(zmq::Error::EAGAIN) => break,
                    Err(error) => {
                        self.warn_bad("zmq receive failed", &error);
                        break;
                    }
                }
            }
        }
    }

    /// Applies pending commands; `false` when told to stop.
    fn handle_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Connect(endpoint)) => {
                    if let Err(error) = self.socket.connect(&endpoint) {
                        self.warn_bad("could not connect to a KV-event publisher", &error);
                    }
                }
                Ok(Command::Disconnect(endpoint)) => {
                    if let Err(error) = self.socket.disconnect(&endpoint) {
                        self.warn_bad("could not disconnect from a KV-event publisher", &error);
                    }
                }
                Ok(Command::SetReplay(pod, Some(endpoint))) => {
                    self.replay_endpoints.insert(pod, endpoint);
                }
                Ok(Command::SetReplay(pod, None)) => {
                    self.replay_endpoints.remove(&pod);
                }
                Ok(Command::Stop) | Err(std_mpsc::TryRecvError::Disconnected) => return false,
                Err(std_mpsc::TryRecvError::Empty) => return true,
            }
        }
    }

    /// Handles one message; `false` when the index side has gone away.
    fn on_message(&mut self, frames: Vec<Vec<u8>>) -> bool {
        let [topic, seq, payload] = match <[Vec<u8>; 3]>::try_from(frames) {
            Ok(frames) => frames,
            Err(_) => return self.malformed_frame("message is not [topic, sequence, payload]"),
        };
        let Ok(seq) = <[u8; 8]>::try_from(seq.as_slice()).map(u64::from_be_bytes) else {
            return self.malformed_frame("sequence frame is not 8 bytes");
        };
        let (source, last) = match self.topics.get_mut(&topic) {
            Some(state) => (
                state.source.clone(),
                Some(std::mem::replace(&mut state.last_seq, seq)),
            ),
            None => {
                let Some(source) = std::str::from_utf8(&topic)
                    .ok()
                    .and_then(EventSource::from_topic)
                else {
                    return self.malformed_frame("topic is not kv@<pod>@<model>");
                };
                let source = Arc::new(source);
                let state = TopicState {
                    source: source.clone(),
                    last_seq: seq,
                };
                self.topics.insert(topic, state);
                (source, None)
            }
        };
        match last {
            Some(last) if seq <= last => {
                IngestCounters::add(&self.counters.publisher_restarts, 1);
                if self
                    .work
                    .blocking_send(Work::Restarted(source.clone()))
                    .is_err()
                {
                    return false;
                }
            }
            Some(last) if seq > last.saturating_add(1) => {
                IngestCounters::add(&self.counters.gaps, 1);
                IngestCounters::add(&self.counters.missed_batches, seq - last - 1);
                if !self.recover(&source, last.saturating_add(1), seq) {
                    return false;
                }
            }
            _ => {}
        }
        self.forward(&source, &payload)
    }

    /// Fetches batches `from..until` from the pod's replay socket, if it
    /// has one, and forwards them in order.
    fn recover(&mut self, source: &Arc<EventSource>, from: u64, until: u64) -> bool {
        let Some(endpoint) = self.replay_endpoints.get(source.pod.as_str()).cloned() else {
            return true;
        };
        let replayed = match self.replay(&endpoint, from, until) {
            Ok(replayed) => replayed,
            Err(error) => {
                self.warn_bad("KV-event replay failed", &error);
                return true;
            }
        };
        for payload in replayed {
            IngestCounters::add(&self.counters.replayed_batches, 1);
            if !self.forward(source, &payload) {
                return false;
            }
        }
        true
    }

    fn replay(&self, endpoint: &str, from: u64, until: u64) -> Result<Vec<Vec<u8>>, zmq::Error> {
        let socket = self.context.socket(zmq::DEALER)?;
        socket.set_linger(0)?;
        socket.connect(endpoint)?;
        // A DEALER sends the empty delimiter a REQ socket would add; the
        // ROUTER sees [identity, "", start sequence].
        socket.send_multipart([&b""[..], &from.to_be_bytes()[..]], 0)?;
        let deadline = Instant::now() + self.replay_timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as i64;
            if left == 0 || socket.poll(zmq::POLLIN, left)? == 0 {
                break;
            }
            let frames = socket.recv_multipart(0)?;
            let (seq, payload) = match frames.as_slice() {
                [empty, seq, payload] if empty.is_empty() => (seq, payload),
                _ => continue,
            };
            if seq.as_slice() == END_OF_REPLAY {
                break;
            }
            let Ok(seq) = <[u8; 8]>::try_from(seq.as_slice()).map(u64::from_be_bytes) else {
                continue;
            };
            if (from..until).contains(&seq) {
                out.push(payload.clone());
            }
        }
        Ok(out)
    }

    fn forward(&self, source: &Arc<EventSource>, payload: &[u8]) -> bool {
        match decode_batch(payload) {
            Ok(decoded) => {
                IngestCounters::add(
                    &self.counters.unknown_events,
                    u64::from(decoded.unknown_events),
                );
                IngestCounters::add(
                    &self.counters.malformed_events,
                    u64::from(decoded.malformed_events),
                );
                if decoded.unknown_events + decoded.malformed_events > 0 {
                    self.warn_skip("KV events skipped: unknown type or malformed");
                }
                self.work
                    .blocking_send(Work::Batch(source.clone(), decoded.batch))
                    .is_ok()
            }
            Err(error) => {
                IngestCounters::add(&self.counters.decode_errors, 1);
                self.warn_bad("KV-event payload did not decode", &error);
                true
            }
        }
    }

    fn malformed_frame(&self, what: &'static str) -> bool {
        IngestCounters::add(&self.counters.malformed_frames, 1);
        self.warn_skip(what);
        true
    }

    fn warn_skip(&self, what: &'static str) {
        if let Some(suppressed) = self.warn.allow() {
            tracing::warn!(suppressed, "{what}");
        }
    }

    fn warn_bad(&self, what: &'static str, error: &dyn std::fmt::Display) {
        if let Some(suppressed) = self.warn.allow() {
            tracing::warn!(%error, suppressed, "{what}");
        }
    }
}
