//! A JSON object kept as its members' raw text, in their order: the proxy
//! changes only the members it must, and every other byte of a member's
//! value is forwarded exactly as the client sent it.
//!
//! Members are slices of the body they were parsed from (`Bytes` sharing
//! its buffer), so parsing allocates only the member list, and copying an
//! object (one per leg of a P/D request) copies no member text however
//! large the prompt.

use bytes::Bytes;
use serde::Serialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::error::Category;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// Up to this many members, duplicate keys are found by comparing every
/// pair (cheaper than hashing for the handful of members a request has);
/// beyond, through a map, so that the time stays linear in the members.
const PAIRWISE_DUPLICATES: usize = 16;

/// Room for members made when an object is parsed: requests and responses
/// have a handful of top-level members, so most parses allocate the list
/// once.
const PARSED_ROOM: usize = 8;

/// Room for members a copy gets beyond the original's: a leg of a P/D
/// request sets a few (its `kv_transfer_params`, token limits) on a copy
/// of the client's body.
const COPY_ROOM: usize = 4;

/// The text of one JSON value, valid by construction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawJson(Bytes);

impl RawJson {
    /// `text` if it is exactly one JSON value.
    pub fn new(text: Bytes) -> Option<RawJson> {
        serde_json::from_slice::<de::IgnoredAny>(&text).ok()?;
        Some(RawJson(text))
    }

    /// The JSON form of `value`; `None` if it cannot be serialized.
    fn of<T: Serialize + ?Sized>(value: &T) -> Option<RawJson> {
        serde_json::to_vec(value)
            .ok()
            .map(|text| RawJson(Bytes::from(text)))
    }

    /// The text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// An ordered JSON object whose member values are raw JSON text.
#[derive(Debug, Default)]
pub struct JsonObject {
    /// Each key (unescaped, UTF-8) and its value's text.
    members: Vec<(Bytes, RawJson)>,
}

impl Clone for JsonObject {
    /// A copy sharing the members' text, with room for a few more members.
    fn clone(&self) -> JsonObject {
        let mut members = Vec::with_capacity(self.members.len() + COPY_ROOM);
        members.extend(self.members.iter().cloned());
        JsonObject { members }
    }
}

/// Why bytes are not a JSON object.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all.
    #[error("{0}")]
    Syntax(String),
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
}

impl JsonObject {
    /// Parses `bytes` as a JSON object, in one pass; the members share
    /// `bytes`. A key given more than once keeps its first place and its
    /// last value.
    pub fn parse(bytes: &Bytes) -> Result<JsonObject, ParseError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let members = deserializer
            .deserialize_map(Members { source: bytes })
            .and_then(|members| deserializer.end().map(|()| members))
            .map_err(|error| match error.classify() {
                // Members are raw values and keys strings, so the only
                // type error is a document that is not an object.
                Category::Data => ParseError::NotAnObject,
                _ => ParseError::Syntax(error.to_string()),
            })?;
        Ok(JsonObject { members })
    }

    /// The raw value of member `key`.
    pub fn get(&self, key: &str) -> Option<&RawJson> {
        self.members
            .iter()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v)
    }

    /// Whether member `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Member `key` as a bool, if it is one.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)
            .and_then(|v| serde_json::from_slice(v.as_bytes()).ok())
    }

    /// Member `key` as an integer, if it is one.
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key)
            .and_then(|v| serde_json::from_slice(v.as_bytes()).ok())
    }

    /// Member `key` as a string, if it is one.
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.get(key)
            .and_then(|v| serde_json::from_slice(v.as_bytes()).ok())
    }

    /// Member `key` parsed as a nested object (sharing this one's text),
    /// if it is one.
    pub fn get_object(&self, key: &str) -> Option<JsonObject> {
        self.get(key).and_then(|v| JsonObject::parse(&v.0).ok())
    }

    /// Sets member `key` to raw JSON `value`, in place if present, else at the end.
    pub fn set_raw(&mut self, key: &'static str, value: RawJson) {
        match self.members.iter_mut().find(|(k, _)| k == key.as_bytes()) {
            Some((_, slot)) => *slot = value,
            None => self
                .members
                .push((Bytes::from_static(key.as_bytes()), value)),
        }
    }

    /// Sets member `key` to the JSON form of `value`.
    pub fn set<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        if let Some(raw) = RawJson::of(value) {
            self.set_raw(key, raw);
        }
    }

    /// Sets member `key` to `object`.
    pub fn set_object(&mut self, key: &'static str, object: &JsonObject) {
        self.set_raw(key, RawJson(object.to_bytes()));
    }

    /// Removes member `key`.
    pub fn remove(&mut self, key: &str) {
        self.members.retain(|(k, _)| k != key.as_bytes());
    }

    /// The object as JSON text: each key escaped as JSON asks, each value
    /// as it is.
    pub fn to_bytes(&self) -> Bytes {
        // Exact when no key needs escaping, so that the buffer becomes the
        // `Bytes` as it is: braces, each member's quoted key, colon and
        // value, and the commas between members.
        let members: usize = self
            .members
            .iter()
            .map(|(k, v)| k.len() + v.0.len() + 3)
            .sum();
        let commas = self.members.len().saturating_sub(1);
        let mut out = Vec::with_capacity(2 + members + commas);
        out.push(b'{');
        for (index, (key, value)) in self.members.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            write_key(&mut out, key);
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'}');
        Bytes::from(out)
    }
}

