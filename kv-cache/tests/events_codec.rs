//! The KV-event encoder and decoder: both vLLM encodings, every field,
//! both hash forms, and garbage that must never panic.

use llmd_kv_cache::events::{
    BlockRemoved, BlockStored, Encoding, EngineHash, EventBatch, KvEvent, decode_batch,
    encode_batch,
};
use llmd_kv_cache::vllm_hash::ExtraKey;

fn full_stored() -> BlockStored {
    BlockStored {
        block_hashes: vec![EngineHash::Digest([7; 32]), EngineHash::U64(u64::MAX)],
        parent_block_hash: Some(EngineHash::U64(42)),
        token_ids: (0..32).map(|t| t * 70_000).collect(),
        block_size: 16,
        lora_id: Some(3),
        medium: Some("CPU".into()),
        lora_name: Some("adapter".into()),
        extra_keys: Some(vec![
            None,
            Some(vec![
                ExtraKey::Text("mm".into()),
                ExtraKey::Int(-5),
                ExtraKey::Bytes(vec![0, 255]),
                ExtraKey::Tuple(vec![ExtraKey::Int(1)]),
            ]),
        ]),
        group_idx: Some(0),
        kv_cache_spec_kind: Some("full_attention".into()),
        kv_cache_spec_sliding_window: Some(4096),
        locality: Some("local".into()),
        ownership: Some("owned".into()),
        session_id: Some("s-1".into()),
        lookahead_token_ids: Some(vec![1, 2, 3]),
    }
}

fn minimal_stored() -> BlockStored {
    BlockStored {
        block_hashes: vec![EngineHash::U64(1)],
        parent_block_hash: None,
        token_ids: (0..16).collect(),
        block_size: 16,
        ..BlockStored::default()
    }
}

fn sample_batch() -> EventBatch {
    EventBatch {
        ts: 1_700_000_000.25,
        events: vec![
            KvEvent::BlockStored(full_stored()),
            KvEvent::BlockStored(minimal_stored()),
            KvEvent::BlockRemoved(BlockRemoved {
                block_hashes: vec![EngineHash::U64(9), EngineHash::Digest([1; 32])],
                medium: Some("GPU".into()),
                group_idx: Some(1),
                locality: None,
                ownership: Some("shared".into()),
            }),
            KvEvent::BlockRemoved(BlockRemoved {
                block_hashes: vec![EngineHash::U64(10)],
                ..BlockRemoved::default()
            }),
            KvEvent::AllBlocksCleared,
        ],
        data_parallel_rank: Some(2),
    }
}

#[test]
fn both_encodings_round_trip_every_field() {
    for encoding in [Encoding::Array, Encoding::Map] {
        let batch = sample_batch();
        let decoded = decode_batch(&encode_batch(&batch, encoding)).unwrap();
        assert_eq!(decoded.batch, batch, "{encoding:?}");
        assert_eq!((decoded.unknown_events, decoded.malformed_events), (0, 0));
        let no_rank = EventBatch {
            data_parallel_rank: None,
            ..batch
        };
        assert_eq!(
            decode_batch(&encode_batch(&no_rank, encoding))
                .unwrap()
                .batch,
            no_rank
        );
    }
}

#[test]
fn array_encoding_omits_trailing_defaults_like_msgspec() {
    let batch = EventBatch {
        ts: 0.0,
        events: vec![
            KvEvent::BlockStored(minimal_stored()),
            KvEvent::AllBlocksCleared,
        ],
        data_parallel_rank: None,
    };
    let bytes = encode_batch(&batch, Encoding::Array);
    // [ts, [event, event]]: a 2-element batch.
    assert_eq!(bytes[0], 0x92);
    // The stored event: tag + 7 fields without defaults, nothing after.
    assert_eq!(bytes[1 + 9 + 1], 0x98);
    // AllBlocksCleared is just its tag.
    assert_eq!(&bytes[bytes.len() - 18..], b"\x91\xb0AllBlocksCleared");
    let map = encode_batch(&batch, Encoding::Map);
    // The envelope stays positional ([ts, events]); the event maps carry "type".
    assert_eq!(map[0], 0x92);
    assert!(map.windows(5).any(|w| w == b"\xa4type"));
}

