//! Rule 6: `err` records a static `error.type`, so the error type must
//! implement `ErrorType`, and the function must return a `Result`.
use llmd_runtime::traced_span;

#[derive(Debug)]
struct PlainError;

#[traced_span("llm_d.kv_cache.get_scores", err)]
fn sync_plain() -> Result<(), PlainError> {
    Ok(())
}

#[traced_span("llm_d.kv_cache.get_scores", err)]
async fn async_plain() -> Result<(), PlainError> {
    Ok(())
}

#[traced_span("llm_d.kv_cache.get_scores", err)]
fn not_a_result() -> u32 {
    1
}

#[traced_span("llm_d.kv_cache.get_scores", err)]
fn returns_nothing() {}

#[traced_span("llm_d.kv_cache.get_scores", parent = 5)]
fn bad_parent() {}

fn main() {}