/// Appends `key` as a JSON string. Keys are written as they are unless a
/// byte needs escaping (a quote, a backslash or a control character: the
/// bytes JSON escapes), which is rare in request bodies. Keys are UTF-8 by
/// construction; one that somehow is not is written as an empty string
/// rather than as bad JSON.
fn write_key(out: &mut Vec<u8>, key: &[u8]) {
    if key
        .iter()
        .all(|&byte| byte >= 0x20 && byte != b'"' && byte != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(key);
        out.push(b'"');
        return;
    }
    let key = std::str::from_utf8(key).unwrap_or_default();
    if serde_json::to_writer(&mut *out, key).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// Reads an object's members as slices of `source`, the text parsed.
struct Members<'s> {
    source: &'s Bytes,
}

impl<'de> Visitor<'de> for Members<'_> {
    type Value = Vec<(Bytes, RawJson)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(access.size_hint().unwrap_or(PARSED_ROOM));
        while let Some(key) = access.next_key::<Key<'de>>()? {
            let value: &'de RawValue = access.next_value()?;
            let key = match key.0 {
                Cow::Borrowed(key) => self.slice(key.as_bytes()),
                Cow::Owned(key) => Bytes::from(key),
            };
            members.push((key, RawJson(self.slice(value.get().as_bytes()))));
        }
        merge_duplicates(&mut members);
        Ok(members)
    }
}

impl Members<'_> {
    /// `part` of the source text as a slice sharing its buffer, or a copy
    /// when it is not part of it (never, as parsing borrows from it).
    fn slice(&self, part: &[u8]) -> Bytes {
        let start = (part.as_ptr() as usize).wrapping_sub(self.source.as_ptr() as usize);
        match start.checked_add(part.len()) {
            Some(end) if end <= self.source.len() => self.source.slice(start..end),
            _ => Bytes::copy_from_slice(part),
        }
    }
}

