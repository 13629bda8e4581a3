//! Decoding of vLLM KV-event payloads (msgpack), both encodings vLLM has
//! shipped: events as positional arrays tagged by their first element
//! (vLLM <= 0.23) and as maps with a `type` key (vLLM >= 0.24); the batch
//! itself as an array or a map; hashes as integers or bytes.

use super::fields;
use super::model::{BlockRemoved, BlockStored, DecodedBatch, EngineHash, KvEvent};
use super::reader::{DecodeError, Reader};
use crate::vllm_hash::ExtraKey;

/// Decodes one payload. Events with an unknown tag, or that do not decode,
/// are skipped and counted in the result; a payload whose batch structure
/// is broken is an error.
pub fn decode_batch(payload: &[u8]) -> Result<DecodedBatch, DecodeError> {
    let mut r = Reader::new(payload);
    let mut out = DecodedBatch::default();
    let mut seen_events = false;
    if r.at_map()? {
        for _ in 0..r.map_len()? {
            match r.str()? {
                "ts" => out.batch.ts = r.f64()?,
                "events" => {
                    read_events(&mut r, &mut out)?;
                    seen_events = true;
                }
                "data_parallel_rank" => {
                    out.batch.data_parallel_rank = opt_i64(&mut r, "data_parallel_rank")?
                }
                _ => r.skip()?,
            }
        }
    } else {
        let len = r.array_len()?;
        for position in 0..len {
            match fields::BATCH.get(position).copied() {
                Some("ts") => out.batch.ts = r.f64()?,
                Some("events") => {
                    read_events(&mut r, &mut out)?;
                    seen_events = true;
                }
                Some(_) => out.batch.data_parallel_rank = opt_i64(&mut r, "data_parallel_rank")?,
                None => r.skip()?,
            }
        }
    }
    if !seen_events {
        return Err(DecodeError::Missing("events"));
    }
    Ok(out)
}

fn read_events(r: &mut Reader<'_>, out: &mut DecodedBatch) -> Result<(), DecodeError> {
    let len = r.array_len()?;
    out.batch.events.reserve(len);
    for _ in 0..len {
        let start = r.position();
        match read_event(r) {
            Ok(Some(event)) => out.batch.events.push(event),
            Ok(None) => out.unknown_events += 1,
            Err(_) => {
                r.rewind(start);
                r.skip()?;
                out.malformed_events += 1;
            }
        }
    }
    Ok(())
}

/// Which event a tag names.
#[derive(Clone, Copy)]
enum Kind {
    Stored,
    Removed,
    Cleared,
}

impl Kind {
    fn of(tag: &str) -> Option<Kind> {
        match tag {
            "BlockStored" => Some(Kind::Stored),
            "BlockRemoved" => Some(Kind::Removed),
            "AllBlocksCleared" => Some(Kind::Cleared),
            _ => None,
        }
    }

    fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::Stored => fields::BLOCK_STORED,
            Kind::Removed => fields::BLOCK_REMOVED,
            Kind::Cleared => &[],
        }
    }
}

/// Fields gathered from either encoding before the event is built.
#[derive(Default)]
struct Gathered {
    stored: BlockStored,
    seen_hashes: bool,
    seen_tokens: bool,
    seen_block_size: bool,
}

/// `Ok(None)`: a well-formed event with an unknown tag.
fn read_event(r: &mut Reader<'_>) -> Result<Option<KvEvent>, DecodeError> {
    let mut g = Gathered::default();
    let kind = if r.at_map()? {
        let mut kind = None;
        let mut unknown = false;
        for _ in 0..r.map_len()? {
            let key = r.str()?;
            if key == fields::TAG_KEY {
                let tag = r.str()?;
                kind = Kind::of(tag);
                unknown = kind.is_none();
            } else {
                read_field(r, key, &mut g)?;
            }
        }
        if unknown {
            return Ok(None);
        }
        kind.ok_or(DecodeError::Missing("type"))?
    } else {
        let len = r.array_len()?;
        if len == 0 {
            return Err(DecodeError::Missing("tag"));
        }
        let Some(kind) = Kind::of(r.str()?) else {
            for _ in 1..len {
                r.skip()?;
            }
            return Ok(None);
        };
        for position in 0..len - 1 {
            match kind.fields().get(position) {
                Some(name) => read_field(r, name, &mut g)?,
                None => r.skip()?,
            }
        }
        kind
    };
    build(kind, g).map(Some)
}

fn build(kind: Kind, g: Gathered) -> Result<KvEvent, DecodeError> {
    let s = g.stored;
    match kind {
        Kind::Stored => {
            if !g.seen_hashes {
                return Err(DecodeError::Missing("block_hashes"));
            }
            if !g.seen_tokens {
                return Err(DecodeError::Missing("token_ids"));
            }
            if !g.seen_block_size {
                return Err(DecodeError::Missing("block_size"));
            }
            Ok(KvEvent::BlockStored(s))
        }
        Kind::Removed => {
            if !g.seen_hashes {
                return Err(DecodeError::Missing("block_hashes"));
            }
            Ok(KvEvent::BlockRemoved(BlockRemoved {
                block_hashes: s.block_hashes,
                medium: s.medium,
                group_idx: s.group_idx,
                locality: s.locality,
                ownership: s.ownership,
            }))
        }
        Kind::Cleared => Ok(KvEvent::AllBlocksCleared),
    }
}

