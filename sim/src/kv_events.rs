//! Publishing KV events the way vLLM's `ZmqEventPublisher` does.
//!
//! Each batch of events goes out on a ZMQ PUB socket as three frames:
//! the topic, an 8-byte big-endian sequence number (from 0) and the
//! msgpack payload. The last `buffer_steps` payloads are kept; an optional
//! ROUTER socket answers a replay request (a start sequence, 8 bytes
//! big-endian) with every kept batch from that sequence on, then an end
//! marker whose sequence is all `0xFF` bytes and whose payload is empty.
//!
//! The sockets live on one dedicated thread, fed by a channel, so
//! publishing never blocks a request.

use crate::config::{EventEncoding, KvEventsConfig};
use crate::prefix_cache::{self, BlockHash};
use llmd_kv_cache::events::{self as wire, BlockRemoved, BlockStored, EngineHash, EventBatch};
use llmd_kv_cache::vllm_hash::{ExtraKey, event_hash};
use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The end-of-replay sequence number: -1 as a signed 64-bit integer.
pub const END_OF_REPLAY: [u8; 8] = [0xFF; 8];

/// How often the publisher thread looks for replay requests when idle.
const REPLAY_POLL: Duration = Duration::from_millis(20);

/// Why the publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    /// A socket could not be created, bound or connected.
    #[error("KV events socket {endpoint}: {source}")]
    Socket {
        /// The endpoint.
        endpoint: String,
        /// The ZMQ error.
        source: zmq::Error,
    },
    /// The publisher thread could not be started.
    #[error("cannot start the KV events thread: {0}")]
    Thread(std::io::Error),
}

/// Where the engine hands its event batches.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: Sender<Vec<prefix_cache::KvEvent>>,
}

impl EventSink {
    /// Queues one batch; empty batches are not published.
    pub fn publish(&self, events: Vec<prefix_cache::KvEvent>) {
        if !events.is_empty() {
            // The thread only stops when every sink is gone.
            let _ = self.tx.send(events);
        }
    }
}

/// The endpoints a started publisher uses, with wildcard ports resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherEndpoints {
    /// The PUB socket's endpoint.
    pub events: String,
    /// The ROUTER socket's endpoint, if replay is on.
    pub replay: Option<String>,
}

/// Opens the sockets of `config` and starts the publisher thread, which
/// runs until every [`EventSink`] is dropped.
pub fn start(
    config: &KvEventsConfig,
    topic: String,
    encoding: EventEncoding,
) -> Result<(EventSink, PublisherEndpoints), PublisherError> {
    let (worker, endpoints) = open(config, topic, encoding)?;
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("kv-events".into())
        .spawn(move || worker.run(rx))
        .map_err(PublisherError::Thread)?;
    Ok((EventSink { tx }, endpoints))
}

/// Opens the sockets of `config`: the publisher's state, not yet running.
fn open(
    config: &KvEventsConfig,
    topic: String,
    encoding: EventEncoding,
) -> Result<(Worker, PublisherEndpoints), PublisherError> {
    let context = zmq::Context::new();
    let socket_error = |endpoint: &str| {
        let endpoint = endpoint.to_owned();
        move |source| PublisherError::Socket { endpoint, source }
    };
    let publisher = context
        .socket(zmq::PUB)
        .map_err(socket_error(&config.endpoint))?;
    publisher
        .set_linger(0)
        .map_err(socket_error(&config.endpoint))?;
    if binds(&config.endpoint) {
        publisher.bind(&config.endpoint)
    } else {
        publisher.connect(&config.endpoint)
    }
    .map_err(socket_error(&config.endpoint))?;
    let events_endpoint = last_endpoint(&publisher).unwrap_or_else(|| config.endpoint.clone());
    let replay = match &config.replay_endpoint {
        Some(endpoint) => {
            let router = context
                .socket(zmq::ROUTER)
                .map_err(socket_error(endpoint))?;
            router.set_linger(0).map_err(socket_error(endpoint))?;
            router.bind(endpoint).map_err(socket_error(endpoint))?;
            let resolved = last_endpoint(&router).unwrap_or_else(|| endpoint.clone());
            Some((router, resolved))
        }
        None => None,
    };
    let endpoints = PublisherEndpoints {
        events: events_endpoint,
        replay: replay.as_ref().map(|(_, e)| e.clone()),
    };
    let worker = Worker {
        publisher,
        replay: replay.map(|(router, _)| router),
        topic: topic.into_bytes(),
        encoding,
        next_seq: 0,
        buffer: VecDeque::new(),
        buffer_steps: config.buffer_steps,
    };
    Ok((worker, endpoints))
}

