//! `prefill-header-handler`: tells the decode pod's P/D proxy where to
//! prefill, with `x-prefiller-host-port: ip:port` (and the same under
//! llm-d's new name, `x-llm-d-prefiller-host-port`).

use super::SchedulingRequest;
use super::decider::PdReason;
use crate::pool::Endpoint;
use llmd_runtime::{Identifier, record, traced_span};

/// The value of the prefill header
/// ([`llmd_runtime::routing::PREFILLER_HEADERS`]) for the request, if it is
/// disaggregated; recorded as the `llm_d.epp.prerequest.pd_disaggregation`
/// span. The target is the prefill pod's vLLM address.
#[traced_span(
    "llm_d.epp.prerequest.pd_disaggregation",
    attrs(
        gen_ai.request.model = &request.model_attr,
        gen_ai.request.id = &request.request_id,
        llm_d.epp.pd.disaggregation_used = prefill.is_some(),
        llm_d.epp.pd.reason = reason,
    )
)]
pub fn prefiller_header(
    request: &SchedulingRequest,
    prefill: Option<&Endpoint>,
    reason: PdReason,
) -> Option<String> {
    let address = prefill?.spec().address;
    record!(
        llm_d.epp.pd.prefill_pod_address = Identifier::new(&address.ip().to_string()),
        llm_d.epp.pd.prefill_pod_port = address.port(),
    );
    Some(address.to_string())
}