fn read_field(r: &mut Reader<'_>, name: &str, g: &mut Gathered) -> Result<(), DecodeError> {
    let s = &mut g.stored;
    match name {
        "block_hashes" => {
            let len = r.array_len()?;
            s.block_hashes.reserve(len);
            for _ in 0..len {
                s.block_hashes.push(hash(r)?);
            }
            g.seen_hashes = true;
        }
        "parent_block_hash" => s.parent_block_hash = if r.nil()? { None } else { Some(hash(r)?) },
        "token_ids" => {
            s.token_ids = tokens(r)?;
            g.seen_tokens = true;
        }
        "block_size" => {
            s.block_size = r.u32("block_size")?;
            g.seen_block_size = true;
        }
        "lora_id" => s.lora_id = opt_i64(r, "lora_id")?,
        "medium" => s.medium = opt_string(r)?,
        "lora_name" => s.lora_name = opt_string(r)?,
        "extra_keys" => s.extra_keys = extra_keys(r)?,
        "group_idx" => s.group_idx = opt_i64(r, "group_idx")?,
        "kv_cache_spec_kind" => s.kv_cache_spec_kind = opt_string(r)?,
        "kv_cache_spec_sliding_window" => {
            s.kv_cache_spec_sliding_window = opt_i64(r, "kv_cache_spec_sliding_window")?;
        }
        // Newer optional fields: a value of another type than expected is
        // ignored rather than failing the whole event.
        "locality" => s.locality = lenient(r, opt_string)?.flatten(),
        "ownership" => s.ownership = lenient(r, opt_string)?.flatten(),
        "session_id" => s.session_id = lenient(r, opt_string)?.flatten(),
        "lookahead_token_ids" => {
            s.lookahead_token_ids = if r.nil()? { None } else { lenient(r, tokens)? };
        }
        _ => r.skip()?,
    }
    Ok(())
}

/// Reads a value with `read`, or skips it (giving `None`) when it does not
/// have the expected type.
fn lenient<'a, T>(
    r: &mut Reader<'a>,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    let start = r.position();
    match read(r) {
        Ok(value) => Ok(Some(value)),
        Err(_) => {
            r.rewind(start);
            r.skip()?;
            Ok(None)
        }
    }
}

fn hash(r: &mut Reader<'_>) -> Result<EngineHash, DecodeError> {
    if r.at_bin()? {
        let bytes = r.bin()?;
        if bytes.is_empty() {
            return Err(DecodeError::Unexpected("a non-empty hash"));
        }
        Ok(match <[u8; 32]>::try_from(bytes) {
            Ok(digest) => EngineHash::Digest(digest),
            Err(_) => EngineHash::U64(crate::vllm_hash::event_hash(bytes)),
        })
    } else {
        r.u64("a block hash").map(EngineHash::U64)
    }
}

fn tokens(r: &mut Reader<'_>) -> Result<Vec<u32>, DecodeError> {
    let len = r.array_len()?;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        out.push(r.u32("a token id")?);
    }
    Ok(out)
}

fn opt_i64(r: &mut Reader<'_>, what: &'static str) -> Result<Option<i64>, DecodeError> {
    if r.nil()? {
        Ok(None)
    } else {
        r.i64(what).map(Some)
    }
}

fn opt_string(r: &mut Reader<'_>) -> Result<Option<String>, DecodeError> {
    if r.nil()? {
        Ok(None)
    } else {
        r.str().map(|s| Some(s.to_owned()))
    }
}

fn extra_keys(r: &mut Reader<'_>) -> Result<Option<Vec<Option<Vec<ExtraKey>>>>, DecodeError> {
    if r.nil()? {
        return Ok(None);
    }
    let len = r.array_len()?;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        out.push(if r.nil()? {
            None
        } else {
            Some(extra_tuple(r, 0)?)
        });
    }
    Ok(Some(out))
}

fn extra_tuple(r: &mut Reader<'_>, depth: usize) -> Result<Vec<ExtraKey>, DecodeError> {
    Reader::check_depth(depth)?;
    let len = r.array_len()?;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        out.push(if r.at_array()? {
            ExtraKey::Tuple(extra_tuple(r, depth + 1)?)
        } else if r.at_str()? {
            ExtraKey::Text(r.str()?.to_owned())
        } else if r.at_bin()? {
            ExtraKey::Bytes(r.bin()?.to_vec())
        } else {
            ExtraKey::Int(r.i64("an extra key")?)
        });
    }
    Ok(out)
}
