//! `#[traced_span]`, `record!`, `event!`, `attributes!` and
//! `#[derive(ErrorType)]`: spans declared, not hand-written, and metadata
//! only by construction.
//!
//! Use them through `llmd_runtime`, which re-exports them and provides what
//! they expand to:
//!
//! ```
//! use llmd_runtime::{ErrorType, Identifier, event, record, traced_span};
//!
//! #[derive(Debug, ErrorType)]
//! enum ScoreError {
//!     IndexUnavailable,
//! }
//!
//! #[traced_span(
//!     "llm_d.kv_cache.get_scores",
//!     kind = internal,
//!     attrs(gen_ai.request.model = model, llm_d.kv_cache.pod_count = pods.len()),
//!     err,
//! )]
//! async fn get_scores(model: &Identifier, pods: &[&'static str]) -> Result<f64, ScoreError> {
//!     let found = pods.len();
//!     if found == 0 {
//!         return Err(ScoreError::IndexUnavailable);
//!     }
//!     event!("llm_d.kv_cache.first_miss", llm_d.kv_cache.blocks_found = found);
//!     let ratio = 0.5;
//!     record!(llm_d.kv_cache.block_hit_ratio = ratio);
//!     Ok(ratio)
//! }
//! # let model = Identifier::new("meta-llama/Llama-3.1-8B");
//! # let fut = get_scores(&model, &["10.0.0.7:8000"]);
//! # drop(fut);
//! ```
//!
//! Every key, span name and event name is checked at compile time against
//! the registry of `llmd_runtime::attributes` (and the names the crate
//! declares under `[package.metadata.llmd]` in its `Cargo.toml`), and every
//! value must be a metadata type of the key's kind: content keys, `String`s,
//! borrowed `&str`s and `Sensitive<T>` values do not compile. See
//! `docs/traced-span.md` for the whole grammar.

#![warn(missing_docs)]

mod args;
mod declared;
mod error_type;
mod expand;
mod fields;
mod inline;
mod registry;
mod suggest;

use proc_macro::TokenStream;

/// Runs the function in a span.
///
/// ```text
/// #[traced_span(
///     "span.name",                         // a registry name, any llm_d.* / gen_ai.* name, or a declared one
///     kind = internal,                     // server | client | internal (default) | producer | consumer
///     parent = cx,                         // optional explicit parent: Context, &Context or Option of them
///     attrs(key = value, ..),              // evaluated only when the span is recorded
///     err,                                 // on Err(e): status Error, error.type = e.error_type()
/// )]
/// ```
///
/// Works on sync and async functions and methods, generic functions,
/// functions returning `impl Trait`, native async trait methods and
/// `#[async_trait]` methods. Nothing is recorded that is not declared: no
/// arguments and no return value.
#[proc_macro_attribute]
pub fn traced_span(args: TokenStream, item: TokenStream) -> TokenStream {
    let original = proc_macro2::TokenStream::from(item.clone());
    let expanded =
        syn::parse::<args::Args>(args).and_then(|args| expand::traced_span(args, parse_fn(item)?));
    match expanded {
        Ok(expanded) => expanded.into(),
        // The item is kept as written, so that the error is the only one.
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(original);
            out.into()
        }
    }
}

fn parse_fn(item: TokenStream) -> syn::Result<syn::ItemFn> {
    let tokens = proc_macro2::TokenStream::from(item);
    if let Ok(item) = syn::parse2::<syn::ItemFn>(tokens.clone()) {
        return Ok(item);
    }
    let message = match syn::parse2::<syn::TraitItemFn>(tokens.clone()) {
        Ok(f) if f.default.is_none() => {
            "#[traced_span] needs a function body: put it on the trait impl's method, or on a default method"
        }
        _ => "#[traced_span] applies to functions and methods only",
    };
    Err(syn::Error::new_spanned(tokens, message))
}

/// Sets attributes on the current span, if it is recorded: for values
/// known only inside the body. The values are evaluated only when the
/// span is recorded; they are taken by value (write `&x` to keep `x`).
///
/// `record!(llm_d.kv_cache.block_hit_ratio = ratio, llm_d.kv_cache.blocks_found = n)`
#[proc_macro]
pub fn record(input: TokenStream) -> TokenStream {
    syn::parse::<fields::Fields>(input)
        .and_then(inline::record)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Adds an event to the current span, if it is recorded. The attribute
/// values are evaluated only when the span is recorded.
///
/// `event!("llm_d.pd_proxy.first_token", llm_d.pd_proxy.true_ttft_ms = ms)`
#[proc_macro]
pub fn event(input: TokenStream) -> TokenStream {
    syn::parse::<inline::EventInput>(input)
        .and_then(inline::event)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// A checked list of attributes, as an array of `KeyValue`s: for APIs
/// that take a span's attributes from their caller, such as
/// `llmd_runtime::http::ServerTraceLayer::trace_with`. Keys and values are
/// checked as in `record!`. The values are evaluated where the macro
/// stands, so write it inside the closure such an API calls only for a
/// recorded span.
///
/// `attributes!(llm_d.pd_proxy.connector = connector, llm_d.pd_proxy.disaggregation_used = false)`
#[proc_macro]
pub fn attributes(input: TokenStream) -> TokenStream {
    syn::parse::<fields::Fields>(input)
        .and_then(inline::attributes)
        .unwrap_or_else(|e| {
            // In a block: several errors are statements, not one expression.
            let errors = e.into_compile_error();
            quote::quote! {{ #errors }}
        })
        .into()
}

/// Implements `llmd_runtime::ErrorType`: each enum variant's `error.type`
/// is its name in snake case (`ConnectionRefused` -> `connection_refused`),
/// a struct's is its type name in snake case. Unit, tuple and struct
/// variants are supported; the fields are never read.
#[proc_macro_derive(ErrorType)]
pub fn derive_error_type(input: TokenStream) -> TokenStream {
    syn::parse::<syn::DeriveInput>(input)
        .and_then(error_type::derive)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
