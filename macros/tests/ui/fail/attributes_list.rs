//! `attributes!` checks its list as `record!` does: content keys, unknown
//! keys, non-metadata values and a key set twice are refused, and an empty
//! list is an error.
use llmd_runtime::{Identifier, attributes};

fn main() {
    let prompt = String::from("hello");
    let model = Identifier::new("m");
    let _ = attributes!(gen_ai.prompt = 1);
    let _ = attributes!(llm_d.pd_proxy.conector = 1);
    let _ = attributes!(gen_ai.request.model = prompt);
    let _ = attributes!(gen_ai.request.model = model.clone(), gen_ai.request.model = model);
    let _ = attributes!();
}
