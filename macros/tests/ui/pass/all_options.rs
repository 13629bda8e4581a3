//! Every option and value kind, expanded without a single warning.
#![deny(warnings)]

use llmd_runtime::attributes::AttributeEnum;
use llmd_runtime::{Context, ErrorType, Identifier, attributes, event, record, traced_span};

#[derive(Debug, ErrorType)]
enum PickError {
    NoEndpoint,
    Upstream(u16),
    Refused { code: u16 },
}

#[derive(Clone, Copy)]
enum Decision {
    DecodeOnly,
}

impl AttributeEnum for Decision {
    fn label(&self) -> &'static str {
        match self {
            Decision::DecodeOnly => "decode_only",
        }
    }
}

#[traced_span(
    "llm_d.epp.profile_handler.pick",
    kind = server,
    parent = cx,
    attrs(
        gen_ai.request.model = model,
        "llm_d.pd_proxy.prefill.async" = false,
        llm_d.epp.profile_handler.decision = decision,
        llm_d.epp.profile_handler.total_profiles = 2_u8,
        llm_d.epp.scorer.score.max = 0.5_f32,
        gen_ai.response.finish_reasons = &reasons,
    ),
    err,
)]
async fn pick(
    cx: &Context,
    model: &Identifier,
    decision: Decision,
    reasons: Vec<&'static str>,
) -> Result<u32, PickError> {
    let n: u32 = "3".parse().map_err(|_| PickError::NoEndpoint)?;
    record!(llm_d.epp.pd.disaggregation_used = n > 2, llm_d.epp.pd.reason = "threshold");
    event!("llm_d.pd_proxy.first_token", llm_d.pd_proxy.true_ttft_ms = 1.5);
    let listed: [opentelemetry::KeyValue; 2] = attributes!(
        gen_ai.request.model = model.clone(),
        llm_d.epp.pd.reason = "threshold",
    );
    drop(listed);
    match n {
        0 => Err(PickError::Upstream(502)),
        1 => Err(PickError::Refused { code: 403 }),
        _ => Ok(n),
    }
}

#[traced_span("gateway.request", kind = consumer, parent = None::<Context>)]
fn sync_unit() {}

#[traced_span("llm_d.pd_proxy.decode", kind = producer, err)]
fn sync_err(flag: bool) -> Result<(), std::io::Error> {
    if flag {
        return Err(std::io::Error::other("x"));
    }
    Ok(())
}

#[traced_span("llm_d.pd_proxy.prefill", kind = client, attrs())]
fn returns_impl(n: usize) -> impl Iterator<Item = usize> {
    0..n
}

fn main() {
    let cx = Context::current();
    let model = Identifier::new("m");
    drop(pick(&cx, &model, Decision::DecodeOnly, vec!["stop"]));
    sync_unit();
    let _ = sync_err(false);
    let _ = returns_impl(2).count();
}
