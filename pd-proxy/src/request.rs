//! The inference request as the P/D handler sees it: which API, its body
//! (parsed once, within the size limit) and its request id.

use crate::errors::ProxyError;
use crate::json_body::{JsonObject, ParseError};
use axum::body::Body;
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use llmd_runtime::{AttributeEnum, Identifier};

/// The request id header, shared by both legs.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The OpenAI APIs that go through the P/D handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `/v1/chat/completions`.
    ChatCompletions,
    /// `/v1/completions`.
    Completions,
    /// `/v1/responses`.
    Responses,
}

impl Api {
    /// The API of a path, if the P/D handler serves it.
    pub fn of_path(path: &str) -> Option<Api> {
        match path {
            "/v1/chat/completions" => Some(Api::ChatCompletions),
            "/v1/completions" => Some(Api::Completions),
            "/v1/responses" => Some(Api::Responses),
            _ => None,
        }
    }

    /// The token-limit fields set to 1 for a prefill: the first always,
    /// the others only when the client sent them.
    pub fn token_limit_fields(self) -> &'static [&'static str] {
        match self {
            Api::ChatCompletions | Api::Completions => &["max_tokens", "max_completion_tokens"],
            Api::Responses => &["max_output_tokens"],
        }
    }

    /// The API's path.
    pub fn path(self) -> &'static str {
        match self {
            Api::ChatCompletions => "/v1/chat/completions",
            Api::Completions => "/v1/completions",
            Api::Responses => "/v1/responses",
        }
    }

    /// `gen_ai.operation.name` of the API.
    pub fn operation(self) -> &'static str {
        match self {
            Api::ChatCompletions | Api::Responses => "chat",
            Api::Completions => "text_completion",
        }
    }
}

impl AttributeEnum for Api {
    fn label(&self) -> &'static str {
        self.path()
    }
}

/// Reads the whole body, at most `limit` bytes, and parses it as a JSON object.
pub async fn read_json(body: Body, limit: usize) -> Result<JsonObject, ProxyError> {
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => {
            return Err(ProxyError::BodyTooLarge { limit });
        }
        Err(_) => return Err(ProxyError::BodyRead),
    };
    JsonObject::parse(&bytes).map_err(|error| match error {
        ParseError::Syntax(message) => ProxyError::InvalidJson(message),
        ParseError::NotAnObject => ProxyError::NotAnObject,
    })
}

/// The client's `X-Request-Id`, or a new one set in `headers`.
pub fn ensure_request_id(headers: &mut HeaderMap) -> Identifier {
    if let Some(id) = headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok())
        && !id.trim().is_empty()
    {
        return Identifier::new(id.trim());
    }
    let id = uuid::Uuid::new_v4().to_string();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    Identifier::new(&id)
}

/// The model the request names, as a span attribute.
pub fn model(body: &JsonObject) -> Option<Identifier> {
    body.get_str("model").map(|m| Identifier::recurring(&m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn body_limit_and_shape_are_enforced() {
        let ok = read_json(Body::from("{\"a\":1}"), 100).await.unwrap();
        assert_eq!(ok.get_i64("a"), Some(1));
        assert!(matches!(
            read_json(Body::from(vec![b' '; 101]), 100).await,
            Err(ProxyError::BodyTooLarge { limit: 100 })
        ));
        assert!(matches!(
            read_json(Body::from("[]"), 100).await,
            Err(ProxyError::NotAnObject)
        ));
        assert!(matches!(
            read_json(Body::from("{"), 100).await,
            Err(ProxyError::InvalidJson(_))
        ));
    }

    #[test]
    fn request_id_is_kept_or_made() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc"));
        assert_eq!(ensure_request_id(&mut headers).as_str(), "abc");
        let mut headers = HeaderMap::new();
        let made = ensure_request_id(&mut headers);
        assert_eq!(headers[REQUEST_ID_HEADER], made.as_str());
        assert_eq!(made.as_str().len(), 36);
    }

    #[test]
    fn only_openai_inference_paths_are_p_d() {
        assert_eq!(
            Api::of_path("/v1/chat/completions"),
            Some(Api::ChatCompletions)
        );
        assert_eq!(Api::of_path("/v1/models"), None);
        assert_eq!(Api::Responses.token_limit_fields(), &["max_output_tokens"]);
    }
}
