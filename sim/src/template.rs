//! The chat template: how messages become the prompt text that is
//! tokenized.
//!
//! Each message renders as `<|role|>` and its text content on the next
//! line, each followed by a newline; with a generation prompt the text
//! ends with `<|assistant|>` and a newline.

use serde::Deserialize;

/// One chat message (the parts the simulator reads).
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, ...
    pub role: String,
    /// Text, content parts, or nothing (e.g. an assistant tool call).
    #[serde(default)]
    pub content: Option<MessageContent>,
}

/// A message's content.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts; only `text` parts carry tokens.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// Part type (`text`, `image_url`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default)]
    pub text: Option<String>,
}

/// Renders `messages` into prompt text.
pub fn render(messages: &[ChatMessage], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    for message in messages {
        out.push_str("<|");
        out.push_str(&message.role);
        out.push_str("|>\n");
        match &message.content {
            Some(MessageContent::Text(text)) => out.push_str(text),
            Some(MessageContent::Parts(parts)) => {
                let texts = parts
                    .iter()
                    .filter(|p| p.kind == "text")
                    .filter_map(|p| p.text.as_deref());
                for (i, text) in texts.enumerate() {
                    if i > 0 {
                        out.push('\n');
                    }
                    out.push_str(text);
                }
            }
            None => {}
        }
        out.push('\n');
    }
    if add_generation_prompt {
        out.push_str("<|assistant|>\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_render_with_roles_and_generation_prompt() {
        let messages: Vec<ChatMessage> = serde_json::from_str(
            r#"[{"role":"system","content":"be brief"},
                {"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url"},{"type":"text","text":"there"}]},
                {"role":"assistant"}]"#,
        )
        .unwrap();
        assert_eq!(
            render(&messages, true),
            "<|system|>\nbe brief\n<|user|>\nhi\nthere\n<|assistant|>\n\n<|assistant|>\n"
        );
        assert!(!render(&messages, false).ends_with("<|assistant|>\n\n<|assistant|>\n"));
    }
}