/// An object key: borrowed from the text when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Merges members whose key was given before into that first member,
/// which takes their value (the last one given wins, as in Python's `json`
/// and vLLM); linear in the members.
fn merge_duplicates(members: &mut Vec<(Bytes, RawJson)>) {
    let mut merges = Vec::new();
    if members.len() <= PAIRWISE_DUPLICATES {
        for later in 1..members.len() {
            if let Some(first) = members[..later]
                .iter()
                .position(|(k, _)| *k == members[later].0)
            {
                merges.push((first, later));
            }
        }
    } else {
        let mut first_of: HashMap<&[u8], usize> = HashMap::with_capacity(members.len());
        for (index, (key, _)) in members.iter().enumerate() {
            let first = *first_of.entry(key).or_insert(index);
            if first != index {
                merges.push((first, index));
            }
        }
    }
    if merges.is_empty() {
        return;
    }
    for &(first, later) in &merges {
        let (head, tail) = members.split_at_mut(later);
        std::mem::swap(&mut head[first].1, &mut tail[0].1);
    }
    let mut merged = merges.iter().map(|&(_, later)| later).peekable();
    let mut index = 0;
    members.retain(|_| {
        let keep = merged.next_if_eq(&index).is_none();
        index += 1;
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &[u8]) -> Result<JsonObject, ParseError> {
        JsonObject::parse(&Bytes::copy_from_slice(json))
    }

    fn text(object: &JsonObject) -> String {
        String::from_utf8(object.to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn untouched_members_keep_their_exact_text_and_order() {
        let input = br#"{"model":"m","temperature":1.50,"big":123456789012345678901234567890,"messages":[{"role":"user","content":"hi \u00e9"}],"stream":true}"#;
        let mut object = parse(input).unwrap();
        object.set("stream", &false);
        object.set("max_tokens", &1);
        let out = text(&object);
        assert_eq!(
            out,
            r#"{"model":"m","temperature":1.50,"big":123456789012345678901234567890,"messages":[{"role":"user","content":"hi \u00e9"}],"stream":false,"max_tokens":1}"#
        );
    }

    #[test]
    fn escaped_keys_are_read_unescaped_and_written_escaped() {
        let object = parse(br#"{"a\u0062":1,"q\"t":2,"plain":3}"#).unwrap();
        assert_eq!(object.get_i64("ab"), Some(1));
        assert_eq!(object.get_i64("q\"t"), Some(2));
        assert_eq!(text(&object), r#"{"ab":1,"q\"t":2,"plain":3}"#);
        // Control characters and backslashes are escaped again; other
        // characters, non-ASCII included, are written as they are.
        let object = parse(br#"{"l\n\u0001":1,"b\\s":2,"\u00e9t\u00e9":3,"x\u007f":4}"#).unwrap();
        assert_eq!(object.get_i64("l\n\u{1}"), Some(1));
        assert_eq!(
            text(&object),
            "{\"l\\n\\u0001\":1,\"b\\\\s\":2,\"\u{e9}t\u{e9}\":3,\"x\u{7f}\":4}"
        );
    }

    #[test]
    fn members_and_copies_share_the_parsed_text() {
        let source =
            Bytes::from_static(br#"{"model":"m","messages":[{"role":"user"}],"o":{"a":1}}"#);
        let within = |part: &[u8]| {
            let start = part.as_ptr() as usize;
            let base = source.as_ptr() as usize;
            start >= base && start + part.len() <= base + source.len()
        };
        let object = JsonObject::parse(&source).unwrap();
        let copy = object.clone();
        let messages = copy.get("messages").unwrap().as_bytes();
        assert_eq!(messages, br#"[{"role":"user"}]"#);
        assert!(within(messages), "a copy's member is the source's text");
        let nested = object.get_object("o").unwrap();
        assert!(within(nested.get("a").unwrap().as_bytes()));
    }

    #[test]
    fn typed_getters_and_remove() {
        let mut object =
            parse(br#"{"stream":true,"max_tokens":7,"model":"x","o":{"a":1}}"#).unwrap();
        assert_eq!(object.get_bool("stream"), Some(true));
        assert_eq!(object.get_i64("max_tokens"), Some(7));
        assert_eq!(object.get_str("model").as_deref(), Some("x"));
        assert_eq!(object.get_object("o").unwrap().get_i64("a"), Some(1));
        object.remove("stream");
        assert!(!object.contains("stream"));
    }

    #[test]
    fn rejects_non_objects_and_garbage() {
        assert!(matches!(parse(b"[1,2]"), Err(ParseError::NotAnObject)));
        assert!(matches!(parse(b"\"s\""), Err(ParseError::NotAnObject)));
        assert!(matches!(parse(b"{\"a\":"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b"{} x"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(b""), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_once() {
        let object = parse(br#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(text(&object), r#"{"a":2}"#);
        let object = parse(br#"{"a":1,"b":2,"a":3,"c":4,"b":5,"a":6}"#).unwrap();
        assert_eq!(text(&object), r#"{"a":6,"b":5,"c":4}"#);
    }

    #[test]
    fn many_members_merge_duplicates_in_first_place_with_the_last_value() {
        let members: Vec<String> = (0..5_000)
            .map(|i| format!("\"k{}\":{i}", i % 1_000))
            .collect();
        let input = format!("{{{}}}", members.join(","));
        let object = parse(input.as_bytes()).unwrap();
        assert_eq!(object.members.len(), 1_000);
        for (index, (key, value)) in object.members.iter().enumerate() {
            assert_eq!(key, format!("k{index}").as_bytes());
            assert_eq!(value.as_bytes(), (4_000 + index).to_string().as_bytes());
        }
    }

    #[test]
    fn a_broken_document_that_is_not_an_object_is_not_an_object() {
        assert!(matches!(parse(b"[1,"), Err(ParseError::NotAnObject)));
        assert!(matches!(parse(b"nul"), Err(ParseError::Syntax(_))));
    }
}
