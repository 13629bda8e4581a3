//! KV events over real ZMQ sockets: vLLM's frames and msgpack payloads,
//! block hashes that match vLLM's `sha256_cbor`, sequence numbers from 0,
//! replay, and the stores and evictions of the LRU prefix cache.

mod common;

use common::{Sim, words};
use llmd_kv_cache::events::{
    BlockRemoved, BlockStored, Encoding, EngineHash, KvEvent, decode_batch,
};
use llmd_kv_cache::vllm_hash::{ExtraKey, VllmBlockHasher, event_hash};
use llmd_sim::SimConfig;
use llmd_sim::config::KvEventsConfig;
use llmd_sim::kv_events::END_OF_REPLAY;
use llmd_sim::tokenizer;
use serde_json::json;

const BLOCK: usize = 4;

fn config(encoding: Encoding) -> SimConfig {
    let mut config = SimConfig::new("m");
    config.block_size = BLOCK;
    config.num_gpu_blocks = 6;
    config.max_model_len = 24;
    config.event_encoding = encoding;
    config.kv_events = Some(KvEventsConfig::zmq(
        "tcp://127.0.0.1:*",
        Some("tcp://127.0.0.1:*".into()),
    ));
    config
}

/// vLLM's event hashes of the full blocks of `prompt`.
fn event_hashes(prompt: &str) -> Vec<EngineHash> {
    VllmBlockHasher::new("vllm-none-hash", BLOCK)
        .unwrap()
        .block_hashes(&tokenizer::encode(prompt))
        .iter()
        .map(|d| EngineHash::U64(event_hash(d)))
        .collect()
}

/// Asks the replay socket for every batch from `start`; returns
/// `(seq, payload)` pairs, checking the end marker.
fn replay(endpoint: &str, start: u64, with_delimiter: bool) -> Vec<(u64, Vec<u8>)> {
    let context = zmq::Context::new();
    let dealer = context.socket(zmq::DEALER).unwrap();
    dealer.set_rcvtimeo(30_000).unwrap();
    dealer.connect(endpoint).unwrap();
    let seq = start.to_be_bytes();
    if with_delimiter {
        dealer.send_multipart([&[][..], &seq[..]], 0).unwrap();
    } else {
        dealer.send(&seq[..], 0).unwrap();
    }
    let mut batches = Vec::new();
    loop {
        let mut frames = dealer.recv_multipart(0).expect("replay answer");
        if with_delimiter {
            assert!(frames.remove(0).is_empty(), "delimiter kept");
        }
        assert_eq!(frames.len(), 2);
        if frames[0] == END_OF_REPLAY {
            assert!(frames[1].is_empty());
            return batches;
        }
        let seq = u64::from_be_bytes(frames[0].as_slice().try_into().unwrap());
        batches.push((seq, frames.remove(1)));
    }
}

fn events_of(payload: &[u8]) -> Vec<KvEvent> {
    decode_batch(payload).unwrap().batch.events
}

#[tokio::test]
async fn published_batches_are_vllm_frames_numbered_from_zero() {
    let sim = Sim::start(config(Encoding::Map)).await;
    let endpoints = sim.server.kv_events().unwrap().clone();
    let context = zmq::Context::new();
    let sub = context.socket(zmq::SUB).unwrap();
    sub.set_subscribe(b"").unwrap();
    sub.set_rcvtimeo(100).unwrap();
    sub.connect(&endpoints.events).unwrap();

    // A subscriber misses what is published before its subscription
    // arrives: send distinct prompts until one batch is received live.
    let mut live = None;
    let mut prompts = Vec::new();
    for attempt in 0..200 {
        let prompt = words(attempt * 100, 9);
        sim.post(
            "/v1/completions",
            &json!({"prompt": prompt, "max_tokens": 1}),
        )
        .await;
        prompts.push(prompt);
        if let Ok(frames) = sub.recv_multipart(0) {
            live = Some(frames);
            break;
        }
    }
    let live = live.expect("no KV event batch received");
    assert_eq!(live.len(), 3);
    let port = sim.server.local_addr().port();
    assert_eq!(live[0], format!("kv@127.0.0.1:{port}@m").into_bytes());
    let live_seq = u64::from_be_bytes(live[1].as_slice().try_into().unwrap());
    assert_eq!(live[2][0], 0x93, "a positional [ts, events, rank] batch");

    let replayed = replay(endpoints.replay.as_deref().unwrap(), 0, true);
    let seqs: Vec<u64> = replayed.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    assert!(replayed.contains(&(live_seq, live[2].clone())));

    let batch = decode_batch(&replayed[0].1).unwrap().batch;
    assert_eq!(batch.data_parallel_rank, Some(0));
    assert_eq!(batch.events, [stored(&prompts[0])]);
    let from_one = replay(endpoints.replay.as_deref().unwrap(), 1, false);
    assert_eq!(
        from_one.first().map(|(seq, _)| *seq),
        (seqs.len() > 1).then_some(1)
    );
}

