//! The arguments of `#[traced_span(..)]`:
//!
//! ```text
//! "name" [, kind = server|client|internal|producer|consumer] [, parent = EXPR]
//!        [, attrs(key = value, ..)] [, err]
//! ```

use crate::fields::Fields;
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, Ident, LitStr, Token};

const USAGE: &str = "#[traced_span(\"llm_d.component.operation\", kind = internal, parent = cx, attrs(key = value, ..), err)]";

/// The parsed arguments.
pub struct Args {
    /// The span name literal.
    pub name: LitStr,
    /// The `SpanKind` variant.
    pub kind: Ident,
    /// The explicit parent context expression.
    pub parent: Option<Expr>,
    /// Attributes set at span start.
    pub attrs: Fields,
    /// Where `err` was written, if it was: `Err` outputs are recorded.
    pub err: Option<Span>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Err(syn::Error::new(
                Span::call_site(),
                format!("#[traced_span] needs a span name as its first argument: {USAGE}"),
            ));
        }
        let name = parse_name(input)?;
        let mut kind = None;
        let mut parent = None;
        let mut attrs = None;
        let mut err = None;
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let option: Ident = input.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    format!("expected an option (kind, parent, attrs or err): {USAGE}"),
                )
            })?;
            match option.to_string().as_str() {
                "kind" => {
                    once(&kind, &option)?;
                    input.parse::<Token![=]>()?;
                    kind = Some(parse_kind(input)?);
                }
                "parent" => {
                    once(&parent, &option)?;
                    input.parse::<Token![=]>()?;
                    parent = Some(input.parse()?);
                }
                "attrs" => {
                    once(&attrs, &option)?;
                    if !input.peek(syn::token::Paren) {
                        return Err(syn::Error::new(
                            option.span(),
                            "`attrs` takes a parenthesised list: `attrs(llm_d.kv_cache.pod_count = pods.len())`",
                        ));
                    }
                    let content;
                    syn::parenthesized!(content in input);
                    attrs = Some(content.parse()?);
                }
                "err" => {
                    once(&err, &option)?;
                    if !input.is_empty() && !input.peek(Token![,]) {
                        return Err(syn::Error::new(
                            input.span(),
                            "`err` takes no value: on `Err(e)` it records status Error and `error.type` from `ErrorType`",
                        ));
                    }
                    err = Some(option.span());
                }
                other => {
                    return Err(syn::Error::new(
                        option.span(),
                        format!(
                            "unknown option `{other}`: the options are kind, parent, attrs and err; {USAGE}"
                        ),
                    ));
                }
            }
        }
        Ok(Args {
            name,
            kind: kind.unwrap_or_else(|| Ident::new("Internal", Span::call_site())),
            parent,
            attrs: attrs.unwrap_or(Fields(Vec::new())),
            err,
        })
    }
}

fn parse_name(input: ParseStream<'_>) -> syn::Result<LitStr> {
    if input.peek(LitStr) {
        return input.parse();
    }
    let span = input.span();
    let what = if input.peek(Ident) && input.peek2(Token![=]) {
        "#[traced_span] needs the span name first"
    } else {
        "the span name must be a string literal, never a formatted or computed value"
    };
    Err(syn::Error::new(span, format!("{what}: {USAGE}")))
}

fn parse_kind(input: ParseStream<'_>) -> syn::Result<Ident> {
    let kind: Ident = input.parse()?;
    let variant = match kind.to_string().as_str() {
        "server" => "Server",
        "client" => "Client",
        "internal" => "Internal",
        "producer" => "Producer",
        "consumer" => "Consumer",
        other => {
            return Err(syn::Error::new(
                kind.span(),
                format!(
                    "unknown span kind `{other}`: use server, client, internal, producer or consumer"
                ),
            ));
        }
    };
    Ok(Ident::new(variant, kind.span()))
}

fn once<T>(seen: &Option<T>, option: &Ident) -> syn::Result<()> {
    match seen {
        Some(_) => Err(syn::Error::new(
            option.span(),
            format!("option `{option}` is given twice"),
        )),
        None => Ok(()),
    }
}

impl Args {
    /// The `Option<&Context>` expression passed to `span::start`.
    pub fn parent_tokens(&self) -> TokenStream {
        match &self.parent {
            Some(parent) => quote_spanned! {parent.span()=>
                ::llmd_runtime::span::ParentContext::as_parent(&(#parent))
            },
            None => quote! { ::core::option::Option::None },
        }
    }
}
