//! Ingestion counters: event ingestion is a hot path and is not traced per
//! event; these counters say what happened instead.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// Live ingestion counters, shared by the subscriber and the ingestor.
        #[derive(Debug, Default)]
        pub struct IngestCounters {
            $($(#[doc = $doc])* pub(crate) $name: AtomicU64,)*
        }

        /// A snapshot of [`IngestCounters`].
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct IngestStats {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl IngestCounters {
            /// The current values.
            pub fn snapshot(&self) -> IngestStats {
                IngestStats { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Batches applied to the index.
    batches,
    /// Events applied (stored, removed, cleared).
    events,
    /// Blocks added to the index.
    blocks_stored,
    /// Index entries removed by `BlockRemoved`.
    blocks_removed,
    /// `AllBlocksCleared` events and publisher restarts that cleared a pod.
    pods_cleared,
    /// Stored blocks that could not be indexed (block size or token count
    /// mismatch, unknown parent, other KV-cache group).
    blocks_skipped,
    /// Events with an unknown type, skipped.
    unknown_events,
    /// Events that did not decode, skipped.
    malformed_events,
    /// Payloads that did not decode, skipped.
    decode_errors,
    /// Messages without the [topic, sequence, payload] shape, skipped.
    malformed_frames,
    /// Sequence gaps seen.
    gaps,
    /// Batches missing in those gaps.
    missed_batches,
    /// Missing batches recovered through a replay socket.
    replayed_batches,
    /// Publishers seen restarting their sequence.
    publisher_restarts,
    /// Index writes that failed (e.g. Redis unreachable).
    index_errors,
}

impl IngestCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
