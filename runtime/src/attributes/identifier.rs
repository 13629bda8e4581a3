//! [`Identifier`]: a runtime string that is an id or a name, never content.

use crate::recent::Recent;
use opentelemetry::StringValue;
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Longest identifier recorded as is, in bytes.
pub const MAX_IDENTIFIER_LEN: usize = 256;

/// What is recorded in place of a value that is not a valid identifier.
pub const REJECTED_PLACEHOLDER: &str = "<invalid-identifier>";

static REJECTIONS: AtomicU64 = AtomicU64::new(0);

/// How many recurring identifiers each thread keeps.
const RECENT_LEN: usize = 8;

thread_local! {
    /// The valid identifiers most recently made by [`Identifier::recurring`]
    /// on this thread, newest first.
    static RECENT: RefCell<Recent<Identifier, RECENT_LEN>> = const {
        RefCell::new(Recent::new())
    };
}

/// A runtime string that names or identifies something: a model name, a pod
/// address, a request id, a route.
///
/// It is the only runtime string type that span attributes accept. It is
/// validated when built: at most [`MAX_IDENTIFIER_LEN`] bytes, no
/// whitespace and no control characters, which rules out sentences and
/// prompts. A value that fails is replaced by [`REJECTED_PLACEHOLDER`] and
/// counted (see [`Identifier::rejections`]), so content never reaches a span
/// even when a caller passes the wrong string.
///
/// Cloning is cheap (a reference count), and recording it does not copy.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Identifier(Inner);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Inner {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Identifier {
    /// Validates `value` and keeps it, or keeps the placeholder if it is not
    /// an identifier.
    pub fn new(value: &str) -> Identifier {
        if is_identifier(value) {
            Identifier(Inner::Shared(Arc::from(value)))
        } else {
            REJECTIONS.fetch_add(1, Ordering::Relaxed);
            Identifier(Inner::Static(REJECTED_PLACEHOLDER))
        }
    }

    /// Like [`Identifier::new`], for values that recur from request to
    /// request (routes, host names, model names): the last few valid
    /// values seen on this thread are kept, so a repeat costs a comparison
    /// and a reference-count increment instead of a validation and an
    /// allocation. (During thread teardown it is [`Identifier::new`].)
    pub fn recurring(value: &str) -> Identifier {
        RECENT
            .try_with(|recent| {
                recent.borrow_mut().find_or_make(
                    |seen| seen.as_str() == value,
                    || Some(Identifier::new(value)),
                    Identifier::is_valid,
                )
            })
            .ok()
            .flatten()
            .unwrap_or_else(|| Identifier::new(value))
    }

    /// An identifier from a static string, validated the same way.
    pub fn from_static(value: &'static str) -> Identifier {
        if is_identifier(value) {
            Identifier(Inner::Static(value))
        } else {
            REJECTIONS.fetch_add(1, Ordering::Relaxed);
            Identifier(Inner::Static(REJECTED_PLACEHOLDER))
        }
    }

    /// The validated value, or the placeholder.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Inner::Static(s) => s,
            Inner::Shared(s) => s,
        }
    }

    /// Whether the value passed validation.
    pub fn is_valid(&self) -> bool {
        !matches!(self.0, Inner::Static(REJECTED_PLACEHOLDER))
    }

    /// How many values have been rejected in this process.
    pub fn rejections() -> u64 {
        REJECTIONS.load(Ordering::Relaxed)
    }

    pub(crate) fn into_string_value(self) -> StringValue {
        match self.0 {
            Inner::Static(s) => StringValue::from(s),
            Inner::Shared(s) => StringValue::from(s),
        }
    }
}

/// Whether `value` is acceptable as an identifier: 1 to
/// [`MAX_IDENTIFIER_LEN`] bytes, no whitespace, no control characters.
pub fn is_identifier(value: &str) -> bool {
    if value.is_empty() || value.len() > MAX_IDENTIFIER_LEN {
        return false;
    }
    // Ids are almost always printable ASCII: scan bytes, and decode
    // characters only from the first byte that is not.
    match value.bytes().position(|b| !b.is_ascii_graphic()) {
        None => true,
        // Space, a control character or DEL.
        Some(at) if value.as_bytes()[at].is_ascii() => false,
        // The first byte of a multi-byte character, so a char boundary.
        Some(at) => !value[at..]
            .chars()
            .any(|c| c.is_whitespace() || c.is_control()),
    }
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Identifier {
    fn from(value: &str) -> Self {
        Identifier::new(value)
    }
}

impl AsRef<str> for Identifier {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ids_and_names() {
        for ok in [
            "meta-llama/Llama-3.1-8B",
            "10.0.0.7:8000",
            "req-0f3a",
            "/v1/chat/completions",
        ] {
            let id = Identifier::new(ok);
            assert!(id.is_valid(), "{ok}");
            assert_eq!(id.as_str(), ok);
        }
    }

    #[test]
    fn replaces_and_counts_text_that_is_not_an_id() {
        let long = "x".repeat(MAX_IDENTIFIER_LEN + 1);
        for bad in [
            "",
            "tell me a secret",
            "a\tb",
            "line\nbreak",
            "nul\0",
            long.as_str(),
        ] {
            let before = Identifier::rejections();
            let id = Identifier::new(bad);
            assert!(!id.is_valid());
            assert_eq!(id.as_str(), REJECTED_PLACEHOLDER);
            assert!(Identifier::rejections() > before);
        }
    }

    #[test]
    fn judges_non_ascii_characters_like_ascii_ones() {
        for ok in ["modèle-ü", "日本語モデル", "a\u{00e9}b:1"] {
            assert!(is_identifier(ok), "{ok}");
        }
        for bad in [
            "a\u{7f}b",
            "mod\u{00e8}le\u{00a0}x",
            "\u{3000}wide",
            "x\u{2028}y",
            "\u{85}next",
            "é\u{9f}",
        ] {
            assert!(!is_identifier(bad), "{bad:?}");
        }
    }

    #[test]
    fn recurring_values_share_one_identifier() {
        let first = Identifier::recurring("/v1/recurring-test");
        let again = Identifier::recurring("/v1/recurring-test");
        assert_eq!(again, first);
        assert!(same_allocation(&first, &again));
    }

    fn same_allocation(a: &Identifier, b: &Identifier) -> bool {
        matches!((&a.0, &b.0), (Inner::Shared(a), Inner::Shared(b)) if Arc::ptr_eq(a, b))
    }

    #[test]
    fn recurring_values_are_validated_and_evicted_oldest_first() {
        let before = Identifier::rejections();
        assert!(!Identifier::recurring("a prompt, not an id").is_valid());
        assert!(!Identifier::recurring("a prompt, not an id").is_valid());
        assert!(Identifier::rejections() >= before + 2);

        let oldest = Identifier::recurring("evict-me");
        for i in 0..RECENT_LEN {
            let _ = Identifier::recurring(&format!("filler-{i}"));
        }
        let after_eviction = Identifier::recurring("evict-me");
        assert_eq!(after_eviction, oldest);
        assert!(!same_allocation(&oldest, &after_eviction));
    }

    #[test]
    fn longest_valid_identifier_is_kept() {
        let edge = "y".repeat(MAX_IDENTIFIER_LEN);
        assert_eq!(Identifier::new(&edge).as_str(), edge);
    }
}
