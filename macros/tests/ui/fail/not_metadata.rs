//! Rule 3: only metadata types are recorded: never `String`, a borrowed
//! `&str`, `Sensitive<T>` or a type that only has `Debug`/`Display`.
use llmd_runtime::{Sensitive, record, traced_span};

#[derive(Debug)]
struct Prompt;

#[traced_span("llm_d.kv_cache.get_scores", attrs(gen_ai.request.model = model))]
fn owned_string(model: String) {}

#[traced_span("llm_d.kv_cache.get_scores")]
fn sensitive_and_debug(prompt: Sensitive<String>) {
    record!(gen_ai.request.id = prompt);
    record!(gen_ai.response.id = Prompt);
}

#[traced_span("llm_d.kv_cache.get_scores", attrs(gen_ai.request.model = model))]
fn borrowed_str(model: &str) {}

fn main() {}
