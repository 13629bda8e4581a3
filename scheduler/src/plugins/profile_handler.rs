//! `pd-profile-handler`: run the decode profile first, then ask the decider
//! whether the prefill profile should run too.

use super::decider::{PdReason, PrefixBasedPdDecider};
use super::{CycleState, SchedulingRequest};
use crate::pool::Endpoint;
use llmd_runtime::{AttributeEnum, Identifier, record, traced_span};

/// How a request is served (`llm_d.epp.profile_handler.decision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecisionKind {
    /// The decode pod does the whole request.
    DecodeOnly,
    /// A prefill pod computes the KV cache, the decode pod generates.
    PrefillDecode,
}

impl AttributeEnum for DecisionKind {
    fn label(&self) -> &'static str {
        match self {
            DecisionKind::DecodeOnly => "decode_only",
            DecisionKind::PrefillDecode => "prefill_decode",
        }
    }
}

/// What the handler decided after the decode profile ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PickOutcome {
    /// The decode profile found no endpoint: the request cannot be served.
    DecodeFailed,
    /// Serve from the decode pod alone.
    DecodeOnly(PdReason),
    /// Run the prefill profile as well.
    RunPrefill(PdReason),
}

/// The P/D profile handler's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdProfileHandler {
    /// Name of the decode profile (`decodeProfile`, default `decode`).
    pub decode_profile: String,
    /// Name of the prefill profile (`prefillProfile`, default `prefill`).
    pub prefill_profile: String,
    /// The decider (`deciderPluginName`).
    pub decider: PrefixBasedPdDecider,
}

impl PdProfileHandler {
    /// Decides, once the decode profile picked `decode`, whether prefill
    /// runs apart; recorded as the `llm_d.epp.profile_handler.pick` span.
    #[traced_span(
        "llm_d.epp.profile_handler.pick",
        attrs(
            llm_d.epp.profile_handler.total_profiles = total_profiles,
            llm_d.epp.profile_handler.executed_profiles = 1usize,
            llm_d.epp.profile_handler.decode_failed = decode.is_none(),
            gen_ai.request.model = &request.model_attr,
            gen_ai.request.id = &request.request_id,
        )
    )]
    pub fn pick(
        &self,
        request: &SchedulingRequest,
        decode: Option<&Endpoint>,
        state: &CycleState,
        total_profiles: usize,
    ) -> PickOutcome {
        let input_tokens = request.tokens.as_ref().map(|t| t.len());
        if let Some(n) = input_tokens {
            record!(llm_d.epp.profile_handler.input_tokens = n);
        }
        let Some(decode) = decode else {
            record!(llm_d.epp.profile_handler.decision = "complete");
            return PickOutcome::DecodeFailed;
        };
        let cached = state
            .matched_blocks
            .get(&decode.index())
            .map(|blocks| blocks * state.block_size);
        let (disaggregate, reason) = self.decider.decide(input_tokens, cached);
        let (decision, selected) = if disaggregate {
            (DecisionKind::PrefillDecode, &self.prefill_profile)
        } else {
            (DecisionKind::DecodeOnly, &self.decode_profile)
        };
        record!(
            llm_d.epp.profile_handler.decision = decision,
            llm_d.epp.profile_handler.selected_profile = Identifier::new(selected),
        );
        if disaggregate {
            PickOutcome::RunPrefill(reason)
        } else {
            PickOutcome::DecodeOnly(reason)
        }
    }
}
