//! Names a user crate declares for its own namespace, read from its
//! `Cargo.toml`:
//!
//! ```toml
//! [package.metadata.llmd]
//! spans = ["myapp.enqueue"]
//! events = ["myapp.queue.full"]
//! [package.metadata.llmd.attributes]
//! "myapp.queue.depth" = "int"
//! ```

use crate::registry::table::{ValueKind, is_content_key, is_reserved, is_well_formed};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// The declarations of one crate.
#[derive(Debug, Default)]
pub struct Declared {
    /// The manifest they were read from (empty when there is none).
    pub manifest: PathBuf,
    /// Declared span names.
    pub spans: Vec<String>,
    /// Declared event names.
    pub events: Vec<String>,
    /// Declared attribute keys and their kinds.
    pub attributes: Vec<(String, ValueKind)>,
}

type Cached = Arc<Result<Declared, String>>;

/// The declarations of the crate being compiled, read once per manifest
/// and process (a proc-macro server may expand several crates).
pub fn current() -> Cached {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Cached>>> = OnceLock::new();
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return Arc::new(Ok(Declared::default()));
    };
    let manifest = Path::new(&dir).join("Cargo.toml");
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    cache
        .entry(manifest.clone())
        .or_insert_with(|| Arc::new(read(&manifest)))
        .clone()
}

fn read(manifest: &Path) -> Result<Declared, String> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    parse(&text)
        .map(|declared| Declared {
            manifest: manifest.to_owned(),
            ..declared
        })
        .map_err(|problems| {
            format!(
                "{} [package.metadata.llmd]: {}",
                manifest.display(),
                problems.join("; ")
            )
        })
}

/// Parses and validates the `[package.metadata.llmd]` table of a manifest.
/// Every problem is reported, not just the first.
pub fn parse(manifest: &str) -> Result<Declared, Vec<String>> {
    let root: toml::Table = manifest
        .parse()
        .map_err(|e| vec![format!("invalid TOML: {e}")])?;
    let Some(llmd) = root
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("llmd"))
    else {
        return Ok(Declared::default());
    };
    let Some(llmd) = llmd.as_table() else {
        return Err(vec!["must be a table".into()]);
    };
    let mut problems = Vec::new();
    let mut declared = Declared::default();
    for (field, value) in llmd {
        match field.as_str() {
            "spans" => declared.spans = names(field, value, &mut problems),
            "events" => declared.events = names(field, value, &mut problems),
            "attributes" => declared.attributes = attributes(value, &mut problems),
            other => problems.push(format!(
                "unknown field `{other}`: the fields are `spans`, `events` and `attributes`"
            )),
        }
    }
    if problems.is_empty() {
        Ok(declared)
    } else {
        Err(problems)
    }
}

fn names(field: &str, value: &toml::Value, problems: &mut Vec<String>) -> Vec<String> {
    let Some(items) = value.as_array() else {
        problems.push(format!("`{field}` must be an array of strings"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        match item.as_str() {
            Some(name) => {
                if let Some(problem) = problem_with(name) {
                    problems.push(format!("`{field}`: {problem}"));
                } else {
                    out.push(name.to_owned());
                }
            }
            None => problems.push(format!(
                "`{field}` must be an array of strings, found a value of type {}",
                item.type_str()
            )),
        }
    }
    out
}

fn attributes(value: &toml::Value, problems: &mut Vec<String>) -> Vec<(String, ValueKind)> {
    let Some(table) = value.as_table() else {
        problems.push("`attributes` must be a table of `\"key\" = \"kind\"`".into());
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, kind) in table {
        if let Some(problem) = problem_with(key) {
            problems.push(format!("`attributes`: {problem}"));
            continue;
        }
        match kind.as_str().and_then(ValueKind::parse) {
            Some(kind) => out.push((key.clone(), kind)),
            None => problems.push(format!(
                "`attributes`: `{key}` has kind {}; the kinds are \"int\", \"float\", \"bool\", \"string\" and \"string[]\"",
                kind.as_str().map_or_else(|| format!("of type {}", kind.type_str()), |k| format!("\"{k}\""))
            )),
        }
    }
    out
}

/// Why a crate may not declare `name`, if it may not.
fn problem_with(name: &str) -> Option<String> {
    if !is_well_formed(name) {
        Some(format!(
            "`{name}` is not well formed: use lowercase segments of letters, digits and `_` joined by dots"
        ))
    } else if is_content_key(name) {
        Some(format!(
            "`{name}` is a content key and can never be recorded"
        ))
    } else if is_reserved(name) {
        Some(format!(
            "`{name}` is in a reserved namespace: `llm_d.` and `gen_ai.` names come from the llmd-runtime registry only; declare names under your own prefix"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[package]
name = "myapp"
features = [
  "x",
]

[package.metadata.llmd]
spans = ["myapp.enqueue"]
events = ["myapp.queue.full"]

[package.metadata.llmd.attributes]
"myapp.queue.depth" = "int"
"myapp.queue.tags" = "string[]"
"#;

    #[test]
    fn reads_spans_events_and_attribute_kinds() {
        let d = parse(GOOD).expect("valid declarations");
        assert_eq!(d.spans, ["myapp.enqueue"]);
        assert_eq!(d.events, ["myapp.queue.full"]);
        assert!(
            d.attributes
                .contains(&("myapp.queue.depth".into(), ValueKind::Int))
        );
        assert!(
            d.attributes
                .contains(&("myapp.queue.tags".into(), ValueKind::StrArray))
        );
    }

    #[test]
    fn a_manifest_without_declarations_declares_nothing() {
        let d = parse("[package]\nname = \"x\"\n").expect("no metadata is fine");
        assert!(d.spans.is_empty() && d.events.is_empty() && d.attributes.is_empty());
    }

    #[test]
    fn rejects_reserved_content_malformed_and_unknown_entries() {
        let bad = r#"
[package.metadata.llmd]
spans = ["llm_d.mine", "MyApp.Span", 3]
events = ["gen_ai.prompt"]
colours = []
[package.metadata.llmd.attributes]
"myapp.size" = "integer"
"gen_ai.input.messages" = "string"
"#;
        let problems = parse(bad).expect_err("every entry is wrong");
        let all = problems.join("\n");
        for expected in [
            "`llm_d.mine` is in a reserved namespace",
            "`MyApp.Span` is not well formed",
            "array of strings, found a value of type integer",
            "`gen_ai.prompt` is a content key",
            "unknown field `colours`",
            "`myapp.size` has kind \"integer\"",
            "`gen_ai.input.messages` is a content key",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn invalid_toml_is_reported() {
        let problems = parse("[package\n").expect_err("broken TOML");
        assert!(problems[0].starts_with("invalid TOML"));
    }
}