/// vLLM's rule: bind wildcard, IPv6-any, ipc and inproc endpoints,
/// connect to the others.
fn binds(endpoint: &str) -> bool {
    endpoint.contains('*')
        || endpoint.contains("::")
        || endpoint.starts_with("ipc://")
        || endpoint.starts_with("inproc://")
}

fn last_endpoint(socket: &zmq::Socket) -> Option<String> {
    socket
        .get_last_endpoint()
        .ok()?
        .ok()
        .filter(|e| !e.is_empty())
}

struct Worker {
    publisher: zmq::Socket,
    replay: Option<zmq::Socket>,
    topic: Vec<u8>,
    encoding: EventEncoding,
    next_seq: u64,
    buffer: VecDeque<(u64, Vec<u8>)>,
    buffer_steps: usize,
}

impl Worker {
    fn run(mut self, rx: Receiver<Vec<prefix_cache::KvEvent>>) {
        loop {
            self.serve_replays(&rx);
            match rx.recv_timeout(REPLAY_POLL) {
                Ok(events) => self.publish(&events),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn publish(&mut self, events: &[prefix_cache::KvEvent]) {
        let payload = encode(events, self.encoding);
        let seq = self.next_seq;
        self.next_seq += 1;
        let frames: [&[u8]; 3] = [&self.topic, &seq.to_be_bytes(), &payload];
        if let Err(error) = self.publisher.send_multipart(frames, 0) {
            tracing::warn!(seq, %error, "KV event batch not published");
        }
        if self.buffer_steps > 0 {
            if self.buffer.len() == self.buffer_steps {
                self.buffer.pop_front();
            }
            self.buffer.push_back((seq, payload));
        }
    }

    /// Answers the replay requests waiting on the ROUTER socket. Each
    /// answer includes every batch queued before the request arrived: a
    /// client that saw a request finish and then asks for a replay finds
    /// that request's events in it.
    fn serve_replays(&mut self, rx: &Receiver<Vec<prefix_cache::KvEvent>>) {
        let Some(router) = self.replay.take() else {
            return;
        };
        while matches!(router.poll(zmq::POLLIN, 0), Ok(n) if n > 0) {
            match router.recv_multipart(0) {
                Ok(frames) => {
                    while let Ok(events) = rx.try_recv() {
                        self.publish(&events);
                    }
                    self.answer_replay(&router, &frames);
                }
                Err(error) => {
                    tracing::warn!(%error, "KV events replay request not received");
                    break;
                }
            }
        }
        self.replay = Some(router);
    }

    /// Answers `[identity, (empty delimiter,) start seq]`, keeping the
    /// delimiter when the client sent one (REQ clients do).
    fn answer_replay(&self, router: &zmq::Socket, frames: &[Vec<u8>]) {
        let (identity, delimiter, start) = match frames {
            [identity, empty, start] if empty.is_empty() => (identity, true, start),
            [identity, start] => (identity, false, start),
            _ => {
                tracing::warn!(
                    frames = frames.len(),
                    "malformed KV events replay request ignored"
                );
                return;
            }
        };
        let Ok(start) = <[u8; 8]>::try_from(start.as_slice()).map(u64::from_be_bytes) else {
            tracing::warn!("KV events replay request without an 8-byte sequence ignored");
            return;
        };
        let send = |seq: &[u8], payload: &[u8]| {
            let result = if delimiter {
                router.send_multipart([identity.as_slice(), &[], seq, payload], 0)
            } else {
                router.send_multipart([identity.as_slice(), seq, payload], 0)
            };
            if let Err(error) = result {
                tracing::warn!(%error, "KV events replay answer not sent");
            }
        };
        for (seq, payload) in self.buffer.iter().filter(|(seq, _)| *seq >= start) {
            send(&seq.to_be_bytes(), payload);
        }
        send(&END_OF_REPLAY, &[]);
    }
}

/// Encodes one batch in vLLM's wire format: integer block hashes (the
/// digest's last 8 bytes), medium `GPU`, data-parallel rank 0.
pub fn encode(events: &[prefix_cache::KvEvent], encoding: EventEncoding) -> Vec<u8> {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let batch = EventBatch {
        ts,
        events: events.iter().map(to_wire).collect(),
        data_parallel_rank: Some(0),
    };
    wire::encode_batch(&batch, encoding)
}

fn engine_hash(hash: &BlockHash) -> EngineHash {
    EngineHash::U64(event_hash(hash))
}

/// vLLM's `extra_keys` of `blocks` stored blocks: one entry per block,
/// `None` for a block without extra keys; a `cache_salt` is the first
/// block's.
fn extra_keys(blocks: usize, salt: Option<&str>) -> Vec<Option<Vec<ExtraKey>>> {
    let mut keys = vec![None; blocks];
    if let (Some(first), Some(salt)) = (keys.first_mut(), salt) {
        *first = Some(vec![ExtraKey::Text(salt.to_owned())]);
    }
    keys
}

fn to_wire(event: &prefix_cache::KvEvent) -> wire::KvEvent {
    match event {
        prefix_cache::KvEvent::BlockStored {
            block_hashes,
            parent_block_hash,
            token_ids,
            block_size,
            salt,
        } => wire::KvEvent::BlockStored(BlockStored {
            block_hashes: block_hashes.iter().map(engine_hash).collect(),
            parent_block_hash: parent_block_hash.as_ref().map(engine_hash),
            token_ids: token_ids.clone(),
            block_size: u32::try_from(*block_size).unwrap_or(u32::MAX),
            medium: Some("GPU".into()),
            extra_keys: Some(extra_keys(block_hashes.len(), salt.as_deref())),
            ..BlockStored::default()
        }),
        prefix_cache::KvEvent::BlockRemoved { block_hashes } => {
            wire::KvEvent::BlockRemoved(BlockRemoved {
                block_hashes: block_hashes.iter().map(engine_hash).collect(),
                medium: Some("GPU".into()),
                ..BlockRemoved::default()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(token: u32) -> prefix_cache::KvEvent {
        prefix_cache::KvEvent::BlockStored {
            block_hashes: Vec::new(),
            parent_block_hash: None,
            token_ids: vec![token],
            block_size: 1,
            salt: None,
        }
    }

    /// Batches queued before a replay request arrives are in its answer,
    /// even when the thread had not yet taken them off the channel.
    #[test]
    fn a_replay_answer_includes_the_batches_still_queued() {
        let config = KvEventsConfig::zmq("tcp://127.0.0.1:*", Some("tcp://127.0.0.1:*".into()));
        let (mut worker, endpoints) =
            open(&config, "kv@test".into(), EventEncoding::Array).expect("sockets open");
        let (tx, rx) = mpsc::channel();
        tx.send(vec![stored(1)]).expect("queued");
        tx.send(vec![stored(2)]).expect("queued");

        let context = zmq::Context::new();
        let dealer = context.socket(zmq::DEALER).expect("dealer");
        dealer.set_rcvtimeo(10_000).expect("timeout set");
        dealer
            .connect(endpoints.replay.as_deref().expect("replay endpoint"))
            .expect("connected");
        dealer
            .send(&0u64.to_be_bytes()[..], 0)
            .expect("request sent");
        let router = worker.replay.as_ref().expect("router");
        assert_eq!(router.poll(zmq::POLLIN, 10_000), Ok(1), "request arrived");

        worker.serve_replays(&rx);
        let mut answers = Vec::new();
        loop {
            let frames = dealer.recv_multipart(0).expect("replay answer");
            if frames[0] == END_OF_REPLAY {
                break;
            }
            let seq = u64::from_be_bytes(frames[0].as_slice().try_into().expect("8 bytes"));
            let events = wire::decode_batch(&frames[1])
                .expect("decodes")
                .batch
                .events;
            answers.push((seq, events));
        }
        let batch = |token| to_wire(&stored(token));
        assert_eq!(answers, [(0, vec![batch(1)]), (1, vec![batch(2)])]);
    }
}
