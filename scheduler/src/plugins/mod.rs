//! The scheduling plugins of llm-d and the profile that runs them:
//! filters narrow the candidates, scorers score them, the picker chooses.

pub mod decider;
pub mod filters;
pub mod picker;
pub mod prerequest;
pub mod profile_handler;
pub mod registry;
pub mod scorers;

use crate::pool::Endpoint;
use filters::RoleFilter;
use llmd_runtime::Identifier;
use picker::MaxScorePicker;
use scorers::WeightedScorer;
use std::collections::HashMap;
use std::sync::Arc;

/// What the plugins know about a request: metadata and the prompt's tokens.
#[derive(Clone, Debug)]
pub struct SchedulingRequest {
    /// The model asked for.
    pub model: Arc<str>,
    /// The model, as a span attribute value.
    pub model_attr: Identifier,
    /// The request id (`x-request-id`), as a span attribute value.
    pub request_id: Identifier,
    /// The prompt's token ids, when known.
    pub tokens: Option<Arc<[u32]>>,
    /// vLLM's `cache_salt`: the request can only use cached blocks of the
    /// same salt.
    pub cache_salt: Option<Arc<str>>,
}

impl SchedulingRequest {
    /// Describes a request whose prompt is not tokenized (yet).
    pub fn new(model: &str, request_id: &str) -> SchedulingRequest {
        SchedulingRequest {
            model: Arc::from(model),
            model_attr: Identifier::recurring(model),
            request_id: Identifier::new(request_id),
            tokens: None,
            cache_salt: None,
        }
    }

    /// The same request sent with `salt` as its `cache_salt`.
    pub fn with_cache_salt(self, salt: Option<&str>) -> SchedulingRequest {
        SchedulingRequest {
            cache_salt: salt.map(Arc::from),
            ..self
        }
    }

    /// Describes a request with its prompt's token ids.
    pub fn with_tokens(model: &str, request_id: &str, tokens: Vec<u32>) -> SchedulingRequest {
        SchedulingRequest {
            tokens: Some(Arc::from(tokens)),
            ..SchedulingRequest::new(model, request_id)
        }
    }
}

/// State shared by the plugins during one scheduling cycle.
#[derive(Clone, Debug, Default)]
pub struct CycleState {
    /// Leading prompt blocks cached, by endpoint index, as the prefix scorer found.
    pub matched_blocks: HashMap<usize, usize>,
    /// Tokens per block of the prefix index.
    pub block_size: usize,
}

/// A scheduling profile: filters, weighted scorers and a picker.
#[derive(Debug)]
pub struct Profile {
    /// The profile's name.
    pub name: String,
    /// Filters, in order.
    pub filters: Vec<RoleFilter>,
    /// Scorers with their weights.
    pub scorers: Vec<WeightedScorer>,
    /// The picker.
    pub picker: MaxScorePicker,
}

impl Profile {
    /// Runs the profile over `candidates`: the picked endpoint, if any passed
    /// the filters.
    pub async fn run(
        &self,
        request: &SchedulingRequest,
        candidates: &[Arc<Endpoint>],
        state: &mut CycleState,
    ) -> Option<Arc<Endpoint>> {
        let mut kept = candidates.to_vec();
        for filter in &self.filters {
            filter.apply(&mut kept);
        }
        if kept.is_empty() {
            return None;
        }
        let mut totals = vec![0.0; kept.len()];
        for scorer in &self.scorers {
            let scores = scorer.score(request, &kept, state).await;
            for (total, score) in totals.iter_mut().zip(scores) {
                *total += scorer.weight * score;
            }
        }
        let picked = self.picker.pick(&totals, &mut rand::rng());
        picked.first().map(|&i| kept[i].clone())
    }

    /// Whether a scorer of the profile needs the prompt's tokens.
    pub fn needs_tokens(&self) -> bool {
        self.scorers
            .iter()
            .any(|s| matches!(s.kind, scorers::ScorerKind::PrefixCache { .. }))
    }
}
