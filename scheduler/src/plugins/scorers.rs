//! Scorers: each gives every candidate a score in [0, 1]; the profile adds
//! them up with their weights.

use super::{CycleState, SchedulingRequest};
use crate::kv_index::PrefixCache;
use crate::pool::Endpoint;
use llmd_kv_cache::PodId;
use llmd_runtime::{ErrorType as _, Identifier, record, traced_span};
use opentelemetry::trace::TraceContextExt as _;
use std::sync::Arc;

/// llm-d's default queue threshold of the load-aware scorer.
pub const DEFAULT_LOAD_THRESHOLD: u64 = 128;

/// The scoring algorithm of a scorer instance.
pub enum ScorerKind {
    /// `queue-scorer`: `(maxQ - q) / (maxQ - minQ)` over the candidates'
    /// waiting queues, 1 when all are equal.
    Queue,
    /// `kv-cache-utilization-scorer`: `1 - usage`.
    KvCacheUtilization,
    /// `load-aware-scorer`: 0.5 for an empty queue, falling linearly to 0 at
    /// `threshold` waiting requests.
    LoadAware {
        /// Waiting requests at which the score reaches 0.
        threshold: u64,
    },
    /// `precise-prefix-cache-scorer`: share of the prompt's blocks cached on
    /// the pod (longest prefix).
    PrefixCache {
        /// The KV block index.
        cache: Arc<PrefixCache>,
    },
}

impl std::fmt::Debug for ScorerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.type_name())
    }
}

impl ScorerKind {
    /// The plugin type, as written in configurations.
    pub fn type_name(&self) -> &'static str {
        match self {
            ScorerKind::Queue => "queue-scorer",
            ScorerKind::KvCacheUtilization => "kv-cache-utilization-scorer",
            ScorerKind::LoadAware { .. } => "load-aware-scorer",
            ScorerKind::PrefixCache { .. } => "precise-prefix-cache-scorer",
        }
    }
}

/// A scorer instance of a profile, with its weight.
#[derive(Debug)]
pub struct WeightedScorer {
    /// The instance name.
    pub name: Identifier,
    /// The weight its scores are multiplied by.
    pub weight: f64,
    /// The algorithm.
    pub kind: ScorerKind,
}

/// Defines a method that runs the scorer inside its span, named per scorer
/// type, with the same attributes for every type. (rustfmt does not
/// format attributes inside macros stably.)
#[rustfmt::skip]
macro_rules! traced_scoring {
    ($method:ident, $span:literal) => {
        #[traced_span(
            $span,
            attrs(
                llm_d.epp.scorer.type = self.kind.type_name(),
                llm_d.epp.scorer.name = &self.name,
                llm_d.epp.scorer.weight = self.weight.round() as i64,
                llm_d.epp.scorer.candidate_endpoints = candidates.len(),
                gen_ai.request.model = &request.model_attr,
                gen_ai.request.id = &request.request_id,
            )
        )]
        async fn $method(
            &self,
            request: &SchedulingRequest,
            candidates: &[Arc<Endpoint>],
            state: &mut CycleState,
        ) -> Vec<f64> {
            let scores = self.compute(request, candidates, state).await;
            record!(
                llm_d.epp.scorer.score.max = scores.iter().copied().fold(0.0, f64::max),
                llm_d.epp.scorer.score.avg = mean(&scores),
                llm_d.epp.scorer.endpoints_scored = scores.iter().filter(|s| **s > 0.0).count(),
            );
            scores
        }
    };
}

impl WeightedScorer {
    /// Scores `candidates` (each in [0, 1], in candidate order) inside the
    /// scorer's span.
    pub async fn score(
        &self,
        request: &SchedulingRequest,
        candidates: &[Arc<Endpoint>],
        state: &mut CycleState,
    ) -> Vec<f64> {
        match self.kind {
            ScorerKind::Queue => self.score_queue(request, candidates, state).await,
            ScorerKind::KvCacheUtilization => {
                self.score_kv_utilization(request, candidates, state).await
            }
            ScorerKind::LoadAware { .. } => self.score_load_aware(request, candidates, state).await,
            ScorerKind::PrefixCache { .. } => {
                self.score_prefix_cache(request, candidates, state).await
            }
        }
    }

    traced_scoring!(score_queue, "llm_d.epp.scorer.queue");
    traced_scoring!(
        score_kv_utilization,
        "llm_d.epp.scorer.kv_cache_utilization"
    );
    traced_scoring!(score_load_aware, "llm_d.epp.scorer.load_aware");
    traced_scoring!(score_prefix_cache, "llm_d.epp.scorer.prefix_cache");

