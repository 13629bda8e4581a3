//! `prefix-based-pd-decider`: disaggregate when the part of the prompt not
//! cached on the chosen decode pod is long enough to be worth a prefill pod.

use llmd_runtime::AttributeEnum;

/// Why a request was or was not disaggregated (`llm_d.epp.pd.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PdReason {
    /// `nonCachedTokens` is 0: always disaggregate.
    AlwaysDisaggregate,
    /// The uncached suffix reaches `nonCachedTokens`.
    NonCachedAboveThreshold,
    /// The whole prompt is shorter than `nonCachedTokens`.
    InputBelowThreshold,
    /// Enough of the prompt is cached on the decode pod.
    CachedPrefixSufficient,
    /// The prompt's token count is unknown.
    NoTokenCount,
    /// The decode profile has no prefix-cache information.
    NoPrefixState,
    /// Disaggregation was chosen but no prefill endpoint was found.
    NoPrefillEndpoint,
    /// The configuration has no P/D profile handler.
    SingleProfile,
}

impl AttributeEnum for PdReason {
    fn label(&self) -> &'static str {
        match self {
            PdReason::AlwaysDisaggregate => "always_disaggregate",
            PdReason::NonCachedAboveThreshold => "non_cached_above_threshold",
            PdReason::InputBelowThreshold => "input_below_threshold",
            PdReason::CachedPrefixSufficient => "cached_prefix_sufficient",
            PdReason::NoTokenCount => "no_token_count",
            PdReason::NoPrefixState => "no_prefix_state",
            PdReason::NoPrefillEndpoint => "no_prefill_profile_result",
            PdReason::SingleProfile => "single_profile",
        }
    }
}

/// The decider's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixBasedPdDecider {
    /// `nonCachedTokens`: uncached tokens from which prefill runs apart.
    pub non_cached_tokens: usize,
}

impl PrefixBasedPdDecider {
    /// Decides for a prompt of `input_tokens` tokens of which
    /// `cached_tokens` are cached on the decode pod (`None`: unknown).
    /// Returns whether to disaggregate, and why.
    pub fn decide(
        &self,
        input_tokens: Option<usize>,
        cached_tokens: Option<usize>,
    ) -> (bool, PdReason) {
        if self.non_cached_tokens == 0 {
            return (true, PdReason::AlwaysDisaggregate);
        }
        let Some(input) = input_tokens else {
            return (false, PdReason::NoTokenCount);
        };
        if input < self.non_cached_tokens {
            return (false, PdReason::InputBelowThreshold);
        }
        let Some(cached) = cached_tokens else {
            return (false, PdReason::NoPrefixState);
        };
        if input.saturating_sub(cached) < self.non_cached_tokens {
            (false, PdReason::CachedPrefixSufficient)
        } else {
            (true, PdReason::NonCachedAboveThreshold)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_on_the_uncached_suffix() {
        let d = PrefixBasedPdDecider {
            non_cached_tokens: 16,
        };
        assert_eq!(
            d.decide(Some(10), Some(0)),
            (false, PdReason::InputBelowThreshold)
        );
        assert_eq!(
            d.decide(Some(64), Some(0)),
            (true, PdReason::NonCachedAboveThreshold)
        );
        assert_eq!(
            d.decide(Some(64), Some(48)),
            (true, PdReason::NonCachedAboveThreshold)
        );
        assert_eq!(
            d.decide(Some(64), Some(49)),
            (false, PdReason::CachedPrefixSufficient)
        );
        assert_eq!(d.decide(None, Some(0)), (false, PdReason::NoTokenCount));
        assert_eq!(d.decide(Some(64), None), (false, PdReason::NoPrefixState));
        let always = PrefixBasedPdDecider {
            non_cached_tokens: 0,
        };
        assert_eq!(
            always.decide(None, None),
            (true, PdReason::AlwaysDisaggregate)
        );
    }
}
