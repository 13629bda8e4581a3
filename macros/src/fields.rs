//! `key = value` attribute lists, shared by `attrs(..)`, `record!`,
//! `event!` and `attributes!`, and the checked key-value pairs they expand to.

use crate::registry::Checker;
use crate::registry::table::ValueKind;
use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, LitFloat, LitInt, LitStr, Token};

/// One `key = value` pair. The key is dotted identifiers
/// (`llm_d.kv_cache.pod_count`) or a string literal.
pub struct Field {
    key: String,
    key_tokens: TokenStream,
    value: Expr,
}

impl Parse for Field {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let (key, key_tokens) = if input.peek(LitStr) {
            let lit: LitStr = input.parse()?;
            (lit.value(), lit.to_token_stream())
        } else {
            let mut tokens = TokenStream::new();
            let first = Ident::parse_any(input).map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "expected an attribute key such as `llm_d.kv_cache.pod_count = n`",
                )
            })?;
            let mut key = first.unraw().to_string();
            first.to_tokens(&mut tokens);
            while input.peek(Token![.]) {
                let dot: Token![.] = input.parse()?;
                dot.to_tokens(&mut tokens);
                key.push('.');
                key.push_str(&parse_segment(input, &mut tokens)?);
            }
            (key, tokens)
        };
        if !input.peek(Token![=]) {
            return Err(syn::Error::new(
                input.span(),
                format!("expected `= value` after the attribute key `{key}`"),
            ));
        }
        input.parse::<Token![=]>()?;
        let value = input.parse()?;
        Ok(Field {
            key,
            key_tokens,
            value,
        })
    }
}

/// A key segment after a dot: an identifier or keyword, or digits (a
/// `0.content` run arrives as one float literal).
fn parse_segment(input: ParseStream<'_>, tokens: &mut TokenStream) -> syn::Result<String> {
    if input.peek(LitInt) {
        let digits: LitInt = input.parse()?;
        digits.to_tokens(tokens);
        Ok(digits.to_string())
    } else if input.peek(LitFloat) {
        let digits: LitFloat = input.parse()?;
        digits.to_tokens(tokens);
        Ok(digits.to_string())
    } else {
        let segment = Ident::parse_any(input)?;
        segment.to_tokens(tokens);
        Ok(segment.unraw().to_string())
    }
}

/// A comma-separated list of fields.
pub struct Fields(pub Vec<Field>);

impl Parse for Fields {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let list = Punctuated::<Field, Token![,]>::parse_terminated(input)?;
        Ok(Fields(list.into_iter().collect()))
    }
}

impl Fields {
    /// A closure building the checked key-value pairs, for the runtime to
    /// call only when the span is recorded, as a `Vec` (what the SDK keeps,
    /// so it is moved in without copying) with room for `room` more pairs
    /// set later (so that `record!` does not regrow the span's list).
    pub fn closure(&self, checker: &Checker, room: usize) -> syn::Result<TokenStream> {
        if self.0.is_empty() {
            return Ok(if room > 0 {
                quote! { || ::llmd_runtime::span::attributes_with_room([], #room) }
            } else {
                quote! { ::llmd_runtime::span::no_attributes }
            });
        }
        let pairs = self.checked_pairs(checker)?;
        Ok(if room == 0 {
            quote! { || ::std::vec![#(#pairs),*] }
        } else {
            quote! { || ::llmd_runtime::span::attributes_with_room([#(#pairs),*], #room) }
        })
    }

    /// The checked key-value pairs, one expression each, in order. Every
    /// key and literal value is checked; all the problems found are
    /// reported together, and a key set twice is refused.
    pub fn checked_pairs(&self, checker: &Checker) -> syn::Result<Vec<TokenStream>> {
        let mut pairs = Vec::new();
        let mut errors: Option<syn::Error> = None;
        for field in &self.0 {
            match field.key_value(checker) {
                Ok(pair) => pairs.push(pair),
                Err(e) => match &mut errors {
                    Some(all) => all.combine(e),
                    None => errors = Some(e),
                },
            }
        }
        if let Some(e) = errors {
            return Err(e);
        }
        for (i, a) in self.0.iter().enumerate() {
            if let Some(b) = self.0[..i].iter().find(|b| b.key == a.key) {
                let mut e = syn::Error::new_spanned(
                    &a.key_tokens,
                    format!("attribute `{}` is set twice", a.key),
                );
                e.combine(syn::Error::new_spanned(&b.key_tokens, "first set here"));
                return Err(e);
            }
        }
        Ok(pairs)
    }
}

impl Field {
    fn key_value(&self, checker: &Checker) -> syn::Result<TokenStream> {
        let kind = checker
            .key(&self.key)
            .map_err(|problem| syn::Error::new_spanned(&self.key_tokens, problem))?;
        check_literal(&self.key, kind, &self.value)?;
        let kind_type = match kind {
            ValueKind::Int => quote!(Int),
            ValueKind::Float => quote!(Float),
            ValueKind::Bool => quote!(Bool),
            ValueKind::Str => quote!(Str),
            ValueKind::StrArray => quote!(StrArray),
        };
        let key = &self.key;
        let value = &self.value;
        Ok(quote_spanned! {value.span()=>
            ::llmd_runtime::attributes::key_value::<::llmd_runtime::attributes::kind::#kind_type, _>(#key, #value)
        })
    }
}

/// A literal of the wrong kind is reported here, with the key's kind in
/// the message; other values are checked by the type system.
fn check_literal(key: &str, kind: ValueKind, value: &Expr) -> syn::Result<()> {
    let Expr::Lit(ExprLit { lit, .. }) = value else {
        return Ok(());
    };
    let (fits, found) = match lit {
        Lit::Int(_) => (kind == ValueKind::Int, "an integer"),
        Lit::Float(_) => (kind == ValueKind::Float, "a float"),
        Lit::Bool(_) => (kind == ValueKind::Bool, "a bool"),
        Lit::Str(_) => (kind == ValueKind::Str, "a string"),
        _ => (false, "this literal"),
    };
    if fits {
        return Ok(());
    }
    Err(syn::Error::new_spanned(
        value,
        format!(
            "`{key}` holds {} {} value, not {found}",
            if kind == ValueKind::Int { "an" } else { "a" },
            kind.name()
        ),
    ))
}
