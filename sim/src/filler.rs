//! Deterministic generated text: the same seed gives the same words at the
//! same positions, each word one token of the built-in tokenizer.

const WORDS: &[&str] = &[
    "the",
    "model",
    "simulates",
    "a",
    "reply",
    "of",
    "plain",
    "filler",
    "words",
    "for",
    "testing",
    "routing",
    "caches",
    "and",
    "traces",
    "with",
    "stable",
    "output",
    "every",
    "time",
];

/// The generated words of one request.
#[derive(Debug, Clone, Copy)]
pub struct Filler {
    seed: u64,
}

impl Filler {
    /// Filler text derived from `seed`.
    pub fn new(seed: u64) -> Filler {
        Filler { seed }
    }

    /// The text of generated token `index` as it appears in the output:
    /// the word, preceded by a space after the first token.
    pub fn piece(&self, index: usize) -> String {
        let word = self.word(index);
        if index == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        }
    }

    /// The whole text of the first `count` generated tokens.
    pub fn text(&self, count: usize) -> String {
        (0..count).map(|i| self.piece(i)).collect()
    }

    fn word(&self, index: usize) -> &'static str {
        let mixed = splitmix64(self.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let len = WORDS.len() as u64;
        WORDS[usize::try_from(mixed % len).unwrap_or(0)]
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer;

    #[test]
    fn filler_is_deterministic_and_one_token_per_piece() {
        let a = Filler::new(7).text(12);
        assert_eq!(a, Filler::new(7).text(12));
        assert_ne!(a, Filler::new(8).text(12));
        assert_eq!(tokenizer::encode(&a).len(), 12);
    }
}
