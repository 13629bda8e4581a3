//! What chat and completion requests share: body parsing, the model
//! check, the request id and the sampling parameters.

use super::error::ApiError;
use crate::config::SimConfig;
use http::HeaderMap;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Parses a JSON body, answering vLLM's 400 when it does not fit `T`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))
}

/// Refuses a model name this server does not serve (no name means the
/// default model, as in vLLM).
pub fn check_model(config: &SimConfig, model: Option<&str>) -> Result<(), ApiError> {
    match model {
        Some(name) if !config.served_model_names.iter().any(|n| n == name) => {
            Err(ApiError::unknown_model(name))
        }
        _ => Ok(()),
    }
}

/// `stream_options` of a streamed request.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// The parameters chat and completion requests have in common.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommonParams {
    /// Requested model.
    #[serde(default)]
    pub model: Option<String>,
    /// Output limit.
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Number of choices (only 1 is simulated).
    #[serde(default)]
    pub n: Option<u32>,
    /// P/D parameters.
    #[serde(default)]
    pub kv_transfer_params: Option<Value>,
    /// Client-chosen request id (vLLM's `request_id` field).
    #[serde(default)]
    pub request_id: Option<String>,
    /// vLLM's `cache_salt`: requests share prefix-cache blocks only with
    /// requests of the same salt. Kept as JSON until [`CommonParams::check`]
    /// so that a value of the wrong type gets vLLM's own message.
    #[serde(default)]
    pub cache_salt: Option<Value>,
}

impl CommonParams {
    /// Refuses what the simulator does not do, and a `cache_salt` vLLM
    /// refuses.
    pub fn check(&self, config: &SimConfig) -> Result<(), ApiError> {
        check_model(config, self.model.as_deref())?;
        self.salt()?;
        match self.n {
            Some(n) if n != 1 => Err(ApiError::bad_request(
                "n other than 1 is not supported by the simulator",
            )),
            _ => Ok(()),
        }
    }

    /// The request's `cache_salt`: none when absent or null, an error
    /// (vLLM's) when it is not a non-empty string.
    pub fn salt(&self) -> Result<Option<&str>, ApiError> {
        match &self.cache_salt {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(salt)) if !salt.is_empty() => Ok(Some(salt)),
            Some(_) => Err(ApiError::bad_request(
                "Parameter 'cache_salt' must be a non-empty string if provided.",
            )),
        }
    }
}

/// The base request id: `X-Request-Id`, else the body's `request_id`,
/// else a random one (vLLM's order).
pub fn base_request_id(headers: &HeaderMap, body_id: Option<&str>) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .or(body_id.filter(|v| !v.is_empty()))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}
