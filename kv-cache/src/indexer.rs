//! [`KvCacheIndexer`]: what the scheduler uses: prefix-cache scores of
//! candidate pods for a prompt, fed by vLLM KV events.

use crate::block_key::{BlockKey, BlockKeyHasher};
use crate::events::{
    EventSubscriber, IngestCounters, IngestStats, Ingestor, SubscriberConfig, SubscriberError,
};
use crate::index::{
    BlockHit, Index, IndexConfig, IndexConfigError, IndexError, KvBlockIndex, MAX_CANDIDATES,
};
use crate::pod::PodId;
use crate::scorer::{LongestPrefixScorer, TierWeights};
use crate::vllm_hash::DEFAULT_BLOCK_SIZE;
use crate::warn_limit::WarnLimit;
use llmd_runtime::{ErrorType, Identifier, record, traced_span};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use thiserror::Error;

/// Settings of the KV-cache indexer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KvCacheConfig {
    /// Tokens per block; must match the engines' block size.
    pub block_size: usize,
    /// Seed of the index's block keys; replicas sharing a Redis index must
    /// agree on it.
    pub hash_seed: u64,
    /// The index backend.
    pub index: IndexConfig,
    /// Weight of a hit per device tier.
    pub tier_weights: TierWeights,
}

impl Default for KvCacheConfig {
    fn default() -> KvCacheConfig {
        KvCacheConfig {
            block_size: DEFAULT_BLOCK_SIZE,
            hash_seed: 0,
            index: IndexConfig::default(),
            tier_weights: TierWeights::default(),
        }
    }
}

/// Why an indexer could not be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `block_size` is zero.
    #[error("block_size must be at least 1")]
    ZeroBlockSize,
    /// The index settings are invalid.
    #[error(transparent)]
    Index(#[from] IndexConfigError),
}

/// Why scores could not be computed.
#[derive(Debug, Error, ErrorType, PartialEq, Eq)]
pub enum ScoreError {
    /// More candidate pods than a lookup supports.
    #[error("{0} candidate pods given, at most {MAX_CANDIDATES} are supported")]
    TooManyCandidates(usize),
}

/// The score of one candidate pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodScore {
    /// The pod.
    pub pod: PodId,
    /// Its tier-weighted prefix score, in [0, 1].
    pub score: f64,
    /// How many of the prompt's leading blocks it holds.
    pub blocks: usize,
}

/// Prefix-cache scores of the candidates of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// One score per candidate, in the order given.
    pub pods: Vec<PodScore>,
    /// The prompt's number of full blocks.
    pub block_count: usize,
    /// The longest run of leading blocks held by any candidate.
    pub blocks_found: usize,
    /// `false` when the index could not be asked (scores are then all 0).
    pub index_available: bool,
}

impl Scores {
    /// The score of `pod`, if it was a candidate.
    pub fn score_of(&self, pod: &PodId) -> Option<f64> {
        self.pods.iter().find(|p| &p.pod == pod).map(|p| p.score)
    }

    /// The highest score (0 without candidates).
    pub fn max(&self) -> f64 {
        self.pods.iter().map(|p| p.score).fold(0.0, f64::max)
    }

    /// The mean score (0 without candidates).
    pub fn mean(&self) -> f64 {
        if self.pods.is_empty() {
            0.0
        } else {
            self.pods.iter().map(|p| p.score).sum::<f64>() / self.pods.len() as f64
        }
    }

    /// `blocks_found` over `block_count` (0 for an empty prompt).
    pub fn hit_ratio(&self) -> f64 {
        if self.block_count == 0 {
            0.0
        } else {
            self.blocks_found as f64 / self.block_count as f64
        }
    }
}

/// The KV-cache indexer: block keys, index, scorer and event ingestion.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct KvCacheIndexer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    keys: BlockKeyHasher,
    index: Arc<Index>,
    scorer: LongestPrefixScorer,
    ingestor: Arc<Ingestor<Index>>,
    lookup_failures: AtomicU64,
    warn: WarnLimit,
}

impl KvCacheIndexer {
    /// An indexer for `config`. A Redis index connects on first use.
    pub fn new(config: &KvCacheConfig) -> Result<KvCacheIndexer, ConfigError> {
        if config.block_size == 0 {
            return Err(ConfigError::ZeroBlockSize);
        }
        let keys = BlockKeyHasher::new(config.hash_seed, config.block_size);
        let index = Arc::new(Index::new(&config.index)?);
        let ingestor = Arc::new(Ingestor::new(
            index.clone(),
            keys,
            Arc::new(IngestCounters::default()),
        ));
        Ok(KvCacheIndexer {
            inner: Arc::new(Inner {
                keys,
                index,
                scorer: LongestPrefixScorer::new(config.tier_weights),
                ingestor,
                lookup_failures: AtomicU64::new(0),
                warn: WarnLimit::new(Duration::from_secs(10)),
            }),
        })
    }

    /// The block keys of a prompt of `model`.
    pub fn block_keys(&self, model: &str, tokens: &[u32]) -> Vec<BlockKey> {
        self.inner.keys.keys(model, tokens)
    }