    async fn compute(
        &self,
        request: &SchedulingRequest,
        candidates: &[Arc<Endpoint>],
        state: &mut CycleState,
    ) -> Vec<f64> {
        match &self.kind {
            ScorerKind::PrefixCache { cache } => {
                prefix_scores(cache, request, candidates, state).await
            }
            sync => sync_scores(sync, candidates),
        }
    }
}

fn mean(scores: &[f64]) -> f64 {
    if scores.is_empty() {
        0.0
    } else {
        scores.iter().sum::<f64>() / scores.len() as f64
    }
}

fn sync_scores(kind: &ScorerKind, candidates: &[Arc<Endpoint>]) -> Vec<f64> {
    match kind {
        ScorerKind::Queue => queue_scores(candidates),
        ScorerKind::KvCacheUtilization => candidates
            .iter()
            .map(|e| clamp(1.0 - e.load().kv_cache_usage))
            .collect(),
        ScorerKind::LoadAware { threshold } => candidates
            .iter()
            .map(|e| load_aware_score(e.load().waiting, *threshold))
            .collect(),
        ScorerKind::PrefixCache { .. } => vec![0.0; candidates.len()],
    }
}

fn clamp(score: f64) -> f64 {
    if score.is_nan() {
        0.0
    } else {
        score.clamp(0.0, 1.0)
    }
}

fn queue_scores(candidates: &[Arc<Endpoint>]) -> Vec<f64> {
    let queues: Vec<u64> = candidates.iter().map(|e| e.load().waiting).collect();
    let (Some(&min), Some(&max)) = (queues.iter().min(), queues.iter().max()) else {
        return Vec::new();
    };
    queues
        .iter()
        .map(|&q| {
            if max == min {
                1.0
            } else {
                clamp((max - q) as f64 / (max - min) as f64)
            }
        })
        .collect()
}

fn load_aware_score(waiting: u64, threshold: u64) -> f64 {
    let threshold = threshold.max(1);
    if waiting == 0 {
        return 0.5;
    }
    let waiting = waiting.min(threshold) as f64;
    clamp(0.5 * (1.0 - waiting / threshold as f64))
}

