//! vLLM's `sha256_cbor` prefix-cache block hashes, bit-exact.
//!
//! Block `i` of a token sequence hashes to
//! `sha256(cbor([parent, [token ids], extra_keys or null]))`, the parent of
//! block 0 being `NONE_HASH = sha256(cbor(seed))`. Only full blocks are
//! hashed. The 64-bit form vLLM puts in KV events is the digest's last
//! 8 bytes, big-endian ([`event_hash`]).

use crate::cbor;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The seed vLLM uses for `NONE_HASH` when `PYTHONHASHSEED` is not set.
pub const DEFAULT_NONE_HASH_SEED: &str = "vllm-none-hash";

/// vLLM's default block size, in tokens.
pub const DEFAULT_BLOCK_SIZE: usize = 16;

/// A vLLM block hash: a SHA-256 digest.
pub type BlockDigest = [u8; 32];

/// One element of a block's `extra_keys` tuple (multimodal hashes, LoRA
/// name, cache salt, prompt-embedding hashes, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraKey {
    /// A Python `int`.
    Int(i64),
    /// A Python `str`.
    Text(String),
    /// A Python `bytes`.
    Bytes(Vec<u8>),
    /// A nested Python `tuple`.
    Tuple(Vec<ExtraKey>),
}

impl ExtraKey {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ExtraKey::Int(v) => cbor::signed(out, *v),
            ExtraKey::Text(v) => cbor::text(out, v),
            ExtraKey::Bytes(v) => cbor::bytes(out, v),
            ExtraKey::Tuple(items) => encode_tuple(out, items),
        }
    }
}

fn encode_tuple(out: &mut Vec<u8>, items: &[ExtraKey]) {
    cbor::array(out, items.len());
    for item in items {
        item.encode(out);
    }
}

/// A block size of zero was given.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("block size must be at least one token")]
pub struct ZeroBlockSize;

/// Computes vLLM `sha256_cbor` block hashes for one seed and block size.
#[derive(Debug, Clone)]
pub struct VllmBlockHasher {
    none_hash: BlockDigest,
    block_size: usize,
}

impl VllmBlockHasher {
    /// A hasher whose `NONE_HASH` is derived from `seed`.
    pub fn new(seed: &str, block_size: usize) -> Result<VllmBlockHasher, ZeroBlockSize> {
        if block_size == 0 {
            return Err(ZeroBlockSize);
        }
        let mut encoded = Vec::with_capacity(seed.len() + 9);
        cbor::text(&mut encoded, seed);
        Ok(VllmBlockHasher {
            none_hash: Sha256::digest(&encoded).into(),
            block_size,
        })
    }

    /// A hasher seeded like vLLM: `PYTHONHASHSEED` as found by `env`, else
    /// [`DEFAULT_NONE_HASH_SEED`]. `env` is a lookup such as
    /// `|k| std::env::var(k).ok()`.
    pub fn from_env(
        env: impl Fn(&str) -> Option<String>,
        block_size: usize,
    ) -> Result<VllmBlockHasher, ZeroBlockSize> {
        let seed = env("PYTHONHASHSEED");
        VllmBlockHasher::new(
            seed.as_deref().unwrap_or(DEFAULT_NONE_HASH_SEED),
            block_size,
        )
    }

    /// The parent hash of the first block.
    pub fn none_hash(&self) -> &BlockDigest {
        &self.none_hash
    }

    /// The block size, in tokens.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The hashes of the full blocks of `tokens`, without extra keys.
    pub fn block_hashes(&self, tokens: &[u32]) -> Vec<BlockDigest> {
        self.block_hashes_with_extra_keys(tokens, &[])
    }

    /// The hashes of the full blocks of `tokens`; `extra_keys[i]` are the
    /// extra keys of block `i` (missing entries mean none).
    pub fn block_hashes_with_extra_keys(
        &self,
        tokens: &[u32],
        extra_keys: &[Option<Vec<ExtraKey>>],
    ) -> Vec<BlockDigest> {
        let mut parent = self.none_hash;
        let mut scratch = Vec::with_capacity(48 + 5 * self.block_size);
        tokens
            .chunks_exact(self.block_size)
            .enumerate()
            .map(|(i, block)| {
                let extra = extra_keys.get(i).and_then(Option::as_deref);
                parent = hash_block(&mut scratch, &parent, block, extra);
                parent
            })
            .collect()
    }
}

/// Hashes one block on `parent`; `scratch` is reused for the encoding.
fn hash_block(
    scratch: &mut Vec<u8>,
    parent: &BlockDigest,
    tokens: &[u32],
    extra_keys: Option<&[ExtraKey]>,
) -> BlockDigest {
    scratch.clear();
    cbor::array(scratch, 3);
    cbor::bytes(scratch, parent);
    cbor::array(scratch, tokens.len());
    for &token in tokens {
        cbor::unsigned(scratch, u64::from(token));
    }
    match extra_keys {
        Some(items) => encode_tuple(scratch, items),
        None => cbor::null(scratch),
    }
    Sha256::digest(scratch.as_slice()).into()
}

/// The 64-bit form of a digest used in KV events: its last 8 bytes,
/// big-endian.
pub fn event_hash(digest: &[u8]) -> u64 {
    let mut last = [0u8; 8];
    let tail = &digest[digest.len().saturating_sub(8)..];
    last[8 - tail.len()..].copy_from_slice(tail);
    u64::from_be_bytes(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn none_hash_of_the_default_seed() {
        let h = VllmBlockHasher::from_env(|_| None, 16).unwrap();
        assert_eq!(
            hex(h.none_hash()),
            "9bd96a485ad84efdafb72ee48a1d7a69bcead0f8f0433173941b276b9581eef0"
        );
    }

    #[test]
    fn first_block_of_tokens_one_to_sixteen() {
        let h = VllmBlockHasher::new(DEFAULT_NONE_HASH_SEED, 16).unwrap();
        let tokens: Vec<u32> = (1..=16).collect();
        let hashes = h.block_hashes(&tokens);
        assert_eq!(
            hex(&hashes[0]),
            "cd7c51bc5a8fc8643f383a2b9e01522fba7473c669e9270c7b0bf7bf7fd01682"
        );
        assert_eq!(event_hash(&hashes[0]), 8866452693264111234);
    }

    #[test]
    fn only_full_blocks_are_hashed() {
        let h = VllmBlockHasher::new("0", 4).unwrap();
        assert_eq!(h.block_hashes(&[1, 2, 3]).len(), 0);
        assert_eq!(h.block_hashes(&[1, 2, 3, 4, 5, 6, 7]).len(), 1);
    }

    #[test]
    fn seed_comes_from_pythonhashseed_when_set() {
        let seeded =
            VllmBlockHasher::from_env(|k| (k == "PYTHONHASHSEED").then(|| "0".into()), 16).unwrap();
        let explicit = VllmBlockHasher::new("0", 16).unwrap();
        assert_eq!(seeded.none_hash(), explicit.none_hash());
        assert_ne!(
            seeded.none_hash(),
            VllmBlockHasher::new(DEFAULT_NONE_HASH_SEED, 16)
                .unwrap()
                .none_hash()
        );
    }

    #[test]
    fn zero_block_size_is_rejected() {
        assert_eq!(VllmBlockHasher::new("x", 0).unwrap_err(), ZeroBlockSize);
    }

    #[test]
    fn short_digests_are_left_padded() {
        assert_eq!(event_hash(&[1, 2]), 0x0102);
    }
}
