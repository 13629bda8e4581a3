//! Encoding of KV-event batches exactly as vLLM publishes them (msgspec,
//! `omit_defaults`), for simulators and tests.

use super::fields;
use super::model::{BlockRemoved, BlockStored, EngineHash, EventBatch, KvEvent};
use crate::vllm_hash::ExtraKey;
use rmp::encode::{self as mp, ByteBuf, ValueWriteError};
use serde::Deserialize;
use std::convert::Infallible;

/// Which of vLLM's encodings to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// vLLM <= 0.23: each event is a positional array, the event's tag
    /// first; trailing fields at their default are omitted.
    #[default]
    Array,
    /// vLLM >= 0.24: each event is a map, the event's tag under `type`;
    /// fields at their default are omitted.
    Map,
}

/// Writing into a `Vec` cannot fail.
fn done<T>(result: Result<T, ValueWriteError<Infallible>>) {
    match result {
        Ok(_) => {}
        Err(
            ValueWriteError::InvalidMarkerWrite(never) | ValueWriteError::InvalidDataWrite(never),
        ) => match never {},
    }
}

fn infallible<T>(result: Result<T, Infallible>) {
    match result {
        Ok(_) => {}
        Err(never) => match never {},
    }
}

/// Encodes `batch` with `encoding`.
pub fn encode_batch(batch: &EventBatch, encoding: Encoding) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_batch_into(batch, encoding, &mut out);
    out
}

/// Appends the encoding of `batch` to `out`.
pub fn encode_batch_into(batch: &EventBatch, encoding: Encoding, out: &mut Vec<u8>) {
    let mut buf = ByteBuf::from_vec(std::mem::take(out));
    write_batch(batch, encoding, &mut buf);
    *out = buf.into_vec();
}

fn write_batch(batch: &EventBatch, encoding: Encoding, out: &mut ByteBuf) {
    let fields = if batch.data_parallel_rank.is_some() {
        3
    } else {
        2
    };
    // The batch envelope is positional in both encodings:
    // `[ts, events, data_parallel_rank]`.
    done(mp::write_array_len(out, fields));
    for i in 0..fields {
        match i {
            0 => done(mp::write_f64(out, batch.ts)),
            1 => {
                done(mp::write_array_len(out, batch.events.len() as u32));
                for event in &batch.events {
                    encode_event(event, encoding, out);
                }
            }
            _ => opt_int(out, batch.data_parallel_rank),
        }
    }
}

fn encode_event(event: &KvEvent, encoding: Encoding, out: &mut ByteBuf) {
    let (names, required, present): (&[&str], usize, Vec<bool>) = match event {
        KvEvent::BlockStored(s) => (
            fields::BLOCK_STORED,
            fields::BLOCK_STORED_REQUIRED,
            stored_present(s),
        ),
        KvEvent::BlockRemoved(r) => (
            fields::BLOCK_REMOVED,
            fields::BLOCK_REMOVED_REQUIRED,
            removed_present(r),
        ),
        KvEvent::AllBlocksCleared => (&[], 0, Vec::new()),
    };
    let write = |i: usize, out: &mut ByteBuf| match event {
        KvEvent::BlockStored(s) => stored_field(s, i, out),
        KvEvent::BlockRemoved(r) => removed_field(r, i, out),
        KvEvent::AllBlocksCleared => {}
    };
    let written: Vec<usize> = match encoding {
        // Positional: everything up to the last non-default field.
        Encoding::Array => {
            let last = present
                .iter()
                .rposition(|&p| p)
                .map_or(required, |i| (i + 1).max(required));
            (0..last).collect()
        }
        Encoding::Map => (0..names.len())
            .filter(|&i| i < required || present[i])
            .collect(),
    };
    match encoding {
        Encoding::Array => {
            done(mp::write_array_len(out, written.len() as u32 + 1));
            done(mp::write_str(out, event.tag()));
        }
        Encoding::Map => {
            done(mp::write_map_len(out, written.len() as u32 + 1));
            done(mp::write_str(out, fields::TAG_KEY));
            done(mp::write_str(out, event.tag()));
        }
    }
    for i in written {
        if encoding == Encoding::Map {
            done(mp::write_str(out, names[i]));
        }
        write(i, out);
    }
}

