//! One shard of the in-memory index: block keys with their (pod, tier)
//! entries, bounded by a capacity with least-recently-used eviction.
//!
//! Slots live in a vector and form an intrusive doubly-linked recency list,
//! so a hit, an insert and an eviction are O(1) without allocation.

use super::MAX_PODS_PER_KEY;
use crate::pod::Tier;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const NIL: u32 = u32::MAX;
const TIER_BITS: u32 = 2;

/// Multiplies by the 64-bit golden ratio: spreads keys that are already
/// hashes (or small test integers) over all bits.
pub(crate) fn mix(key: u64) -> u64 {
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A hasher for keys that are already hashes.
#[derive(Default)]
pub(crate) struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = mix(value);
    }
}

/// Builds [`MixHasher`]s.
pub(crate) type MixBuild = BuildHasherDefault<MixHasher>;

/// A (pod, tier) entry packed in 32 bits: pod index, then 2 tier bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry(u32);

impl Entry {
    pub(crate) fn new(pod: u32, tier: Tier) -> Entry {
        Entry(pod << TIER_BITS | tier.index())
    }

    pub(crate) fn pod(self) -> u32 {
        self.0 >> TIER_BITS
    }

    pub(crate) fn tier(self) -> Tier {
        Tier::from_index(self.0 & ((1 << TIER_BITS) - 1))
    }
}

/// The largest pod index an [`Entry`] can hold.
pub(crate) const MAX_POD_INDEX: u32 = u32::MAX >> TIER_BITS;

/// The entries of one key, oldest first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entries {
    len: u8,
    items: [Entry; MAX_PODS_PER_KEY],
}

impl Entries {
    const EMPTY: Entries = Entries {
        len: 0,
        items: [Entry(0); MAX_PODS_PER_KEY],
    };

    pub(crate) fn as_slice(&self) -> &[Entry] {
        &self.items[..usize::from(self.len)]
    }

    /// Adds or refreshes `entry`, dropping the oldest one beyond `max`.
    fn upsert(&mut self, entry: Entry, max: usize) {
        let len = usize::from(self.len);
        let keep = match self.as_slice().iter().position(|&e| e == entry) {
            Some(at) => {
                self.items.copy_within(at + 1..len, at);
                len - 1
            }
            None if len >= max => {
                self.items.copy_within(1..len, 0);
                len - 1
            }
            None => len,
        };
        self.items[keep] = entry;
        self.len = (keep + 1) as u8;
    }

    /// Removes the entries matching `remove`; returns how many.
    fn remove_where(&mut self, remove: impl Fn(Entry) -> bool) -> usize {
        let before = usize::from(self.len);
        let mut kept = 0;
        for i in 0..before {
            let e = self.items[i];
            if !remove(e) {
                self.items[kept] = e;
                kept += 1;
            }
        }
        self.len = kept as u8;
        before - kept
    }

    pub(crate) fn holds_pod(&self, pod: u32) -> bool {
        self.as_slice().iter().any(|e| e.pod() == pod)
    }
}

#[derive(Debug)]
struct Slot {
    key: u64,
    prev: u32,
    next: u32,
    entries: Entries,
}

/// One shard: at most `capacity` keys.
#[derive(Debug)]
pub(crate) struct Shard {
    map: HashMap<u64, u32, MixBuild>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    capacity: usize,
}

