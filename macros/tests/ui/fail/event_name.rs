//! Rule 6: event names follow the span name rules.
use llmd_runtime::{event, traced_span};

#[traced_span("llm_d.kv_cache.get_scores")]
fn events(name: &'static str) {
    event!(name);
    event!("Queue Full");
    event!("myapp.queue.full");
    event!("llm_d.pd_proxy.first_token", llm_d.kv_cache.pod_count = "one");
}

fn main() {}
