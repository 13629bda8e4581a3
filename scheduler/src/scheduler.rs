//! One scheduling cycle: run the profiles the handler asks for and turn
//! their picks into a routing decision.

use crate::plugins::decider::PdReason;
use crate::plugins::prerequest::prefiller_header;
use crate::plugins::profile_handler::{DecisionKind, PdProfileHandler, PickOutcome};
use crate::plugins::{CycleState, Profile, SchedulingRequest};
use crate::pool::Endpoint;
use std::sync::Arc;

/// How profiles are chosen.
#[derive(Debug)]
pub enum Handler {
    /// `single-profile-handler`: the one profile decides.
    Single,
    /// `pd-profile-handler`: decode first, then maybe prefill.
    Pd {
        /// The handler's settings.
        handler: PdProfileHandler,
        /// Index of the decode profile.
        decode: usize,
        /// Index of the prefill profile.
        prefill: usize,
    },
}

/// Where a request goes.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The endpoint that serves the request (the decode pod).
    pub target: Arc<Endpoint>,
    /// The prefill pod, when disaggregated.
    pub prefill: Option<Arc<Endpoint>>,
    /// The value of `x-prefiller-host-port`, when disaggregated.
    pub prefiller_host_port: Option<String>,
    /// Decode only or prefill/decode.
    pub kind: DecisionKind,
    /// Why.
    pub reason: PdReason,
}

/// The request cannot be scheduled.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// No candidate passed the (decode) profile's filters.
    #[error("no ready endpoint can serve the request")]
    NoEndpoint,
}

impl llmd_runtime::ErrorType for ScheduleError {
    fn error_type(&self) -> &'static str {
        "no_endpoint"
    }
}

/// The configured scheduler: profiles and their handler.
#[derive(Debug)]
pub struct Scheduler {
    profiles: Vec<Profile>,
    handler: Handler,
}

impl Scheduler {
    /// A scheduler of `profiles` run by `handler`.
    pub fn new(profiles: Vec<Profile>, handler: Handler) -> Scheduler {
        Scheduler { profiles, handler }
    }

    /// Whether the prompt's tokens are used (prefix scorer or P/D decider).
    pub fn needs_tokens(&self) -> bool {
        matches!(self.handler, Handler::Pd { .. })
            || self.profiles.iter().any(Profile::needs_tokens)
    }

    /// The profiles.
    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// How profiles are chosen.
    pub fn handler(&self) -> &Handler {
        &self.handler
    }

    /// Chooses the endpoint(s) for `request` among `candidates` (the ready
    /// endpoints serving its model).
    pub async fn schedule(
        &self,
        request: &SchedulingRequest,
        candidates: &[Arc<Endpoint>],
    ) -> Result<Decision, ScheduleError> {
        let mut state = CycleState::default();
        match &self.handler {
            Handler::Single => {
                let target = self.profiles[0]
                    .run(request, candidates, &mut state)
                    .await
                    .ok_or(ScheduleError::NoEndpoint)?;
                Ok(Decision {
                    target,
                    prefill: None,
                    prefiller_host_port: None,
                    kind: DecisionKind::DecodeOnly,
                    reason: PdReason::SingleProfile,
                })
            }
            Handler::Pd {
                handler,
                decode,
                prefill,
            } => {
                let target = self.profiles[*decode]
                    .run(request, candidates, &mut state)
                    .await;
                let outcome = handler.pick(request, target.as_deref(), &state, self.profiles.len());
                let (target, reason, prefill) = match (target, outcome) {
                    (Some(target), PickOutcome::RunPrefill(reason)) => {
                        let prefill = self.profiles[*prefill]
                            .run(request, candidates, &mut state)
                            .await;
                        let reason = if prefill.is_some() {
                            reason
                        } else {
                            PdReason::NoPrefillEndpoint
                        };
                        (target, reason, prefill)
                    }
                    (Some(target), PickOutcome::DecodeOnly(reason)) => (target, reason, None),
                    _ => return Err(ScheduleError::NoEndpoint),
                };
                let prefiller_host_port = prefiller_header(request, prefill.as_deref(), reason);
                Ok(Decision {
                    target,
                    kind: if prefill.is_some() {
                        DecisionKind::PrefillDecode
                    } else {
                        DecisionKind::DecodeOnly
                    },
                    prefill,
                    prefiller_host_port,
                    reason,
                })
            }
        }
    }
}