impl Shard {
    pub(crate) fn new(capacity: usize) -> Shard {
        Shard {
            map: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Approximate heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.map.capacity() * (std::mem::size_of::<(u64, u32)>() + 1)
            + self.free.capacity() * 4
    }

    /// The entries of `key`, marking it most recently used.
    pub(crate) fn get(&mut self, key: u64) -> Option<&Entries> {
        let at = *self.map.get(&key)?;
        self.touch(at);
        Some(&self.slots[at as usize].entries)
    }

    /// Adds `entry` to `key`, inserting the key (and evicting the least
    /// recently used one when full) if needed.
    pub(crate) fn add(&mut self, key: u64, entry: Entry, max_entries: usize) {
        let at = match self.map.get(&key) {
            Some(&at) => {
                self.touch(at);
                at
            }
            None => self.insert(key),
        };
        self.slots[at as usize].entries.upsert(entry, max_entries);
    }

    /// Removes the entries of `key` matching `remove`; drops the key when
    /// none remain. Returns how many entries were removed and whether any
    /// entry of `pod` remains.
    pub(crate) fn remove(
        &mut self,
        key: u64,
        pod: u32,
        remove: impl Fn(Entry) -> bool,
    ) -> (usize, bool) {
        let Some(&at) = self.map.get(&key) else {
            return (0, false);
        };
        let entries = &mut self.slots[at as usize].entries;
        let removed = entries.remove_where(remove);
        let pod_left = entries.holds_pod(pod);
        if entries.len == 0 {
            self.unlink(at);
            self.map.remove(&key);
            self.free.push(at);
        }
        (removed, pod_left)
    }

    fn insert(&mut self, key: u64) -> u32 {
        if self.map.len() >= self.capacity && self.tail != NIL {
            let lru = self.tail;
            self.unlink(lru);
            self.map.remove(&self.slots[lru as usize].key);
            self.free.push(lru);
        }
        let slot = Slot {
            key,
            prev: NIL,
            next: NIL,
            entries: Entries::EMPTY,
        };
        let at = match self.free.pop() {
            Some(at) => {
                self.slots[at as usize] = slot;
                at
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.link_front(at);
        self.map.insert(key, at);
        at
    }

    fn touch(&mut self, at: u32) {
        if self.head != at {
            self.unlink(at);
            self.link_front(at);
        }
    }

    fn unlink(&mut self, at: u32) {
        let (prev, next) = {
            let s = &self.slots[at as usize];
            (s.prev, s.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    fn link_front(&mut self, at: u32) {
        let old = self.head;
        {
            let s = &mut self.slots[at as usize];
            s.prev = NIL;
            s.next = old;
        }
        match old {
            NIL => self.tail = at,
            o => self.slots[o as usize].prev = at,
        }
        self.head = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(shard: &mut Shard, key: u64) -> Vec<(u32, Tier)> {
        shard
            .get(key)
            .map(|e| e.as_slice().iter().map(|e| (e.pod(), e.tier())).collect())
            .unwrap_or_default()
    }

    #[test]
    fn least_recently_used_key_is_evicted() {
        let mut s = Shard::new(2);
        s.add(1, Entry::new(0, Tier::Gpu), 8);
        s.add(2, Entry::new(0, Tier::Gpu), 8);
        assert_eq!(pods(&mut s, 1).len(), 1); // 1 is now most recent
        s.add(3, Entry::new(0, Tier::Gpu), 8);
        assert_eq!(s.len(), 2);
        assert!(pods(&mut s, 2).is_empty());
        assert_eq!(pods(&mut s, 1), vec![(0, Tier::Gpu)]);
        assert_eq!(pods(&mut s, 3), vec![(0, Tier::Gpu)]);
    }

    #[test]
    fn entries_are_bounded_and_refreshed() {
        let mut s = Shard::new(4);
        for pod in 0..3 {
            s.add(9, Entry::new(pod, Tier::Gpu), 2);
        }
        assert_eq!(pods(&mut s, 9), vec![(1, Tier::Gpu), (2, Tier::Gpu)]);
        s.add(9, Entry::new(1, Tier::Gpu), 2);
        s.add(9, Entry::new(5, Tier::Cpu), 2);
        assert_eq!(pods(&mut s, 9), vec![(1, Tier::Gpu), (5, Tier::Cpu)]);
    }

    #[test]
    fn removing_the_last_entry_drops_the_key_and_reuses_its_slot() {
        let mut s = Shard::new(4);
        s.add(1, Entry::new(3, Tier::Gpu), 8);
        s.add(1, Entry::new(3, Tier::Cpu), 8);
        assert_eq!(s.remove(1, 3, |e| e == Entry::new(3, Tier::Gpu)), (1, true));
        assert_eq!(s.remove(1, 3, |e| e.pod() == 3), (1, false));
        assert_eq!(s.len(), 0);
        s.add(2, Entry::new(1, Tier::Gpu), 8);
        assert_eq!(s.slots.len(), 1);
        assert_eq!(s.remove(77, 1, |_| true), (0, false));
    }

    #[test]
    fn entry_packs_pod_and_tier() {
        let e = Entry::new(MAX_POD_INDEX, Tier::Other);
        assert_eq!((e.pod(), e.tier()), (MAX_POD_INDEX, Tier::Other));
    }
}