#[test]
fn integer_hashes_and_short_byte_hashes_become_u64() {
    assert_eq!(
        EngineHash::Digest([0xab; 32]).as_u64(),
        0xabab_abab_abab_abab
    );
    // A hand-written msgpack event whose hash is 4 raw bytes.
    let payload = [
        0x92, 0x00, 0x91, 0x92, 0xac, b'B', b'l', b'o', b'c', b'k', b'R', b'e', b'm', b'o', b'v',
        b'e', b'd', 0x91, 0xc4, 0x04, 0x00, 0x00, 0x01, 0x02,
    ];
    let decoded = decode_batch(&payload).unwrap();
    let KvEvent::BlockRemoved(removed) = &decoded.batch.events[0] else {
        panic!("expected BlockRemoved, got {:?}", decoded.batch.events);
    };
    assert_eq!(removed.block_hashes, vec![EngineHash::U64(0x0102)]);
    assert_eq!(removed.medium, None);
}

#[test]
fn unknown_and_malformed_events_are_counted_and_skipped() {
    let mut batch = sample_batch();
    batch.events.truncate(1);
    for encoding in [Encoding::Array, Encoding::Map] {
        let good = encode_batch(&batch, encoding);
        // Splice in, before the good event, an unknown event and a BlockStored
        // whose token ids are strings.
        let unknown: &[u8] = match encoding {
            Encoding::Array => b"\x92\xadBlockInactive\x01",
            Encoding::Map => b"\x82\xa4type\xadBlockInactive\xa1x\x01",
        };
        let malformed: &[u8] = match encoding {
            Encoding::Array => b"\x95\xabBlockStored\x91\x01\xc0\x91\xa1x\x10",
            Encoding::Map => b"\x82\xa4type\xabBlockStored\xa9token_ids\x91\xa1x",
        };
        let events_at = good.iter().position(|&b| b == 0x91).unwrap();
        let mut payload = good[..events_at].to_vec();
        payload.push(0x93);
        payload.extend_from_slice(unknown);
        payload.extend_from_slice(malformed);
        payload.extend_from_slice(&good[events_at + 1..]);
        let decoded = decode_batch(&payload).unwrap();
        assert_eq!(decoded.unknown_events, 1, "{encoding:?}");
        assert_eq!(decoded.malformed_events, 1, "{encoding:?}");
        assert_eq!(decoded.batch.events, batch.events, "{encoding:?}");
    }
}

#[test]
fn garbage_never_panics() {
    let valid = encode_batch(&sample_batch(), Encoding::Map);
    for cut in 0..valid.len() {
        let _ = decode_batch(&valid[..cut]);
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 64) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|i| (state >> (i % 8 * 8)) as u8 ^ i as u8)
            .collect();
        let _ = decode_batch(&bytes);
        let mut flipped = valid.clone();
        let at = (state as usize) % flipped.len();
        flipped[at] ^= (state >> 32) as u8 | 1;
        let _ = decode_batch(&flipped);
    }
    // Deep nesting and lying lengths are errors, not crashes.
    assert!(decode_batch(&[0x91; 10_000]).is_err());
    assert!(decode_batch(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(decode_batch(b"").is_err());
}

#[test]
fn newer_optional_fields_of_an_unexpected_type_are_ignored() {
    // A map-encoded BlockStored whose `locality` is an int and whose
    // `lookahead_token_ids` is a string.
    let mut payload = b"\x82\xa2ts\x00\xa6events\x91\x87\xa4type\xabBlockStored".to_vec();
    payload.extend_from_slice(b"\xacblock_hashes\x91\x01\xa9token_ids\x91\x05\xaablock_size\x01");
    payload.extend_from_slice(b"\xa8locality\x07\xb3lookahead_token_ids\xa1x\xaasession_id\xa1s");
    let decoded = decode_batch(&payload).unwrap();
    assert_eq!(decoded.malformed_events, 0);
    let KvEvent::BlockStored(s) = &decoded.batch.events[0] else {
        panic!("expected BlockStored");
    };
    assert_eq!(
        (s.locality.as_deref(), s.lookahead_token_ids.as_ref()),
        (None, None)
    );
    assert_eq!(
        (s.token_ids.as_slice(), s.session_id.as_deref()),
        (&[5][..], Some("s"))
    );
}
