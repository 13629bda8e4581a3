//! Checks span names, event names and attribute keys against the registry
//! shared with `llmd-runtime` and the names the crate declares itself.

#[allow(dead_code)] // compiled verbatim by llmd-runtime too, which uses all of it
#[path = "../../runtime/src/attributes/table.rs"]
pub mod table;

use crate::declared::{self, Declared};
use crate::suggest;
use proc_macro2::TokenStream;
use quote::quote;
use std::cell::Cell;
use std::sync::Arc;
use table::ValueKind;

/// Where to look names up during one macro expansion.
pub struct Checker {
    declared: Arc<Result<Declared, String>>,
    used_declaration: Cell<bool>,
}

/// What a span or event name is checked against.
#[derive(Clone, Copy)]
pub enum NameKind {
    /// A span name.
    Span,
    /// An event name.
    Event,
}

impl NameKind {
    fn noun(self) -> &'static str {
        match self {
            NameKind::Span => "span",
            NameKind::Event => "event",
        }
    }

    fn manifest_field(self) -> &'static str {
        match self {
            NameKind::Span => "spans",
            NameKind::Event => "events",
        }
    }

    fn registry(self) -> &'static [table::NameDef] {
        match self {
            NameKind::Span => table::SPANS,
            NameKind::Event => table::EVENTS,
        }
    }
}

impl Checker {
    /// A checker for the crate being compiled.
    pub fn new() -> Checker {
        Checker {
            declared: declared::current(),
            used_declaration: Cell::new(false),
        }
    }

    fn declared(&self) -> Result<&Declared, String> {
        self.declared.as_ref().as_ref().map_err(Clone::clone)
    }

    /// Checks a span or event name.
    pub fn name(&self, kind: NameKind, name: &str) -> Result<(), String> {
        let noun = kind.noun();
        if !table::is_well_formed(name) {
            return Err(format!(
                "{noun} name `{name}` is not well formed: use lowercase ASCII segments of letters, \
                     digits and `_` joined by single dots, e.g. `llm_d.my_component.operation`"
            ));
        }
        if table::is_content_key(name) {
            return Err(format!(
                "`{name}` is a GenAI content key and cannot name a {noun}: choose an operation name"
            ));
        }
        let registry = kind.registry();
        if registry.iter().any(|n| n.name == name) || table::is_reserved(name) {
            return Ok(());
        }
        let declared = self.declared()?;
        let own = match kind {
            NameKind::Span => &declared.spans,
            NameKind::Event => &declared.events,
        };
        if own.iter().any(|n| n == name) {
            self.used_declaration.set(true);
            return Ok(());
        }
        let candidates = registry
            .iter()
            .map(|n| n.name)
            .chain(own.iter().map(String::as_str));
        let field = kind.manifest_field();
        Err(format!(
            "unknown {noun} name `{name}`{}: use a name under `llm_d.` or `gen_ai.`, one from the \
                 registry (docs/attributes.md), or declare it in this crate's Cargo.toml: \
                 `[package.metadata.llmd] {field} = [\"{name}\"]`",
            did_you_mean(name, candidates)
        ))
    }

    /// Checks an attribute key and returns the kind of value it holds.
    pub fn key(&self, key: &str) -> Result<ValueKind, String> {
        if !table::is_well_formed(key) {
            return Err(format!(
                "attribute key `{key}` is not well formed: use lowercase ASCII segments of letters, \
                     digits and `_` joined by single dots"
            ));
        }
        if table::is_content_key(key) {
            return Err(format!(
                "`{key}` is a content key: prompts, messages and completions are never recorded on spans; \
                     record metadata instead, such as a count (`gen_ai.usage.input_tokens`) or an id"
            ));
        }
        if let Some(def) = table::find_key(key) {
            return Ok(def.kind);
        }
        let registry = table::ATTRIBUTES.iter().map(|k| k.name);
        if table::is_reserved(key) {
            return Err(format!(
                "unknown attribute key `{key}`{}: keys under `llm_d.` and `gen_ai.` come from the registry \
                     (docs/attributes.md); a new key is added to runtime/src/attributes/table.rs",
                did_you_mean(key, registry)
            ));
        }
        let declared = self.declared()?;
        if let Some((_, kind)) = declared.attributes.iter().find(|(k, _)| k == key) {
            self.used_declaration.set(true);
            return Ok(*kind);
        }
        let candidates = registry.chain(declared.attributes.iter().map(|(k, _)| k.as_str()));
        Err(format!(
            "unknown attribute key `{key}`{}: declare it in this crate's Cargo.toml, under \
                 `[package.metadata.llmd.attributes]` as `\"{key}\" = \"int\"` \
                 (kinds: int, float, bool, string, string[])",
            did_you_mean(key, candidates)
        ))
    }

    /// Tokens that make the compiler rebuild the expansion when the
    /// manifest whose declarations it used changes.
    pub fn tracking(&self) -> TokenStream {
        match self.declared.as_ref() {
            Ok(declared) if self.used_declaration.get() => {
                let path = declared.manifest.to_string_lossy();
                quote! { const _: &[u8] = ::core::include_bytes!(#path); }
            }
            _ => TokenStream::new(),
        }
    }
}

fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    suggest::nearest(name, candidates)
        .map(|near| format!(" (did you mean `{near}`?)"))
        .unwrap_or_default()
}
