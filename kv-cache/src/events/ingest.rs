//! Applying decoded KV events to the index.
//!
//! The index keys blocks by its own chained keys ([`BlockKeyHasher`]),
//! recomputed from each `BlockStored` event's `token_ids` and chained on the
//! key its `parent_block_hash` maps to, so it works whatever hash algorithm
//! the engines run; removals, which carry engine hashes only, are resolved
//! through the per-pod engine-hash mapping.
//!
//! vLLM hashes a block with its extra keys (LoRA name, multimodal inputs,
//! `cache_salt`, prompt embeddings), which `token_ids` alone do not
//! reproduce. The LoRA name scopes the keys as the model does, and a
//! first block's `cache_salt` seeds them ([`BlockKeyHasher::salted_root`]);
//! blocks with any other extra key are not indexed, since keying them by
//! their tokens would match requests that cannot use them.

use super::model::{BlockRemoved, BlockStored, EventBatch, KvEvent};
use super::stats::IngestCounters;
use crate::block_key::{BlockKey, BlockKeyHasher};
use crate::index::{IndexError, KvBlockIndex, StoredBlock};
use crate::pod::{PodId, Tier};
use crate::vllm_hash::ExtraKey;
use crate::warn_limit::WarnLimit;
use std::sync::Arc;
use std::time::Duration;

/// Where a batch came from: the pod and model of its topic
/// (`kv@<pod>@<model>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSource {
    /// The publishing pod.
    pub pod: PodId,
    /// The model it serves.
    pub model: String,
}

impl EventSource {
    /// Parses a vLLM/llm-d topic `kv@<pod>@<model>`.
    pub fn from_topic(topic: &str) -> Option<EventSource> {
        let mut parts = topic.splitn(3, '@');
        let (Some(_), Some(pod), Some(model)) = (parts.next(), parts.next(), parts.next()) else {
            return None;
        };
        if pod.is_empty() || model.is_empty() {
            return None;
        }
        Some(EventSource {
            pod: PodId::new(pod),
            model: model.to_owned(),
        })
    }

    /// The topic this source publishes on: `kv@<pod>@<model>`.
    pub fn topic(&self) -> String {
        format!("kv@{}@{}", self.pod, self.model)
    }
}

/// Applies event batches to an index.
#[derive(Debug)]
pub struct Ingestor<I> {
    index: Arc<I>,
    keys: BlockKeyHasher,
    counters: Arc<IngestCounters>,
    warn: WarnLimit,
}

impl<I: KvBlockIndex> Ingestor<I> {
    /// An ingestor writing to `index`, keying blocks with `keys`.
    pub fn new(index: Arc<I>, keys: BlockKeyHasher, counters: Arc<IngestCounters>) -> Ingestor<I> {
        Ingestor {
            index,
            keys,
            counters,
            warn: WarnLimit::new(Duration::from_secs(10)),
        }
    }

    /// The counters this ingestor updates.
    pub fn counters(&self) -> &Arc<IngestCounters> {
        &self.counters
    }

    /// Applies `batch`, published by `source`, in order.
    pub async fn apply(&self, source: &EventSource, batch: &EventBatch) {
        for event in &batch.events {
            let applied = match event {
                KvEvent::BlockStored(stored) => self.store(source, stored).await,
                KvEvent::BlockRemoved(removed) => self.remove(source, removed).await,
                KvEvent::AllBlocksCleared => self.clear(&source.pod).await,
            };
            match applied {
                Ok(()) => IngestCounters::add(&self.counters.events, 1),
                Err(error) => self.index_failed(&error),
            }
        }
        IngestCounters::add(&self.counters.batches, 1);
    }

    /// Drops everything known about `pod` (e.g. its engine restarted).
    pub async fn clear(&self, pod: &PodId) -> Result<(), IndexError> {
        self.index.clear_pod(pod).await?;
        IngestCounters::add(&self.counters.pods_cleared, 1);
        Ok(())
    }

