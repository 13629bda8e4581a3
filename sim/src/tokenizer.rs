//! The simulator's built-in tokenizer, used by `/tokenize`, the prefix cache
//! and usage counts alike.
//!
//! A token is a maximal run of non-whitespace characters. Its id is the
//! 64-bit FNV-1a hash of the token's UTF-8 bytes, reduced into
//! `[FIRST_WORD_ID, VOCAB_SIZE)`; ids below `FIRST_WORD_ID` are reserved.
//! The same text always gives the same ids, in any process, so two
//! simulators (and a KV-cache indexer tokenizing the same way) agree on
//! block hashes.

/// Size of the id space.
pub const VOCAB_SIZE: u32 = 50_000;
/// The smallest id a word can get; lower ids are reserved.
pub const FIRST_WORD_ID: u32 = 16;

/// Token ids of `text`.
pub fn encode(text: &str) -> Vec<u32> {
    text.split_whitespace().map(word_id).collect()
}

/// The token strings of `text`, in the order of [`encode`].
pub fn token_strs(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// The id of one whitespace-free word.
pub fn word_id(word: &str) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = word
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    let span = u64::from(VOCAB_SIZE - FIRST_WORD_ID);
    // The remainder is below `span`, which fits in u32.
    FIRST_WORD_ID + u32::try_from(hash % span).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_map_to_stable_ids_in_range() {
        let ids = encode("hello  world\nhello");
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0], ids[2]);
        assert_ne!(ids[0], ids[1]);
        assert!(
            ids.iter()
                .all(|&id| (FIRST_WORD_ID..VOCAB_SIZE).contains(&id))
        );
        assert_eq!(token_strs("a b"), ["a", "b"]);
        assert!(encode(" \t ").is_empty());
    }
}
