//! Renders chat messages to the prompt text a model sees, with the Jinja
//! chat template of its `tokenizer_config.json`.

use super::TokenizeError;
use minijinja::{Environment, ErrorKind, Value};
use serde::Deserialize;

const TEMPLATE_NAME: &str = "chat";

/// The fields of `tokenizer_config.json` used here.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TokenizerConfig {
    /// The chat template: one Jinja source, or a list of named ones.
    #[serde(default)]
    pub chat_template: Option<TemplateField>,
    /// The beginning-of-sequence token text.
    #[serde(default, deserialize_with = "token_text")]
    pub bos_token: Option<String>,
    /// The end-of-sequence token text.
    #[serde(default, deserialize_with = "token_text")]
    pub eos_token: Option<String>,
}

/// `chat_template` as found in the wild.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum TemplateField {
    /// A single template.
    Single(String),
    /// Named templates; `default` is used.
    Named(Vec<NamedTemplate>),
}

/// One entry of a list of named templates.
#[derive(Clone, Debug, Deserialize)]
pub struct NamedTemplate {
    /// The template's name.
    pub name: String,
    /// Its source.
    pub template: String,
}

/// Special tokens are either plain strings or `{"content": "..."}` objects.
fn token_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Token {
        Text(String),
        Added { content: String },
    }
    Ok(Option::<Token>::deserialize(d)?.map(|t| match t {
        Token::Text(s) | Token::Added { content: s } => s,
    }))
}

/// A compiled chat template with the special tokens it may refer to.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Compiles the template of `config`, if it has one.
    pub fn from_config(config: &TokenizerConfig) -> Result<Option<ChatTemplate>, TokenizeError> {
        let source = match &config.chat_template {
            None => return Ok(None),
            Some(TemplateField::Single(s)) => s.clone(),
            Some(TemplateField::Named(list)) => match list.iter().find(|t| t.name == "default") {
                Some(t) => t.template.clone(),
                None => return Ok(None),
            },
        };
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned(TEMPLATE_NAME, source)
            .map_err(|e| TokenizeError::Template(e.to_string()))?;
        Ok(Some(ChatTemplate {
            env,
            bos_token: config.bos_token.clone().unwrap_or_default(),
            eos_token: config.eos_token.clone().unwrap_or_default(),
        }))
    }

    /// Renders `messages` (OpenAI chat messages) with a generation prompt.
    pub fn render(&self, messages: &serde_json::Value) -> Result<String, TokenizeError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TokenizeError::Template(e.to_string()))?;
        template
            .render(minijinja::context! {
                messages => Value::from_serialize(messages),
                add_generation_prompt => true,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| TokenizeError::Template(e.kind().to_string()))
    }
}
