//! Scanning responses as they stream: token usage (for span attributes) and,
//! after a prefill, `usage.prompt_tokens_details.cached_tokens` set to the
//! prefiller's cached tokens (what llm-d does).
//!
//! Only `data:` lines that contain `"usage"` are parsed; every other byte is
//! forwarded as it arrived. Nothing is kept but counts.

use crate::json_body::JsonObject;
use bytes::{Bytes, BytesMut};
use memchr::memmem;

/// The longest incomplete line kept for scanning; a longer one is forwarded
/// unscanned.
const MAX_LINE: usize = 1 << 20;

/// Token counts reported by a response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// `prompt_tokens` (or `input_tokens`).
    pub input_tokens: Option<i64>,
    /// `completion_tokens` (or `output_tokens`).
    pub output_tokens: Option<i64>,
    /// `prompt_tokens_details.cached_tokens` as forwarded to the client.
    pub cached_tokens: Option<i64>,
}

impl Usage {
    fn observe(&mut self, usage: &JsonObject) {
        if let Some(n) = usage
            .get_i64("prompt_tokens")
            .or_else(|| usage.get_i64("input_tokens"))
        {
            self.input_tokens = Some(n);
        }
        if let Some(n) = usage
            .get_i64("completion_tokens")
            .or_else(|| usage.get_i64("output_tokens"))
        {
            self.output_tokens = Some(n);
        }
        let details = usage
            .get_object("prompt_tokens_details")
            .or_else(|| usage.get_object("input_tokens_details"));
        if let Some(n) = details.and_then(|d| d.get_i64("cached_tokens")) {
            self.cached_tokens = Some(n);
        }
    }
}

/// Reads the usage of a whole JSON response and, when `cached_tokens` is
/// given, returns the body with it set.
pub fn scan_json(body: &Bytes, cached_tokens: Option<i64>) -> (Option<Bytes>, Usage) {
    let mut usage = Usage::default();
    if memmem::find(body, b"\"usage\"").is_none() {
        return (None, usage);
    }
    let Ok(mut object) = JsonObject::parse(body) else {
        return (None, usage);
    };
    let rewritten = process_object(&mut object, cached_tokens, &mut usage);
    (rewritten.then(|| object.to_bytes()), usage)
}

/// Looks at the usage of a parsed response object (top level, or under
/// `response` for the Responses API) and rewrites cached tokens at the top
/// level. Returns whether the object changed.
fn process_object(object: &mut JsonObject, cached_tokens: Option<i64>, usage: &mut Usage) -> bool {
    let Some(mut top) = object.get_object("usage") else {
        if let Some(inner) = object
            .get_object("response")
            .and_then(|r| r.get_object("usage"))
        {
            usage.observe(&inner);
        }
        return false;
    };
    let Some(cached) = cached_tokens else {
        usage.observe(&top);
        return false;
    };
    let mut details = top.get_object("prompt_tokens_details").unwrap_or_default();
    details.set("cached_tokens", &cached);
    top.set_object("prompt_tokens_details", &details);
    object.set_object("usage", &top);
    usage.observe(&top);
    true
}

/// Scans a server-sent-event stream chunk by chunk.
#[derive(Debug, Default)]
pub struct SseScanner {
    /// The incomplete last line of the chunks seen so far.
    tail: Vec<u8>,
    /// Inside a line too long to scan: forward it until its newline.
    skipping: bool,
    /// Set cached tokens to this (then incomplete lines are held back).
    cached_tokens: Option<i64>,
    /// Usage seen so far.
    pub usage: Usage,
    /// Number of `data:` events seen, `[DONE]` excluded.
    pub data_events: u64,
}

impl SseScanner {
    /// A scanner that only observes: every chunk is forwarded as it is.
    pub fn observe() -> SseScanner {
        SseScanner::default()
    }

    /// A scanner that also sets `usage.prompt_tokens_details.cached_tokens`.
    pub fn rewriting(cached_tokens: i64) -> SseScanner {
        SseScanner {
            cached_tokens: Some(cached_tokens),
            ..SseScanner::default()
        }
    }

    /// Scans `chunk` and returns the bytes to forward now.
    pub fn push(&mut self, chunk: Bytes) -> Bytes {
        let mut out = BytesMut::new();
        let rewriting = self.cached_tokens.is_some();
        let mut start = 0;
        for newline in memchr::memchr_iter(b'\n', &chunk) {
            let segment = &chunk[start..=newline];
            start = newline + 1;
            if std::mem::take(&mut self.skipping) {
                if rewriting {
                    out.extend_from_slice(segment);
                }
                continue;
            }
            let joined;
            let line = if self.tail.is_empty() {
                segment
            } else {
                let mut tail = std::mem::take(&mut self.tail);
                tail.extend_from_slice(segment);
                joined = tail;
                &joined[..]
            };
            let replacement = self.on_line(&line[..line.len() - 1]);
            if rewriting {
                match replacement {
                    Some(new_line) => {
                        out.extend_from_slice(&new_line);
                        out.extend_from_slice(b"\n");
                    }
                    None => out.extend_from_slice(line),
                }
            }
        }
        let rest = &chunk[start..];
        if self.skipping || self.tail.len() + rest.len() > MAX_LINE {
            let held = std::mem::take(&mut self.tail);
            if rewriting {
                out.extend_from_slice(&held);
                out.extend_from_slice(rest);
            }
            self.skipping = true;
        } else {
            self.tail.extend_from_slice(rest);
        }
        if rewriting { out.freeze() } else { chunk }
    }

