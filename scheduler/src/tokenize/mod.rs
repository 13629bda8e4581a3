//! Tokenization of prompts for the prefix scorer: locally with a model's
//! `tokenizer.json` (and chat template), or by a pod's vLLM `POST /tokenize`
//! when no local tokenizer is configured. Token-id prompts are used as is.

pub mod chat_template;
mod remote;

use chat_template::{ChatTemplate, TokenizerConfig};
pub use remote::VllmTokenizer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Why a prompt could not be tokenized.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// A tokenizer file could not be read or parsed.
    #[error("tokenizer files: {0}")]
    Load(String),
    /// The chat template failed to compile or render.
    #[error("chat template: {0}")]
    Template(String),
    /// Chat messages but the model has no chat template.
    #[error("the model's tokenizer has no chat template")]
    NoTemplate,
    /// The tokenizer failed on the text.
    #[error("encoding failed")]
    Encode,
    /// vLLM's `/tokenize` failed.
    #[error("vLLM /tokenize failed: {0}")]
    Remote(&'static str),
}

/// A request's prompt, as far as tokenization is concerned.
#[derive(Clone, Debug)]
pub enum Prompt {
    /// A completion prompt text.
    Text(String),
    /// Chat messages (the `messages` array of a chat completion).
    Chat(serde_json::Value),
    /// A completion prompt given as token ids.
    TokenIds(Vec<u32>),
}

/// A model's tokenizer and chat template, loaded from disk.
pub struct LocalTokenizer {
    tokenizer: tokenizers::Tokenizer,
    template: Option<ChatTemplate>,
}

impl std::fmt::Debug for LocalTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTokenizer")
            .field("has_chat_template", &self.template.is_some())
            .finish()
    }
}

impl LocalTokenizer {
    /// Loads `tokenizer.json` and, if present, `tokenizer_config.json` from `dir`.
    pub fn from_dir(dir: &Path) -> Result<LocalTokenizer, TokenizeError> {
        let tokenizer =
            tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| {
                TokenizeError::Load(format!("{}: {e}", dir.join("tokenizer.json").display()))
            })?;
        let config_path = dir.join("tokenizer_config.json");
        let config = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str::<TokenizerConfig>(&text)
                .map_err(|e| TokenizeError::Load(format!("{}: {e}", config_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenizerConfig::default(),
            Err(e) => {
                return Err(TokenizeError::Load(format!(
                    "{}: {e}",
                    config_path.display()
                )));
            }
        };
        LocalTokenizer::new(tokenizer, &config)
    }

    /// A tokenizer with the chat template of `config`.
    pub fn new(
        tokenizer: tokenizers::Tokenizer,
        config: &TokenizerConfig,
    ) -> Result<LocalTokenizer, TokenizeError> {
        Ok(LocalTokenizer {
            tokenizer,
            template: ChatTemplate::from_config(config)?,
        })
    }

    /// The prompt's token ids. Chat messages are rendered with the template
    /// (which adds the special tokens); text gets the tokenizer's own.
    pub fn encode(&self, prompt: &Prompt) -> Result<Vec<u32>, TokenizeError> {
        let (text, add_special) = match prompt {
            Prompt::TokenIds(ids) => return Ok(ids.clone()),
            Prompt::Text(text) => (std::borrow::Cow::Borrowed(text.as_str()), true),
            Prompt::Chat(messages) => {
                let template = self.template.as_ref().ok_or(TokenizeError::NoTemplate)?;
                (std::borrow::Cow::Owned(template.render(messages)?), false)
            }
        };
        let encoding = self
            .tokenizer
            .encode_fast(text.as_ref(), add_special)
            .map_err(|_| TokenizeError::Encode)?;
        Ok(encoding.get_ids().to_vec())
    }
}

/// Tokenizes prompts per model: locally when a tokenizer is configured for
/// the model, else with vLLM's `/tokenize` on a pod serving it.
#[derive(Debug, Default)]
pub struct Tokenizers {
    local: HashMap<String, Arc<LocalTokenizer>>,
    remote: Option<VllmTokenizer>,
}

impl Tokenizers {
    /// No local tokenizer; `remote` (if any) serves every model.
    pub fn new(remote: Option<VllmTokenizer>) -> Tokenizers {
        Tokenizers {
            local: HashMap::new(),
            remote,
        }
    }

    /// Uses `tokenizer` for `model`.
    pub fn with_local(mut self, model: &str, tokenizer: LocalTokenizer) -> Tokenizers {
        self.local.insert(model.to_owned(), Arc::new(tokenizer));
        self
    }

    /// The token ids of `prompt` for `model`; `pod` is the vLLM server asked
    /// when there is no local tokenizer.
    pub async fn tokens(
        &self,
        model: &str,
        prompt: &Prompt,
        pod: SocketAddr,
    ) -> Result<Vec<u32>, TokenizeError> {
        if let Prompt::TokenIds(ids) = prompt {
            return Ok(ids.clone());
        }
        if let Some(local) = self.local.get(model).cloned() {
            // Long prompts take milliseconds: keep them off the async workers.
            let prompt = prompt.clone();
            return tokio::task::spawn_blocking(move || local.encode(&prompt))
                .await
                .map_err(|_| TokenizeError::Encode)?;
        }
        match &self.remote {
            Some(remote) => remote.tokenize(pod, model, prompt).await,
            None => Err(TokenizeError::Remote("disabled")),
        }
    }
}
