//! The expansion of `#[traced_span]` on a function.
//!
//! - `async fn`: the body becomes an async block run under the span with
//!   `Started::instrument_recording`, so the span is current on every poll
//!   and no guard is held across an `.await`.
//! - `#[async_trait]` output (a sync fn ending in `Box::pin(async move {..})`):
//!   the inner async block is instrumented the same way.
//! - sync fn: the span is entered for the body; with `err` the body runs in
//!   a closure of the declared return type (run by `Entered::run`), so `?`
//!   and `return` are seen.

use crate::args::Args;
use crate::fields::Fields;
use crate::registry::{Checker, NameKind};
use proc_macro2::{TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::{Block, Expr, ExprAsync, ExprCall, ItemFn, ReturnType, Stmt, Type};

/// Expands `item` annotated with `args`.
pub fn traced_span(args: Args, mut item: ItemFn) -> syn::Result<TokenStream> {
    if let Some(constness) = &item.sig.constness {
        return Err(syn::Error::new_spanned(
            constness,
            "#[traced_span] cannot trace a `const fn`",
        ));
    }
    if let (Some(_), ReturnType::Default) = (args.err, &item.sig.output) {
        return Err(syn::Error::new_spanned(
            &item.sig,
            "`err` needs the function to return `Result<_, E>` with `E: llmd_runtime::ErrorType`; \
             this one returns nothing, so remove `err`",
        ));
    }
    let checker = Checker::new();
    let mut errors = Vec::new();
    if let Err(problem) = checker.name(NameKind::Span, &args.name.value()) {
        errors.push(syn::Error::new(args.name.span(), problem));
    }
    let attributes = args
        .attrs
        .closure(&checker, recorded_later(item.block.to_token_stream()))
        .map_err(|e| errors.push(e))
        .ok();
    if let Some(mut all) = errors.pop() {
        for e in errors {
            all.combine(e);
        }
        return Err(all);
    }
    let attributes = attributes.unwrap_or_default();

    let name = &args.name;
    let kind = &args.kind;
    let parent = args.parent_tokens();
    let tracking = checker.tracking();
    let meta = quote! {
        #tracking
        static __LLMD_SPAN_META: ::llmd_runtime::span::SpanMeta =
            ::llmd_runtime::span::SpanMeta::new(#name, ::llmd_runtime::span::SpanKind::#kind);
    };
    let start = quote! { ::llmd_runtime::span::start(&__LLMD_SPAN_META, #parent, #attributes) };
    let recorder = match args.err {
        Some(err) => quote_spanned! {err=> ::llmd_runtime::span::RecordErr },
        None => quote! { ::llmd_runtime::span::Ignore },
    };

    let body = if item.sig.asyncness.is_some() {
        let block = &item.block;
        let output = output_type(&item.sig.output);
        quote! {{
            #meta
            #start
                .instrument_recording::<_, #recorder>(
                    ::llmd_runtime::span::typed_future::<#output, _>(async move #block),
                )
                .await
        }}
    } else if let Some(inner) = async_trait_block(&mut item.block) {
        let inner_block = &inner.block;
        let instrumented = quote! {
            async move {
                #meta
                #start
                    .instrument_recording::<_, #recorder>(async move #inner_block)
                    .await
            }
        };
        *inner = syn::parse2(instrumented)?;
        item.block.to_token_stream()
    } else if args.err.is_some() {
        let block = &item.block;
        let annotation = closure_output(&item.sig.output);
        let output = output_type(&item.sig.output);
        quote! {{
            #meta
            #start
                .enter()
                .run::<#recorder, #output, _>(move || #annotation #block)
        }}
    } else {
        let block = &item.block;
        quote! {{
            #meta
            let __llmd_span = #start.enter();
            #block
        }}
    };
    let ItemFn {
        attrs, vis, sig, ..
    } = &item;
    Ok(quote! { #(#attrs)* #vis #sig #body })
}

/// Most attributes a span's list is sized for ahead (the SDK's default
/// limit per span).
const MAX_ROOM: usize = 128;

/// How many attributes the `record!` calls in `body` may add to the span:
/// the keys of every `record!(..)` found, at any depth, capped at
/// [`MAX_ROOM`]. Only a size hint: calls in other functions are not seen,
/// and calls that do not run cost a little unused room.
fn recorded_later(body: TokenStream) -> usize {
    let mut count = 0;
    let mut tokens = body.into_iter().peekable();
    while let Some(token) = tokens.next() {
        match token {
            TokenTree::Ident(ident) if ident == "record" => {
                let bang = matches!(tokens.peek(), Some(TokenTree::Punct(p)) if p.as_char() == '!');
                if bang {
                    tokens.next();
                    if let Some(TokenTree::Group(args)) = tokens.peek() {
                        count += syn::parse2::<Fields>(args.stream()).map_or(0, |f| f.0.len());
                    }
                }
            }
            TokenTree::Group(group) => count += recorded_later(group.stream()),
            _ => {}
        }
    }
    count.min(MAX_ROOM)
}

/// The type forced on an async body's output, so `?` converts into the
/// declared error type; inferred when it mentions `impl Trait`.
fn output_type(output: &ReturnType) -> TokenStream {
    match output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) if mentions_impl(ty) => quote!(_),
        ReturnType::Type(_, ty) => ty.to_token_stream(),
    }
}

/// The return annotation of the closure wrapping a sync body.
fn closure_output(output: &ReturnType) -> TokenStream {
    match output {
        ReturnType::Type(_, ty) if mentions_impl(ty) => TokenStream::new(),
        ReturnType::Default => quote!(-> ()),
        ReturnType::Type(arrow, ty) => quote!(#arrow #ty),
    }
}

fn mentions_impl(ty: &Type) -> bool {
    fn scan(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|t| match t {
            TokenTree::Ident(i) => i == "impl",
            TokenTree::Group(g) => scan(g.stream()),
            _ => false,
        })
    }
    scan(ty.to_token_stream())
}

/// The `async move {..}` of a body ending in `Box::pin(async move {..})`,
/// as `#[async_trait]` writes it.
fn async_trait_block(block: &mut Block) -> Option<&mut ExprAsync> {
    let Some(Stmt::Expr(Expr::Call(ExprCall { func, args, .. }), None)) = block.stmts.last_mut()
    else {
        return None;
    };
    let Expr::Path(path) = func.as_ref() else {
        return None;
    };
    let segments: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    if !segments.ends_with(&["Box".to_owned(), "pin".to_owned()]) || args.len() != 1 {
        return None;
    }
    match args.first_mut() {
        Some(Expr::Async(inner)) if inner.capture.is_some() => Some(inner),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_ROOM, recorded_later};
    use quote::quote;

    #[test]
    fn counts_the_keys_of_every_record_call_at_any_depth() {
        let body = quote! {{
            record!(llm_d.a = 1);
            if ready {
                for x in xs {
                    ::llmd_runtime::record!(llm_d.b = x, llm_d.c = 2);
                }
            }
            let f = || record!(llm_d.d = 4,);
            event!("llm_d.e", llm_d.f = 5);
            let record = 1;
            record_total(record);
        }};
        assert_eq!(recorded_later(body), 4);
    }

    #[test]
    fn ignores_record_calls_it_cannot_read() {
        assert_eq!(recorded_later(quote! {{ record!(); record!(= 1); }}), 0);
    }

    #[test]
    fn caps_the_room_at_the_sdk_limit() {
        let calls = (0..MAX_ROOM + 5).map(|_| quote! { record!(llm_d.a = 1); });
        assert_eq!(recorded_later(quote! {{ #(#calls)* }}), MAX_ROOM);
    }
}
