//! Rule 4: a literal of the wrong kind for a registry key.
use llmd_runtime::{record, traced_span};

#[traced_span("llm_d.kv_cache.get_scores", attrs(llm_d.kv_cache.pod_count = "three"))]
fn string_for_int() {
    record!(llm_d.kv_cache.block_hit_ratio = 1);
    record!(gen_ai.request.stream = "yes");
}

fn main() {}
