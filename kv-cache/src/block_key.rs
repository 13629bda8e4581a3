//! The index's own block keys: a fast, seeded, model-scoped 64-bit chained
//! hash over token blocks.
//!
//! They are the same whatever hash algorithm the vLLM pods run: the index
//! computes them from prompts, and from the `token_ids` of `BlockStored`
//! events, then maps the engine's hashes onto them.

use std::fmt;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// A block key: the chained hash of a block and all blocks before it, for
/// one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey(pub u64);

impl fmt::Display for BlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Computes block keys for one block size and seed.
#[derive(Debug, Clone, Copy)]
pub struct BlockKeyHasher {
    seed: u64,
    block_size: usize,
}

impl BlockKeyHasher {
    /// A hasher over blocks of `block_size` tokens (at least 1), seeded
    /// with `seed`. Indexes sharing data must use the same values.
    pub fn new(seed: u64, block_size: usize) -> BlockKeyHasher {
        BlockKeyHasher {
            seed,
            block_size: block_size.max(1),
        }
    }

    /// The block size, in tokens.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The parent key of a model's first block.
    pub fn root(&self, model: &str) -> BlockKey {
        BlockKey(xxh3_64_with_seed(model.as_bytes(), self.seed))
    }

    /// The parent key of the first block of a prompt of `model` sent with
    /// vLLM's `cache_salt` `salt`. vLLM makes the salt an extra key of the
    /// first block's hash, which every later block chains from, so salted
    /// blocks are keyed apart from unsalted ones and from other salts'.
    pub fn salted_root(&self, model: &str, salt: &str) -> BlockKey {
        BlockKey(xxh3_64_with_seed(salt.as_bytes(), self.root(model).0))
    }

    /// [`BlockKeyHasher::root`], or [`BlockKeyHasher::salted_root`] with a
    /// salt.
    pub fn root_for(&self, model: &str, salt: Option<&str>) -> BlockKey {
        match salt {
            Some(salt) => self.salted_root(model, salt),
            None => self.root(model),
        }
    }

    /// The key of `block` (exactly one block of tokens) chained on `parent`.
    pub fn chain(&self, parent: BlockKey, block: &[u32]) -> BlockKey {
        chain_with(&mut Vec::with_capacity(block.len() * 4), parent, block)
    }

    /// Appends to `out` the keys of the full blocks of `tokens`, chained on
    /// `parent`.
    pub fn extend_keys(&self, parent: BlockKey, tokens: &[u32], out: &mut Vec<BlockKey>) {
        let mut bytes = Vec::with_capacity(self.block_size * 4);
        let mut parent = parent;
        out.reserve(tokens.len() / self.block_size);
        for block in tokens.chunks_exact(self.block_size) {
            parent = chain_with(&mut bytes, parent, block);
            out.push(parent);
        }
    }

    /// The keys of the full blocks of a prompt of `model`.
    pub fn keys(&self, model: &str, tokens: &[u32]) -> Vec<BlockKey> {
        self.salted_keys(model, None, tokens)
    }

    /// The keys of the full blocks of a prompt of `model` sent with `salt`
    /// as its `cache_salt`, if any.
    pub fn salted_keys(&self, model: &str, salt: Option<&str>, tokens: &[u32]) -> Vec<BlockKey> {
        let mut out = Vec::new();
        self.extend_keys(self.root_for(model, salt), tokens, &mut out);
        out
    }
}

/// Hashes `block`'s little-endian token bytes seeded with `parent`;
/// `scratch` is reused for the bytes.
fn chain_with(scratch: &mut Vec<u8>, parent: BlockKey, block: &[u32]) -> BlockKey {
    scratch.clear();
    for token in block {
        scratch.extend_from_slice(&token.to_le_bytes());
    }
    BlockKey(xxh3_64_with_seed(scratch, parent.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_chain_block_by_block() {
        let h = BlockKeyHasher::new(7, 4);
        let tokens: Vec<u32> = (0..10).collect();
        let keys = h.keys("m", &tokens);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0], h.chain(h.root("m"), &tokens[..4]));
        assert_eq!(keys[1], h.chain(keys[0], &tokens[4..8]));
    }

    #[test]
    fn keys_are_scoped_by_model_seed_and_prefix() {
        let h = BlockKeyHasher::new(7, 4);
        let tokens = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_ne!(h.keys("a", &tokens), h.keys("b", &tokens));
        assert_ne!(
            h.keys("a", &tokens),
            BlockKeyHasher::new(8, 4).keys("a", &tokens)
        );
        let other = [9, 9, 9, 9, 5, 6, 7, 8];
        assert_ne!(h.keys("a", &tokens)[1], h.keys("a", &other)[1]);
    }

    #[test]
    fn a_salt_keys_every_block_apart() {
        let h = BlockKeyHasher::new(7, 4);
        let tokens = [1, 2, 3, 4, 5, 6, 7, 8];
        let plain = h.keys("a", &tokens);
        let salted = h.salted_keys("a", Some("tenant-a"), &tokens);
        assert_eq!(h.salted_keys("a", None, &tokens), plain);
        assert_eq!(salted, h.salted_keys("a", Some("tenant-a"), &tokens));
        assert_ne!(salted, h.salted_keys("a", Some("tenant-b"), &tokens));
        assert_ne!(salted, h.salted_keys("b", Some("tenant-a"), &tokens));
        assert!(salted.iter().zip(&plain).all(|(s, p)| s != p));
        assert_eq!(salted[1], h.chain(salted[0], &tokens[4..]));
    }
}
