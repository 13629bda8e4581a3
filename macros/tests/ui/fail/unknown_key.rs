//! Rule 2: keys must be in the registry or declared by the crate; the
//! nearest known key is suggested.
use llmd_runtime::{record, traced_span};

#[traced_span("llm_d.kv_cache.get_scores", attrs(llm_d.kv_cache.pod_cout = 1))]
fn typo_in_reserved_namespace() {
    record!(gen_ai.request.modle = "m");
    record!(myapp.queue.depth = 3);
    record!(Not.Well.Formed = 3);
}

fn main() {
    typo_in_reserved_namespace();
}
