//! Rule 5: the span name is a well-formed literal in a known namespace.
use llmd_runtime::traced_span;

const NAME: &str = "llm_d.kv_cache.get_scores";

#[traced_span(NAME)]
fn not_a_literal() {}

#[traced_span("LLM-D.Kv Cache")]
fn not_well_formed() {}

#[traced_span("myapp.enqueue")]
fn not_declared() {}

#[traced_span("gateway.requests")]
fn near_a_registry_name() {}

#[traced_span("gen_ai.prompt")]
fn content_key_as_name() {}

fn main() {}
