//! The DSL's own errors.
use llmd_runtime::{ErrorType, record, traced_span};

#[traced_span]
fn missing_name() {}

#[traced_span(kind = server)]
fn option_before_name() {}

#[traced_span("llm_d.kv_cache.get_scores", level = "info")]
fn unknown_option() {}

#[traced_span("llm_d.kv_cache.get_scores", kind = server, kind = client)]
fn duplicate_option() {}

#[traced_span("llm_d.kv_cache.get_scores", kind = outbound)]
fn bad_kind() {}

#[traced_span("llm_d.kv_cache.get_scores", err = true)]
fn err_with_value() {}

#[traced_span("llm_d.kv_cache.get_scores", attrs = 1)]
fn attrs_without_list() {}

#[traced_span("llm_d.kv_cache.get_scores", attrs(llm_d.kv_cache.pod_count = 1, llm_d.kv_cache.pod_count = 2))]
fn duplicate_attribute() {}

#[traced_span("llm_d.kv_cache.get_scores")]
struct NotAFunction;

trait Scorer {
    #[traced_span("llm_d.kv_cache.get_scores")]
    fn no_body(&self);
}

#[traced_span("llm_d.kv_cache.get_scores")]
const fn constant() {}

#[derive(ErrorType)]
union NotAnEnum {
    code: u32,
}

fn in_body() {
    record!();
}

fn main() {}