    async fn store(&self, source: &EventSource, stored: &BlockStored) -> Result<(), IndexError> {
        let count = stored.block_hashes.len();
        let Some(parent) = self.parent_key(source, stored).await? else {
            IngestCounters::add(&self.counters.blocks_skipped, count as u64);
            return Ok(());
        };
        let mut keys = Vec::with_capacity(count);
        self.keys.extend_keys(parent, &stored.token_ids, &mut keys);
        let blocks: Vec<StoredBlock> = stored
            .block_hashes
            .iter()
            .zip(keys)
            .map(|(hash, key)| StoredBlock {
                engine_hash: hash.as_u64(),
                key,
            })
            .collect();
        self.index
            .add(
                &source.pod,
                Tier::from_medium(stored.medium.as_deref()),
                &blocks,
            )
            .await?;
        IngestCounters::add(&self.counters.blocks_stored, count as u64);
        Ok(())
    }

    /// The key to chain the event's first block on, or `None` when the
    /// event cannot be indexed.
    async fn parent_key(
        &self,
        source: &EventSource,
        stored: &BlockStored,
    ) -> Result<Option<BlockKey>, IndexError> {
        let usable = is_primary_group(stored.group_idx)
            && stored.block_size as usize == self.keys.block_size()
            && stored.token_ids.len() == stored.block_hashes.len() * self.keys.block_size();
        let Some(salt) = usable.then(|| first_block_salt(stored)).flatten() else {
            return Ok(None);
        };
        match &stored.parent_block_hash {
            None => Ok(Some(self.keys.root_for(
                stored.lora_name.as_deref().unwrap_or(&source.model),
                salt,
            ))),
            Some(parent) => self.index.block_key(&source.pod, parent.as_u64()).await,
        }
    }

    async fn remove(&self, source: &EventSource, removed: &BlockRemoved) -> Result<(), IndexError> {
        if !is_primary_group(removed.group_idx) {
            return Ok(());
        }
        let hashes: Vec<u64> = removed.block_hashes.iter().map(|h| h.as_u64()).collect();
        let count = self
            .index
            .evict(
                &source.pod,
                Tier::from_medium(removed.medium.as_deref()),
                &hashes,
            )
            .await?;
        IngestCounters::add(&self.counters.blocks_removed, count as u64);
        Ok(())
    }

    fn index_failed(&self, error: &IndexError) {
        IngestCounters::add(&self.counters.index_errors, 1);
        if let Some(suppressed) = self.warn.allow() {
            tracing::warn!(%error, suppressed, "KV event not applied to the index");
        }
    }
}

/// The `cache_salt` of the event's blocks (`Some(None)` when unsalted), or
/// `None` when a block has an extra key the index's keys cannot stand for.
/// A block's extra keys are vLLM's `lora + multimodal + salt + prompt
/// embeddings`: the LoRA name (also the event's `lora_name`) is dropped,
/// and a salt can only be the only key left, on the prompt's first block.
fn first_block_salt(stored: &BlockStored) -> Option<Option<&str>> {
    let Some(per_block) = &stored.extra_keys else {
        return Some(None);
    };
    let mut salt = None;
    for (position, keys) in per_block.iter().enumerate() {
        let Some(keys) = keys else { continue };
        let keys = match (keys.split_first(), &stored.lora_name) {
            (Some((ExtraKey::Text(first), rest)), Some(lora)) if first == lora => rest,
            _ => keys.as_slice(),
        };
        match keys {
            [] => {}
            [ExtraKey::Text(text)] if position == 0 && stored.parent_block_hash.is_none() => {
                salt = Some(text.as_str());
            }
            _ => return None,
        }
    }
    Some(salt)
}

/// Only the first KV-cache group is indexed: in hybrid models the other
/// groups repeat the same tokens under their own block lifetimes.
fn is_primary_group(group: Option<i64>) -> bool {
    matches!(group, None | Some(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_pod_and_model() {
        let s = EventSource::from_topic("kv@10.0.0.1:8000@meta-llama/Llama-3@v2").unwrap();
        assert_eq!(s.pod.as_str(), "10.0.0.1:8000");
        assert_eq!(s.model, "meta-llama/Llama-3@v2");
        assert_eq!(EventSource::from_topic("kv@pod"), None);
        assert_eq!(EventSource::from_topic("kv@@m"), None);
        assert_eq!(EventSource::from_topic(&s.topic()), Some(s));
    }
}