    /// The index backend.
    pub fn index(&self) -> &Arc<Index> {
        &self.inner.index
    }

    /// The ingestor that applies KV events to the index (the subscriber
    /// uses it; tests and simulators can feed it directly).
    pub fn ingestor(&self) -> &Arc<Ingestor<Index>> {
        &self.inner.ingestor
    }

    /// Ingestion counters.
    pub fn ingest_stats(&self) -> IngestStats {
        self.inner.ingestor.counters().snapshot()
    }

    /// Lookups that failed because the index was unavailable.
    pub fn lookup_failures(&self) -> u64 {
        self.inner.lookup_failures.load(Ordering::Relaxed)
    }

    /// Starts ingesting KV events as `config` says. Must be called inside a
    /// Tokio runtime; stop it with [`EventSubscriber::stop`] or by dropping
    /// it.
    pub fn start_events(
        &self,
        config: &SubscriberConfig,
    ) -> Result<EventSubscriber, SubscriberError> {
        EventSubscriber::start(config, self.inner.ingestor.clone())
    }

    /// Prefix-cache scores of `pods` for a prompt of `model` sent without a
    /// `cache_salt`. See [`KvCacheIndexer::get_salted_scores`].
    pub async fn get_scores(
        &self,
        model: &Identifier,
        tokens: &[u32],
        pods: &[PodId],
    ) -> Result<Scores, ScoreError> {
        self.get_salted_scores(model, None, tokens, pods).await
    }

    /// Prefix-cache scores of `pods` for a prompt of `model` sent with
    /// `salt` as its vLLM `cache_salt`, if any: only blocks cached under the
    /// same salt count, as only those serve the request in vLLM. When the
    /// index cannot be reached the scores are all 0 and `index_available`
    /// is false: no information, not an error. A model name that is not a
    /// valid [`Identifier`] matches nothing (all such names share one
    /// placeholder, so their keys would collide).
    #[traced_span(
        "llm_d.kv_cache.get_scores",
        attrs(gen_ai.request.model = model, llm_d.kv_cache.pod_count = pods.len()),
        err
    )]
    pub async fn get_salted_scores(
        &self,
        model: &Identifier,
        salt: Option<&str>,
        tokens: &[u32],
        pods: &[PodId],
    ) -> Result<Scores, ScoreError> {
        let keys = self.inner.keys.salted_keys(model.as_str(), salt, tokens);
        record!(
            llm_d.kv_cache.token_count = tokens.len(),
            llm_d.kv_cache.block_keys.count = keys.len()
        );
        let mut hits = Vec::new();
        let lookup_keys = if model.is_valid() { &keys[..] } else { &[] };
        let index_available = match self.lookup(lookup_keys, pods, &mut hits).await {
            Ok(_) => true,
            Err(IndexError::TooManyCandidates(n)) => return Err(ScoreError::TooManyCandidates(n)),
            Err(error) => {
                self.inner.lookup_failures.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = self.inner.warn.allow() {
                    tracing::warn!(%error, suppressed, "KV block index unavailable; scoring without it");
                }
                hits.clear();
                false
            }
        };
        let scores = self.compute(&hits, pods, keys.len(), index_available);
        record!(
            llm_d.kv_cache.block_hit_ratio = scores.hit_ratio(),
            llm_d.kv_cache.blocks_found = scores.blocks_found
        );
        Ok(scores)
    }

    #[traced_span(
        "llm_d.kv_cache.storage.lookup",
        attrs(llm_d.kv_cache.lookup.pod_filter_count = pods.len()),
        err
    )]
    async fn lookup(
        &self,
        keys: &[BlockKey],
        pods: &[PodId],
        hits: &mut Vec<BlockHit>,
    ) -> Result<usize, IndexError> {
        let found = self.inner.index.lookup(keys, pods, hits).await?;
        record!(
            llm_d.kv_cache.lookup.cache_hit = found > 0,
            llm_d.kv_cache.lookup.blocks_found = found
        );
        Ok(found)
    }

    #[traced_span(
        "llm_d.kv_cache.scorer.compute",
        attrs(
            llm_d.kv_cache.scorer.algorithm = LongestPrefixScorer::ALGORITHM,
            llm_d.kv_cache.scorer.key_count = block_count
        )
    )]
    fn compute(
        &self,
        hits: &[BlockHit],
        pods: &[PodId],
        block_count: usize,
        index_available: bool,
    ) -> Scores {
        let prefix = self.inner.scorer.score(hits, pods.len(), block_count);
        let blocks_found = prefix.iter().map(|p| p.blocks).max().unwrap_or(0);
        let scores = Scores {
            pods: pods
                .iter()
                .zip(prefix)
                .map(|(pod, p)| PodScore {
                    pod: pod.clone(),
                    score: p.score,
                    blocks: p.blocks,
                })
                .collect(),
            block_count,
            blocks_found,
            index_available,
        };
        record!(
            llm_d.kv_cache.score.max = scores.max(),
            llm_d.kv_cache.score.avg = scores.mean(),
            llm_d.kv_cache.scorer.pods_scored =
                scores.pods.iter().filter(|p| p.score > 0.0).count()
        );
        scores
    }
}
