//! SGLang: one body with `bootstrap_host`/`bootstrap_port`/`bootstrap_room`
//! sent to both servers; the prefill is fired asynchronously and the decode
//! runs at the same time.

use super::PdRequest;
use crate::decode;
use crate::prefill::prefill;
use axum::response::Response;
use llmd_runtime::{Context, FutureExt};

/// Runs the sglang flow.
pub async fn run(request: PdRequest) -> Response {
    let mut body = request.body.clone();
    body.set("bootstrap_host", request.target.host());
    body.set(
        "bootstrap_port",
        &request.listener.shared.config.sglang_bootstrap_port,
    );
    body.set("bootstrap_room", &bootstrap_room());

    let call = request.prefill_call(&body, true);
    tokio::spawn(
        async move {
            if let Err(failure) = prefill(call).await {
                tracing::warn!(error = %failure, "sglang prefill failed");
            }
        }
        .with_context(Context::current()),
    );
    decode::run(request.decode_plan(&body, None, None)).await
}

/// A random non-negative room id, shared by both legs.
fn bootstrap_room() -> i64 {
    let random = uuid::Uuid::new_v4().as_u128();
    i64::try_from((random as u64) >> 1).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rooms_are_non_negative_and_vary() {
        let a = super::bootstrap_room();
        let b = super::bootstrap_room();
        assert!(a >= 0 && b >= 0);
        assert_ne!(a, b);
    }
}