    /// Ends the stream: scans a last line without newline and returns what
    /// is still held back.
    pub fn finish(&mut self) -> Bytes {
        let line = std::mem::take(&mut self.tail);
        if line.is_empty() || std::mem::take(&mut self.skipping) {
            return Bytes::new();
        }
        let replacement = self.on_line(&line);
        match self.cached_tokens {
            Some(_) => Bytes::from(replacement.unwrap_or(line)),
            None => Bytes::new(),
        }
    }

    /// Looks at one complete line (without its newline); returns its
    /// replacement when the usage was rewritten.
    fn on_line(&mut self, raw: &[u8]) -> Option<Vec<u8>> {
        let (line, cr) = match raw.strip_suffix(b"\r") {
            Some(line) => (line, true),
            None => (raw, false),
        };
        let payload = line.strip_prefix(b"data:")?;
        let payload = payload.strip_prefix(b" ").unwrap_or(payload);
        if payload == b"[DONE]" {
            return None;
        }
        self.data_events += 1;
        memmem::find(payload, b"\"usage\"")?;
        let mut object = JsonObject::parse(&Bytes::copy_from_slice(payload)).ok()?;
        if !process_object(&mut object, self.cached_tokens, &mut self.usage) {
            return None;
        }
        let mut new_line = b"data: ".to_vec();
        new_line.extend_from_slice(&object.to_bytes());
        if cr {
            new_line.push(b'\r');
        }
        Some(new_line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":64,\"completion_tokens\":3,\"prompt_tokens_details\":null}}\n\n",
        "data: [DONE]\n\n"
    );

    fn run(mut scanner: SseScanner, pieces: &[&[u8]]) -> (String, SseScanner) {
        let mut out = Vec::new();
        for piece in pieces {
            out.extend_from_slice(&scanner.push(Bytes::copy_from_slice(piece)));
        }
        out.extend_from_slice(&scanner.finish());
        (String::from_utf8(out).unwrap(), scanner)
    }

    #[test]
    fn observing_forwards_every_byte_and_reads_usage_across_splits() {
        let bytes = STREAM.as_bytes();
        for split in 0..bytes.len() {
            let (out, scanner) = run(SseScanner::observe(), &[&bytes[..split], &bytes[split..]]);
            assert_eq!(out, STREAM, "split at {split}");
            assert_eq!(scanner.usage.input_tokens, Some(64));
            assert_eq!(scanner.usage.output_tokens, Some(3));
            assert_eq!(scanner.data_events, 2);
        }
    }

    #[test]
    fn rewriting_sets_cached_tokens_across_splits() {
        let bytes = STREAM.as_bytes();
        let expected = STREAM.replace(
            "\"prompt_tokens_details\":null",
            "\"prompt_tokens_details\":{\"cached_tokens\":49}",
        );
        for split in 0..bytes.len() {
            let (out, scanner) = run(
                SseScanner::rewriting(49),
                &[&bytes[..split], &bytes[split..]],
            );
            assert_eq!(out, expected, "split at {split}");
            assert_eq!(scanner.usage.cached_tokens, Some(49));
        }
    }

    #[test]
    fn rewriting_keeps_other_detail_fields_and_crlf() {
        let input = "data: {\"usage\":{\"prompt_tokens_details\":{\"audio_tokens\":0,\"cached_tokens\":1}}}\r\n\r\n";
        let (out, _) = run(SseScanner::rewriting(5), &[input.as_bytes()]);
        assert_eq!(
            out,
            "data: {\"usage\":{\"prompt_tokens_details\":{\"audio_tokens\":0,\"cached_tokens\":5}}}\r\n\r\n"
        );
    }

    #[test]
    fn a_last_line_without_newline_is_not_lost() {
        let input = "data: {\"usage\":{\"prompt_tokens\":2}}";
        let (out, scanner) = run(SseScanner::rewriting(1), &[input.as_bytes()]);
        assert_eq!(
            out,
            "data: {\"usage\":{\"prompt_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":1}}}"
        );
        assert_eq!(scanner.usage.input_tokens, Some(2));
        let (out, _) = run(SseScanner::observe(), &[b"data: x"]);
        assert_eq!(out, "data: x");
    }

    #[test]
    fn json_bodies_are_rewritten_in_place() {
        let body = &Bytes::from_static(
            br#"{"id":"c","usage":{"prompt_tokens":10,"completion_tokens":2}}"#,
        );
        let (new, usage) = scan_json(body, Some(7));
        assert_eq!(
            String::from_utf8(new.unwrap().to_vec()).unwrap(),
            r#"{"id":"c","usage":{"prompt_tokens":10,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":7}}}"#
        );
        assert_eq!(
            (usage.input_tokens, usage.output_tokens),
            (Some(10), Some(2))
        );
        let (new, usage) = scan_json(body, None);
        assert!(new.is_none());
        assert_eq!(usage.output_tokens, Some(2));
        let broken = Bytes::from_static(b"not json \"usage\"");
        assert_eq!(scan_json(&broken, Some(1)).0, None);
    }

    #[test]
    fn responses_api_usage_is_observed() {
        let line = "event: response.completed\ndata: {\"response\":{\"usage\":{\"input_tokens\":4,\"output_tokens\":9}}}\n\n";
        let (_, scanner) = run(SseScanner::observe(), &[line.as_bytes()]);
        assert_eq!(scanner.usage.input_tokens, Some(4));
        assert_eq!(scanner.usage.output_tokens, Some(9));
    }
}