async fn prefix_scores(
    cache: &PrefixCache,
    request: &SchedulingRequest,
    candidates: &[Arc<Endpoint>],
    state: &mut CycleState,
) -> Vec<f64> {
    state.block_size = cache.block_size();
    let Some(tokens) = request.tokens.as_deref() else {
        return vec![0.0; candidates.len()];
    };
    let pods: Vec<PodId> = candidates.iter().map(|e| e.pod_id().clone()).collect();
    match cache
        .indexer()
        .get_salted_scores(
            &request.model_attr,
            request.cache_salt.as_deref(),
            tokens,
            &pods,
        )
        .await
    {
        Ok(scores) if scores.pods.len() == candidates.len() => candidates
            .iter()
            .zip(&scores.pods)
            .map(|(endpoint, pod)| {
                if scores.index_available {
                    state.matched_blocks.insert(endpoint.index(), pod.blocks);
                }
                clamp(pod.score)
            })
            .collect(),
        Ok(_) => vec![0.0; candidates.len()],
        Err(error) => {
            tracing::warn!(%error, "prefix scores unavailable");
            llmd_runtime::span::mark_error(
                &opentelemetry::Context::current().span(),
                error.error_type(),
            );
            vec![0.0; candidates.len()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_index::PrefixCacheSettings;
    use crate::pool::{EndpointSpec, Load, PoolSnapshot};
    use llmd_kv_cache::events::{BlockStored, EngineHash, EventBatch, EventSource, KvEvent};
    use llmd_kv_cache::vllm_hash::ExtraKey;

    fn pool(loads: &[(u64, f64)]) -> PoolSnapshot {
        let snap = PoolSnapshot::new(
            (0..loads.len())
                .map(|i| EndpointSpec::new(format!("127.0.0.1:{}", 1000 + i).parse().unwrap(), "m"))
                .collect(),
        );
        for (e, &(waiting, kv)) in snap.endpoints().iter().zip(loads) {
            e.record_load(Load {
                waiting,
                running: 0,
                kv_cache_usage: kv,
            });
        }
        snap
    }

    #[test]
    fn queue_scores_are_min_max_normalised() {
        let snap = pool(&[(0, 0.0), (5, 0.0), (10, 0.0)]);
        assert_eq!(queue_scores(snap.endpoints()), [1.0, 0.5, 0.0]);
        let snap = pool(&[(3, 0.0), (3, 0.0)]);
        assert_eq!(queue_scores(snap.endpoints()), [1.0, 1.0]);
    }

    #[test]
    fn kv_utilisation_and_load_aware_follow_llm_d() {
        let snap = pool(&[(0, 0.25), (64, 1.0), (500, 0.0)]);
        assert_eq!(
            sync_scores(&ScorerKind::KvCacheUtilization, snap.endpoints()),
            [0.75, 0.0, 1.0]
        );
        assert_eq!(
            sync_scores(&ScorerKind::LoadAware { threshold: 128 }, snap.endpoints()),
            [0.5, 0.25, 0.0]
        );
    }

    fn stored(tokens: &[u32], first_hash: u64) -> EventBatch {
        let blocks = tokens.len() / 4;
        EventBatch {
            ts: 0.0,
            events: vec![KvEvent::BlockStored(BlockStored {
                block_hashes: (0..blocks as u64)
                    .map(|i| EngineHash::U64(first_hash + i))
                    .collect(),
                token_ids: tokens[..blocks * 4].to_vec(),
                block_size: 4,
                ..BlockStored::default()
            })],
            data_parallel_rank: None,
        }
    }

    #[tokio::test]
    async fn prefix_scores_follow_the_kv_index() {
        let snap = pool(&[(0, 0.0), (0, 0.0), (0, 0.0)]);
        let settings = PrefixCacheSettings {
            block_size: 4,
            ..PrefixCacheSettings::default()
        };
        let cache = Arc::new(PrefixCache::new(&settings).unwrap());
        let prompt: Vec<u32> = (0..18).collect();
        let ingest = |pod: &str, tokens: &[u32], hash: u64| {
            let source = EventSource {
                pod: PodId::new(pod),
                model: "m".to_owned(),
            };
            let batch = stored(tokens, hash);
            let cache = cache.clone();
            async move { cache.indexer().ingestor().apply(&source, &batch).await }
        };
        ingest(snap.endpoints()[0].id(), &prompt, 100).await;
        ingest(snap.endpoints()[1].id(), &prompt[..4], 200).await;
        let scorer = WeightedScorer {
            name: Identifier::from_static("p"),
            weight: 1.0,
            kind: ScorerKind::PrefixCache {
                cache: cache.clone(),
            },
        };
        let request = SchedulingRequest::with_tokens("m", "r1", prompt.clone());
        let mut state = CycleState::default();
        let scores = scorer.score(&request, snap.endpoints(), &mut state).await;
        assert_eq!(scores, [1.0, 0.25, 0.0]);
        assert_eq!(state.matched_blocks.get(&0), Some(&4));
        assert_eq!(state.matched_blocks.get(&1), Some(&1));
        assert_eq!(state.block_size, 4);
        let other_model = SchedulingRequest::with_tokens("other", "r2", prompt.clone());
        assert_eq!(
            scorer
                .score(&other_model, snap.endpoints(), &mut state)
                .await,
            [0.0; 3]
        );
        let salted = SchedulingRequest::with_tokens("m", "r4", prompt.clone())
            .with_cache_salt(Some("tenant-a"));
        assert_eq!(
            scorer.score(&salted, snap.endpoints(), &mut state).await,
            [0.0; 3],
            "unsalted blocks serve no salted request"
        );
        let mut salted_blocks = stored(&prompt, 300);
        if let KvEvent::BlockStored(blocks) = &mut salted_blocks.events[0] {
            let mut keys = vec![None; blocks.block_hashes.len()];
            keys[0] = Some(vec![ExtraKey::Text("tenant-a".into())]);
            blocks.extra_keys = Some(keys);
        }
        let source = EventSource {
            pod: PodId::new(snap.endpoints()[2].id()),
            model: "m".to_owned(),
        };
        cache
            .indexer()
            .ingestor()
            .apply(&source, &salted_blocks)
            .await;
        assert_eq!(
            scorer.score(&salted, snap.endpoints(), &mut state).await,
            [0.0, 0.0, 1.0],
            "the salted request finds the blocks cached under its salt"
        );
        let untokenized = SchedulingRequest::new("m", "r3");
        assert_eq!(
            scorer
                .score(&untokenized, snap.endpoints(), &mut state)
                .await,
            [0.0; 3]
        );
    }
}