/// Six blocks; each request of 9 prompt tokens and 1 output token holds
/// three and leaves two cached.
#[tokio::test]
async fn lru_eviction_is_published_and_ends_cache_hits() {
    let sim = Sim::start(config(Encoding::Array)).await;
    let replay_endpoint = sim.server.kv_events().unwrap().replay.clone().unwrap();
    let (a, b, c) = (words(0, 9), words(100, 9), words(200, 9));
    let cached =
        |body: serde_json::Value| body["usage"]["prompt_tokens_details"]["cached_tokens"].clone();
    for prompt in [&a, &b, &c] {
        let (_, body) = sim
            .post(
                "/v1/completions",
                &json!({"prompt": prompt, "max_tokens": 1}),
            )
            .await;
        assert_eq!(cached(body), 0);
    }
    let (_, body) = sim
        .post("/v1/completions", &json!({"prompt": b, "max_tokens": 1}))
        .await;
    assert_eq!(cached(body), 8, "b survived");
    let (_, body) = sim
        .post("/v1/completions", &json!({"prompt": a, "max_tokens": 1}))
        .await;
    assert_eq!(cached(body), 0, "a was evicted by c");

    let batches = replay(&replay_endpoint, 0, true);
    assert!(
        batches.iter().all(|(_, payload)| payload[0] == 0x93),
        "array-encoded batches"
    );
    let events: Vec<Vec<KvEvent>> = batches
        .iter()
        .map(|(_, payload)| events_of(payload))
        .collect();
    let removed = |prompt: &str| {
        let mut hashes = event_hashes(prompt);
        hashes.reverse();
        KvEvent::BlockRemoved(BlockRemoved {
            block_hashes: hashes,
            medium: Some("GPU".into()),
            ..BlockRemoved::default()
        })
    };
    assert_eq!(
        events,
        [
            vec![stored(&a)],
            vec![stored(&b)],
            vec![removed(&a)],
            vec![stored(&c)],
            vec![removed(&c)],
            vec![stored(&a)],
        ]
    );
}

/// The `BlockStored` event of a 9-token prompt's two full blocks.
fn stored(prompt: &str) -> KvEvent {
    let tokens = tokenizer::encode(prompt);
    KvEvent::BlockStored(BlockStored {
        block_hashes: event_hashes(prompt),
        parent_block_hash: None,
        token_ids: tokens[..2 * BLOCK].to_vec(),
        block_size: BLOCK as u32,
        medium: Some("GPU".into()),
        extra_keys: Some(vec![None, None]),
        ..BlockStored::default()
    })
}

#[tokio::test]
async fn salted_blocks_are_published_with_the_salt_in_their_hashes_and_extra_keys() {
    let sim = Sim::start(config(Encoding::Map)).await;
    let replay_endpoint = sim.server.kv_events().unwrap().replay.clone().unwrap();
    let prompt = words(0, 9);
    sim.post(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 1, "cache_salt": "tenant-a"}),
    )
    .await;

    let salted: Vec<EngineHash> = VllmBlockHasher::new("vllm-none-hash", BLOCK)
        .unwrap()
        .block_hashes_with_extra_keys(
            &tokenizer::encode(&prompt),
            &[Some(vec![ExtraKey::Text("tenant-a".into())])],
        )
        .iter()
        .map(|d| EngineHash::U64(event_hash(d)))
        .collect();
    assert_ne!(salted, event_hashes(&prompt));
    let batches = replay(&replay_endpoint, 0, true);
    let events: Vec<KvEvent> = batches
        .iter()
        .flat_map(|(_, payload)| events_of(payload))
        .collect();
    match events.as_slice() {
        [KvEvent::BlockStored(stored)] => {
            assert_eq!(stored.block_hashes, salted);
            assert_eq!(
                stored.extra_keys,
                Some(vec![Some(vec![ExtraKey::Text("tenant-a".into())]), None]),
                "the salt is the first block's extra key, as vLLM publishes it"
            );
        }
        other => panic!("one BlockStored expected: {other:?}"),
    }
}

#[tokio::test]
async fn disabled_events_open_no_socket() {
    let mut disabled = config(Encoding::Map);
    if let Some(events) = &mut disabled.kv_events {
        events.enable_kv_cache_events = false;
    }
    let sim = Sim::start(disabled).await;
    assert!(sim.server.kv_events().is_none());
}
