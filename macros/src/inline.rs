//! `record!` and `event!`: attributes and events added to the current span
//! from inside a function body; `attributes!`: a checked list for APIs that
//! take a span's attributes from their caller.

use crate::fields::Fields;
use crate::registry::{Checker, NameKind};
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::{LitStr, Token};

/// `record!(key = value, ..)`.
pub fn record(fields: Fields) -> syn::Result<TokenStream> {
    let (tracking, pairs) = required_pairs(
        &fields,
        "record! needs at least one attribute: `record!(llm_d.kv_cache.block_hit_ratio = ratio)`",
    )?;
    Ok(quote! {{
        #tracking
        ::llmd_runtime::span::record_current(|| [#(#pairs),*])
    }})
}

/// `attributes!(key = value, ..)`: the checked pairs as an array, built
/// where the macro stands.
pub fn attributes(fields: Fields) -> syn::Result<TokenStream> {
    let (tracking, pairs) = required_pairs(
        &fields,
        "attributes! needs at least one attribute: `attributes!(llm_d.pd_proxy.connector = connector)`",
    )?;
    Ok(quote! {{
        #tracking
        [#(#pairs),*]
    }})
}

/// The checked pairs of a macro that takes at least one (`empty` is the
/// error when there are none), and the tracking of the crate manifest
/// whose declarations they used.
fn required_pairs(fields: &Fields, empty: &str) -> syn::Result<(TokenStream, Vec<TokenStream>)> {
    if fields.0.is_empty() {
        return Err(syn::Error::new(Span::call_site(), empty));
    }
    let checker = Checker::new();
    let pairs = fields.checked_pairs(&checker)?;
    Ok((checker.tracking(), pairs))
}

/// The input of `event!("name", key = value, ..)`.
pub struct EventInput {
    name: LitStr,
    fields: Fields,
}

impl Parse for EventInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if !input.peek(LitStr) {
            return Err(syn::Error::new(
                input.span(),
                "event! needs the event name first, as a string literal: \
                 `event!(\"llm_d.kv_cache.first_miss\", llm_d.kv_cache.blocks_found = n)`",
            ));
        }
        let name = input.parse()?;
        let fields = if input.is_empty() {
            Fields(Vec::new())
        } else {
            input.parse::<Token![,]>()?;
            input.parse()?
        };
        Ok(EventInput { name, fields })
    }
}

/// `event!("name", key = value, ..)`.
pub fn event(input: EventInput) -> syn::Result<TokenStream> {
    let checker = Checker::new();
    let name_check = checker
        .name(NameKind::Event, &input.name.value())
        .map_err(|problem| syn::Error::new(input.name.span(), problem));
    let attributes = input.fields.closure(&checker, 0);
    let attributes = match (name_check, attributes) {
        (Ok(()), Ok(attributes)) => attributes,
        (Err(mut e), Err(more)) => {
            e.combine(more);
            return Err(e);
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let tracking = checker.tracking();
    let name = &input.name;
    Ok(quote! {{
        #tracking
        ::llmd_runtime::span::add_event_current(#name, #attributes)
    }})
}
