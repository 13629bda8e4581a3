//! The HTTP API: vLLM's OpenAI-compatible endpoints, `/tokenize`,
//! `/health` and `/metrics`.

mod chat;
mod completions;
pub mod error;
mod generation;
mod metrics;
mod models;
mod request;
mod tokenize;

use crate::engine::Engine;
use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
}

/// All routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/completions", post(completions::handle))
        .route("/v1/models", get(models::handle))
        .route("/tokenize", post(tokenize::handle))
        .route("/health", get(health))
        .route("/metrics", get(metrics::handle))
        .with_state(state)
}

/// vLLM answers 200 with an empty body while the engine is alive.
async fn health() {}
