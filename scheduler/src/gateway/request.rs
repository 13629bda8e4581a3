//! What the gateway reads from an OpenAI request body: the model and the
//! prompt. The body itself is forwarded unchanged.

use super::errors::ApiError;
use crate::tokenize::Prompt;
use serde::Deserialize;
use serde_json::Value;

/// The OpenAI routes the gateway serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/completions`.
    Completions,
}

impl Route {
    /// The GenAI operation name (`gen_ai.operation.name`).
    pub fn operation(self) -> &'static str {
        match self {
            Route::ChatCompletions => "chat",
            Route::Completions => "text_completion",
        }
    }

    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Route::ChatCompletions => "/v1/chat/completions",
            Route::Completions => "/v1/completions",
        }
    }
}

/// The fields of a request the gateway uses.
#[derive(Debug)]
pub struct InferenceRequest {
    /// The model asked for.
    pub model: String,
    /// The prompt (for a batch of completion prompts, the first one).
    pub prompt: Prompt,
    /// vLLM's `cache_salt`, when it is a non-empty string (vLLM refuses
    /// any other value, so the pod answers those).
    pub cache_salt: Option<String>,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    messages: Option<Value>,
    #[serde(default)]
    prompt: Option<Value>,
    #[serde(default)]
    cache_salt: Option<Value>,
}

/// Parses `body` for `route`.
pub fn parse(route: Route, body: &[u8]) -> Result<InferenceRequest, ApiError> {
    let body: Body = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "invalid JSON body at line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    let model = match body.model {
        Some(Value::String(model)) if !model.is_empty() => model,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`model` must be a non-empty string".to_owned(),
            ));
        }
        None => return Err(ApiError::BadRequest("`model` is required".to_owned())),
    };
    let prompt = match route {
        Route::ChatCompletions => match body.messages {
            Some(messages @ Value::Array(_)) => Prompt::Chat(messages),
            _ => {
                return Err(ApiError::BadRequest(
                    "`messages` must be an array".to_owned(),
                ));
            }
        },
        Route::Completions => completion_prompt(body.prompt)?,
    };
    let cache_salt = match body.cache_salt {
        Some(Value::String(salt)) if !salt.is_empty() => Some(salt),
        _ => None,
    };
    Ok(InferenceRequest {
        model,
        prompt,
        cache_salt,
    })
}

fn completion_prompt(prompt: Option<Value>) -> Result<Prompt, ApiError> {
    let bad = || {
        ApiError::BadRequest(
            "`prompt` must be a string, a list of token ids, or a list of those".to_owned(),
        )
    };
    match prompt {
        Some(Value::String(text)) => Ok(Prompt::Text(text)),
        Some(Value::Array(items)) => match items.first() {
            Some(Value::String(text)) => Ok(Prompt::Text(text.clone())),
            Some(Value::Array(ids)) => token_ids(ids).map(Prompt::TokenIds).ok_or_else(bad),
            Some(Value::Number(_)) => token_ids(&items).map(Prompt::TokenIds).ok_or_else(bad),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

fn token_ids(items: &[Value]) -> Option<Vec<u32>> {
    items
        .iter()
        .map(|v| v.as_u64().and_then(|id| u32::try_from(id).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_model_and_prompt_shapes() {
        let r = parse(Route::Completions, br#"{"model":"m","prompt":[1,2,3]}"#).unwrap();
        assert!(matches!(r.prompt, Prompt::TokenIds(ref ids) if ids == &[1, 2, 3]));
        let r = parse(Route::Completions, br#"{"model":"m","prompt":[[4,5]]}"#).unwrap();
        assert!(matches!(r.prompt, Prompt::TokenIds(ref ids) if ids == &[4, 5]));
        let r = parse(Route::Completions, br#"{"model":"m","prompt":["a","b"]}"#).unwrap();
        assert!(matches!(r.prompt, Prompt::Text(ref t) if t == "a"));
        let r = parse(
            Route::ChatCompletions,
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(r.model, "m");
        assert!(matches!(r.prompt, Prompt::Chat(_)));
    }

    #[test]
    fn reads_a_cache_salt_only_when_vllm_would_accept_it() {
        let salt = |body: &[u8]| parse(Route::Completions, body).unwrap().cache_salt;
        assert_eq!(
            salt(br#"{"model":"m","prompt":"x","cache_salt":"tenant-a"}"#).as_deref(),
            Some("tenant-a")
        );
        for ignored in [
            &br#"{"model":"m","prompt":"x"}"#[..],
            br#"{"model":"m","prompt":"x","cache_salt":null}"#,
            br#"{"model":"m","prompt":"x","cache_salt":""}"#,
            br#"{"model":"m","prompt":"x","cache_salt":7}"#,
        ] {
            assert_eq!(salt(ignored), None);
        }
    }

    #[test]
    fn rejects_bad_bodies() {
        for (route, body) in [
            (Route::Completions, &b"{not json"[..]),
            (Route::Completions, br#"{"prompt":"x"}"#),
            (Route::Completions, br#"{"model":3,"prompt":"x"}"#),
            (Route::Completions, br#"{"model":"m","prompt":[-1]}"#),
            (Route::Completions, br#"{"model":"m"}"#),
            (Route::ChatCompletions, br#"{"model":"m","messages":"hi"}"#),
            (Route::ChatCompletions, br#"[1]"#),
        ] {
            let err = parse(route, body).unwrap_err();
            assert!(matches!(err, ApiError::BadRequest(_)), "{err}");
        }
    }
}
