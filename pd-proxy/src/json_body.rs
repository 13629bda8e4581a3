//! A JSON object kept as its members' raw text, in their order: the proxy
//! changes only the members it must, and every other byte of a member's
//! value is forwarded exactly as the client sent it.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::error::Category;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::fmt;

/// Up to this many members, duplicate keys are found by comparing every
/// pair (cheaper than hashing for the handful of members a request has);
/// beyond, through a map, so that the time stays linear in the members.
const PAIRWISE_DUPLICATES: usize = 16;

/// An ordered JSON object whose member values are raw JSON text.
#[derive(Clone, Debug, Default)]
pub struct JsonObject {
    members: Vec<(String, Box<RawValue>)>,
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
    /// Parses `bytes` as a JSON object, in one pass. A key given more than
    /// once keeps its first place and its last value.
    pub fn parse(bytes: &[u8]) -> Result<JsonObject, ParseError> {
        serde_json::from_slice(bytes).map_err(|error| match error.classify() {
            // Members are raw values and keys strings, so the only type
            // error is a document that is not an object.
            Category::Data => ParseError::NotAnObject,
            _ => ParseError::Syntax(error.to_string()),
        })
    }

    /// The raw value of member `key`.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &**v)
    }

    /// Whether member `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Member `key` as a bool, if it is one.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)
            .and_then(|v| serde_json::from_str(v.get()).ok())
    }

    /// Member `key` as an integer, if it is one.
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key)
            .and_then(|v| serde_json::from_str(v.get()).ok())
    }

    /// Member `key` as a string, if it is one.
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.get(key)
            .and_then(|v| serde_json::from_str(v.get()).ok())
    }

    /// Member `key` parsed as a nested object, if it is one.
    pub fn get_object(&self, key: &str) -> Option<JsonObject> {
        self.get(key)
            .and_then(|v| JsonObject::parse(v.get().as_bytes()).ok())
    }

    /// Sets member `key` to raw JSON `value`, in place if present, else at the end.
    pub fn set_raw(&mut self, key: &str, value: Box<RawValue>) {
        match self.members.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => *slot = value,
            None => self.members.push((key.to_owned(), value)),
        }
    }

    /// Sets member `key` to the JSON form of `value`.
    pub fn set<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        if let Ok(raw) = serde_json::value::to_raw_value(value) {
            self.set_raw(key, raw);
        }
    }

    /// Removes member `key`.
    pub fn remove(&mut self, key: &str) {
        self.members.retain(|(k, _)| k != key);
    }

    /// The object as JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

impl Serialize for JsonObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.members.len()))?;
        for (key, value) in &self.members {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;

        impl<'de> Visitor<'de> for Members {
            type Value = JsonObject;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<JsonObject, A::Error> {
                let mut members = Vec::with_capacity(access.size_hint().unwrap_or(0));
                while let Some(member) = access.next_entry::<String, Box<RawValue>>()? {
                    members.push(member);
                }
                merge_duplicates(&mut members);
                Ok(JsonObject { members })
            }
        }

        deserializer.deserialize_map(Members)
    }
}

/// Merges members whose key was given before into that first member,
/// which takes their value (the last one given wins, as in Python's `json`
/// and vLLM); linear in the members.
fn merge_duplicates(members: &mut Vec<(String, Box<RawValue>)>) {
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
        let mut first_of: HashMap<&str, usize> = HashMap::with_capacity(members.len());
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

    #[test]
    fn untouched_members_keep_their_exact_text_and_order() {
        let input = br#"{"model":"m","temperature":1.50,"big":123456789012345678901234567890,"messages":[{"role":"user","content":"hi \u00e9"}],"stream":true}"#;
        let mut object = JsonObject::parse(input).unwrap();
        object.set("stream", &false);
        object.set("max_tokens", &1);
        let out = String::from_utf8(object.to_bytes()).unwrap();
        assert_eq!(
            out,
            r#"{"model":"m","temperature":1.50,"big":123456789012345678901234567890,"messages":[{"role":"user","content":"hi \u00e9"}],"stream":false,"max_tokens":1}"#
        );
    }

    #[test]
    fn typed_getters_and_remove() {
        let mut object =
            JsonObject::parse(br#"{"stream":true,"max_tokens":7,"model":"x","o":{"a":1}}"#)
                .unwrap();
        assert_eq!(object.get_bool("stream"), Some(true));
        assert_eq!(object.get_i64("max_tokens"), Some(7));
        assert_eq!(object.get_str("model").as_deref(), Some("x"));
        assert_eq!(object.get_object("o").unwrap().get_i64("a"), Some(1));
        object.remove("stream");
        assert!(!object.contains("stream"));
    }

    #[test]
    fn rejects_non_objects_and_garbage() {
        assert!(matches!(
            JsonObject::parse(b"[1,2]"),
            Err(ParseError::NotAnObject)
        ));
        assert!(matches!(
            JsonObject::parse(b"\"s\""),
            Err(ParseError::NotAnObject)
        ));
        assert!(matches!(
            JsonObject::parse(b"{\"a\":"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            JsonObject::parse(b"{} x"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(JsonObject::parse(b""), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_once() {
        let object = JsonObject::parse(br#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(String::from_utf8(object.to_bytes()).unwrap(), r#"{"a":2}"#);
        let object = JsonObject::parse(br#"{"a":1,"b":2,"a":3,"c":4,"b":5,"a":6}"#).unwrap();
        assert_eq!(
            String::from_utf8(object.to_bytes()).unwrap(),
            r#"{"a":6,"b":5,"c":4}"#
        );
    }

    #[test]
    fn many_members_merge_duplicates_in_first_place_with_the_last_value() {
        let members: Vec<String> = (0..5_000)
            .map(|i| format!("\"k{}\":{i}", i % 1_000))
            .collect();
        let input = format!("{{{}}}", members.join(","));
        let object = JsonObject::parse(input.as_bytes()).unwrap();
        assert_eq!(object.members.len(), 1_000);
        for (index, (key, value)) in object.members.iter().enumerate() {
            assert_eq!(*key, format!("k{index}"));
            assert_eq!(value.get(), (4_000 + index).to_string());
        }
    }

    #[test]
    fn a_broken_document_that_is_not_an_object_is_not_an_object() {
        assert!(matches!(
            JsonObject::parse(b"[1,"),
            Err(ParseError::NotAnObject)
        ));
        assert!(matches!(
            JsonObject::parse(b"nul"),
            Err(ParseError::Syntax(_))
        ));
    }
}
