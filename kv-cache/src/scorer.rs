//! The longest-prefix scorer: for each candidate pod, the run of the
//! prompt's blocks it holds from the first block on, each block weighted by
//! the tier it lives on, divided by the prompt's block count.

use crate::index::BlockHit;
use crate::pod::Tier;
use serde::Deserialize;

/// Weight of a block hit per tier.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TierWeights {
    /// GPU-resident blocks.
    pub gpu: f64,
    /// Host-memory blocks.
    pub cpu: f64,
    /// Blocks on any other medium.
    pub other: f64,
}

impl Default for TierWeights {
    fn default() -> TierWeights {
        TierWeights {
            gpu: 1.0,
            cpu: 0.8,
            other: 0.5,
        }
    }
}

impl TierWeights {
    fn of(&self, tier: Tier) -> f64 {
        match tier {
            Tier::Gpu => self.gpu,
            Tier::Cpu => self.cpu,
            Tier::Other => self.other,
        }
    }
}

/// Per-candidate result of [`LongestPrefixScorer::score`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PrefixScore {
    /// Weighted prefix length over the prompt's block count, in [0, 1].
    pub score: f64,
    /// Length of the run of leading blocks held.
    pub blocks: usize,
}

/// Longest consecutive prefix per pod, weighted by tier.
#[derive(Debug, Clone, Copy, Default)]
pub struct LongestPrefixScorer {
    weights: TierWeights,
}

/// Per-candidate progress through the hits.
#[derive(Clone, Copy, Default)]
struct Run {
    next_block: u32,
    last_weight: f64,
    weight: f64,
}

impl LongestPrefixScorer {
    /// The algorithm's name, as recorded on spans.
    pub const ALGORITHM: &'static str = "longest_prefix";

    /// A scorer with these weights.
    pub fn new(weights: TierWeights) -> LongestPrefixScorer {
        LongestPrefixScorer { weights }
    }

    /// Scores `candidates` pods from `hits` (ordered by block, as lookups
    /// produce them) for a prompt of `block_count` blocks. A pod holding a
    /// block on several tiers counts its best one.
    pub fn score(
        &self,
        hits: &[BlockHit],
        candidates: usize,
        block_count: usize,
    ) -> Vec<PrefixScore> {
        let mut runs = vec![Run::default(); candidates];
        for hit in hits {
            let Some(run) = runs.get_mut(usize::from(hit.candidate)) else {
                continue;
            };
            let weight = self.weights.of(hit.tier);
            if hit.block == run.next_block {
                run.next_block += 1;
                run.weight += weight;
                run.last_weight = weight;
            } else if hit.block + 1 == run.next_block && weight > run.last_weight {
                run.weight += weight - run.last_weight;
                run.last_weight = weight;
            }
        }
        runs.iter()
            .map(|run| PrefixScore {
                score: if block_count == 0 {
                    0.0
                } else {
                    (run.weight / block_count as f64).clamp(0.0, 1.0)
                },
                blocks: run.next_block as usize,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(block: u32, candidate: u16, tier: Tier) -> BlockHit {
        BlockHit {
            block,
            candidate,
            tier,
        }
    }

    #[test]
    fn runs_stop_at_the_first_missing_block() {
        let hits = [
            hit(0, 0, Tier::Gpu),
            hit(0, 1, Tier::Gpu),
            hit(1, 0, Tier::Gpu),
            hit(2, 1, Tier::Gpu), // pod 1 misses block 1: its run is 1 block
            hit(2, 0, Tier::Gpu),
        ];
        let s = LongestPrefixScorer::default().score(&hits, 3, 4);
        assert_eq!(
            s[0],
            PrefixScore {
                score: 0.75,
                blocks: 3
            }
        );
        assert_eq!(
            s[1],
            PrefixScore {
                score: 0.25,
                blocks: 1
            }
        );
        assert_eq!(
            s[2],
            PrefixScore {
                score: 0.0,
                blocks: 0
            }
        );
    }

    #[test]
    fn tiers_weigh_blocks_and_the_best_tier_counts() {
        let hits = [
            hit(0, 0, Tier::Cpu),
            hit(0, 0, Tier::Gpu),
            hit(1, 0, Tier::Cpu),
        ];
        let s = LongestPrefixScorer::default().score(&hits, 1, 2);
        assert!((s[0].score - 0.9).abs() < 1e-12, "{s:?}");
        assert_eq!(s[0].blocks, 2);
    }

    #[test]
    fn empty_prompt_scores_zero() {
        assert_eq!(
            LongestPrefixScorer::default().score(&[], 2, 0),
            vec![PrefixScore::default(); 2]
        );
    }
}
