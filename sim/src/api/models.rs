//! `GET /v1/models`.

use super::AppState;
use super::generation::unix_time;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

pub async fn handle(State(state): State<AppState>) -> Json<Value> {
    let config = state.engine.config();
    let created = unix_time();
    let data: Vec<Value> = config
        .served_model_names
        .iter()
        .map(|name| {
            json!({
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": config.model,
                "parent": null,
                "max_model_len": config.max_model_len,
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}
