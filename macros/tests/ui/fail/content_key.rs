//! Rule 1: content keys are refused wherever attributes are written.
use llmd_runtime::{event, record, traced_span};

#[traced_span("llm_d.kv_cache.get_scores", attrs(gen_ai.input.messages = 1))]
fn in_attrs() {
    record!(gen_ai.prompt = 2);
    event!("llm_d.pd_proxy.first_token", gen_ai.output.messages.0.content = 3);
}

fn main() {
    in_attrs();
}
