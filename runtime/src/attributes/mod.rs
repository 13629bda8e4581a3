//! The attribute registry and the value types that make span attributes
//! metadata by construction.

mod identifier;
#[path = "table.rs"]
pub mod registry;
mod sensitive;
mod value;

pub use identifier::{Identifier, MAX_IDENTIFIER_LEN, REJECTED_PLACEHOLDER, is_identifier};
pub use registry::{KeyDef, NameDef, ValueKind};
pub use sensitive::{REDACTED, Sensitive};
pub use value::{AttributeEnum, MetadataStr, MetadataValue, key_value, kind};

/// Renders the registry as the Markdown of `docs/attributes.md`.
pub fn render_markdown() -> String {
    let mut out = String::from(
        "# Attribute registry\n\n\
         Generated from `runtime/src/attributes/table.rs` by \
         `cargo run -p llmd-runtime --example gen-attribute-docs`; do not edit by hand.\n\n\
         `#[traced_span]`, `record!`, `event!` and `attributes!` accept only the keys and names below \
         (or keys a crate declares for its own namespace), and only values of the stated kind.\n\n\
         ## Attributes\n\n| key | kind | meaning |\n|---|---|---|\n",
    );
    for k in registry::ATTRIBUTES {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            k.name,
            k.kind.name(),
            k.brief
        ));
    }
    out.push_str("\n## Spans\n\n| name | meaning |\n|---|---|\n");
    for s in registry::SPANS {
        out.push_str(&format!("| `{}` | {} |\n", s.name, s.brief));
    }
    out.push_str("\n## Events\n\n| name | meaning |\n|---|---|\n");
    for e in registry::EVENTS {
        out.push_str(&format!("| `{}` | {} |\n", e.name, e.brief));
    }
    out.push_str(
        "\n## Content keys, never recorded\n\n\
         These GenAI semantic-convention keys carry prompt or response content. \
         Using one is a compile error.\n\n",
    );
    for c in registry::CONTENT_KEYS {
        out.push_str(&format!("- `{c}`\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::registry::*;

    #[test]
    fn registry_is_sorted_unique_and_well_formed() {
        for table in [
            ATTRIBUTES.iter().map(|k| k.name).collect::<Vec<_>>(),
            SPANS.iter().map(|s| s.name).collect(),
            EVENTS.iter().map(|e| e.name).collect(),
            CONTENT_KEYS.to_vec(),
        ] {
            assert!(
                table.windows(2).all(|w| w[0] < w[1]),
                "not sorted or not unique: {table:?}"
            );
            assert!(table.iter().all(|n| is_well_formed(n)), "{table:?}");
        }
    }

    #[test]
    fn no_registry_key_is_a_content_key() {
        for k in ATTRIBUTES {
            assert!(!is_content_key(k.name), "{}", k.name);
        }
        assert!(is_content_key("gen_ai.prompt"));
        assert!(is_content_key("gen_ai.prompt.0.content"));
        assert!(!is_content_key("gen_ai.prompts"));
    }

    #[test]
    fn docs_are_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/attributes.md");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == super::render_markdown(),
            "docs/attributes.md is stale: run `cargo run -p llmd-runtime --example gen-attribute-docs`"
        );
    }
}
