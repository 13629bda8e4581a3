//! Rule 4: a value of the wrong kind for a registry key.
use llmd_runtime::{record, traced_span};

#[traced_span("llm_d.kv_cache.get_scores", attrs(llm_d.kv_cache.pod_count = name))]
fn str_for_int(name: &'static str) {
    let ratio: u32 = 1;
    record!(llm_d.kv_cache.block_hit_ratio = ratio);
    record!(gen_ai.response.finish_reasons = vec![1_u32]);
}

fn main() {}
