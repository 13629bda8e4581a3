//! Interning of pod ids to dense indexes, readable without a lock.

use super::shard::MAX_POD_INDEX;
use crate::pod::PodId;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The pods known at one point in time.
#[derive(Debug, Default)]
pub(crate) struct PodSnapshot {
    pub(crate) ids: HashMap<PodId, u32>,
    pub(crate) len: usize,
}

/// Pod id -> index, published as immutable snapshots: readers never lock;
/// a new pod (rare) copies the table.
#[derive(Debug, Default)]
pub(crate) struct PodTable {
    snapshot: ArcSwap<PodSnapshot>,
    writer: Mutex<()>,
}

impl PodTable {
    /// The current snapshot.
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<PodSnapshot>> {
        self.snapshot.load()
    }

    /// The index of `pod`, if it has been interned.
    pub(crate) fn get(&self, pod: &PodId) -> Option<u32> {
        self.snapshot.load().ids.get(pod).copied()
    }

    /// The index of `pod`, interning it if new; `None` when the table is
    /// full.
    pub(crate) fn intern(&self, pod: &PodId) -> Option<u32> {
        if let Some(at) = self.get(pod) {
            return Some(at);
        }
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.snapshot.load_full();
        if let Some(&at) = current.ids.get(pod) {
            return Some(at);
        }
        let at = u32::try_from(current.len)
            .ok()
            .filter(|&at| at <= MAX_POD_INDEX)?;
        let mut ids = current.ids.clone();
        ids.insert(pod.clone(), at);
        self.snapshot.store(Arc::new(PodSnapshot {
            ids,
            len: current.len + 1,
        }));
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_stable_dense_indexes() {
        let t = PodTable::default();
        assert_eq!(t.get(&PodId::new("a")), None);
        assert_eq!(t.intern(&PodId::new("a")), Some(0));
        assert_eq!(t.intern(&PodId::new("b")), Some(1));
        assert_eq!(t.intern(&PodId::new("a")), Some(0));
        assert_eq!(t.load().len, 2);
    }
}