/// Whether each field differs from its default (required fields: true).
fn stored_present(s: &BlockStored) -> Vec<bool> {
    let mut p = vec![true; fields::BLOCK_STORED_REQUIRED];
    p.extend([
        s.extra_keys.is_some(),
        s.group_idx.is_some(),
        s.kv_cache_spec_kind.is_some(),
        s.kv_cache_spec_sliding_window.is_some(),
        s.locality.is_some(),
        s.ownership.is_some(),
        s.session_id.is_some(),
        s.lookahead_token_ids.is_some(),
    ]);
    p
}

fn removed_present(r: &BlockRemoved) -> Vec<bool> {
    vec![
        true,
        true,
        r.group_idx.is_some(),
        r.locality.is_some(),
        r.ownership.is_some(),
    ]
}

fn stored_field(s: &BlockStored, i: usize, out: &mut ByteBuf) {
    match i {
        0 => hashes(out, &s.block_hashes),
        1 => match &s.parent_block_hash {
            Some(h) => hash(out, h),
            None => infallible(mp::write_nil(out)),
        },
        2 => tokens(out, &s.token_ids),
        3 => done(mp::write_uint(out, u64::from(s.block_size))),
        4 => opt_int(out, s.lora_id),
        5 => opt_str(out, s.medium.as_deref()),
        6 => opt_str(out, s.lora_name.as_deref()),
        7 => extra_keys(out, s.extra_keys.as_deref()),
        8 => opt_int(out, s.group_idx),
        9 => opt_str(out, s.kv_cache_spec_kind.as_deref()),
        10 => opt_int(out, s.kv_cache_spec_sliding_window),
        11 => opt_str(out, s.locality.as_deref()),
        12 => opt_str(out, s.ownership.as_deref()),
        13 => opt_str(out, s.session_id.as_deref()),
        _ => match &s.lookahead_token_ids {
            Some(t) => tokens(out, t),
            None => infallible(mp::write_nil(out)),
        },
    }
}

fn removed_field(r: &BlockRemoved, i: usize, out: &mut ByteBuf) {
    match i {
        0 => hashes(out, &r.block_hashes),
        1 => opt_str(out, r.medium.as_deref()),
        2 => opt_int(out, r.group_idx),
        3 => opt_str(out, r.locality.as_deref()),
        _ => opt_str(out, r.ownership.as_deref()),
    }
}

fn hash(out: &mut ByteBuf, h: &EngineHash) {
    match h {
        EngineHash::U64(v) => done(mp::write_uint(out, *v)),
        EngineHash::Digest(d) => done(mp::write_bin(out, d)),
    }
}

fn hashes(out: &mut ByteBuf, hs: &[EngineHash]) {
    done(mp::write_array_len(out, hs.len() as u32));
    for h in hs {
        hash(out, h);
    }
}

fn tokens(out: &mut ByteBuf, ts: &[u32]) {
    done(mp::write_array_len(out, ts.len() as u32));
    for &t in ts {
        done(mp::write_uint(out, u64::from(t)));
    }
}

fn opt_int(out: &mut ByteBuf, v: Option<i64>) {
    match v {
        Some(v) => done(mp::write_sint(out, v)),
        None => infallible(mp::write_nil(out)),
    }
}

fn opt_str(out: &mut ByteBuf, v: Option<&str>) {
    match v {
        Some(v) => done(mp::write_str(out, v)),
        None => infallible(mp::write_nil(out)),
    }
}

fn extra_keys(out: &mut ByteBuf, keys: Option<&[Option<Vec<ExtraKey>>]>) {
    let Some(keys) = keys else {
        return infallible(mp::write_nil(out));
    };
    done(mp::write_array_len(out, keys.len() as u32));
    for block in keys {
        match block {
            Some(items) => extra_tuple(out, items),
            None => infallible(mp::write_nil(out)),
        }
    }
}

fn extra_tuple(out: &mut ByteBuf, items: &[ExtraKey]) {
    done(mp::write_array_len(out, items.len() as u32));
    for item in items {
        match item {
            ExtraKey::Int(v) => done(mp::write_sint(out, *v)),
            ExtraKey::Text(v) => done(mp::write_str(out, v)),
            ExtraKey::Bytes(v) => done(mp::write_bin(out, v)),
            ExtraKey::Tuple(v) => extra_tuple(out, v),
        }
    }
}
