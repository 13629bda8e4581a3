//! `#[derive(ErrorType)]`: a static `error.type` label per enum variant
//! (its name in snake case), or the type name in snake case for a struct.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields};

/// Expands the derive.
pub fn derive(input: DeriveInput) -> syn::Result<TokenStream> {
    let body = match &input.data {
        Data::Enum(data) if data.variants.is_empty() => quote! { match *self {} },
        Data::Enum(data) => {
            let arms = data.variants.iter().map(|variant| {
                let ident = &variant.ident;
                let label = snake_case(&ident.to_string());
                let pattern = match &variant.fields {
                    Fields::Unit => quote! { Self::#ident },
                    Fields::Unnamed(_) => quote! { Self::#ident(..) },
                    Fields::Named(_) => quote! { Self::#ident { .. } },
                };
                quote! { #pattern => #label }
            });
            quote! { match self { #(#arms,)* } }
        }
        Data::Struct(_) => {
            let label = snake_case(&input.ident.to_string());
            quote! { #label }
        }
        Data::Union(_) => {
            return Err(syn::Error::new_spanned(
                &input.ident,
                "#[derive(ErrorType)] supports enums and structs, not unions: implement `ErrorType` by hand",
            ));
        }
    };
    let ident = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::llmd_runtime::ErrorType for #ident #type_generics #where_clause {
            fn error_type(&self) -> &'static str {
                #body
            }
        }
    })
}

/// `ConnectionRefused` -> `connection_refused`, `HTTPError` -> `http_error`.
fn snake_case(name: &str) -> String {
    let name = name.strip_prefix("r#").unwrap_or(name);
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let previous = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let starts_word = match previous {
                None | Some('_') => false,
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                Some(p) => p.is_uppercase() && next.is_some_and(|n| n.is_lowercase()),
            };
            if starts_word {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn names_become_snake_case() {
        for (name, label) in [
            ("Timeout", "timeout"),
            ("ConnectionRefused", "connection_refused"),
            ("HTTPError", "http_error"),
            ("Http2Reset", "http2_reset"),
            ("NoPrefillHeader", "no_prefill_header"),
            ("IOError", "io_error"),
            ("already_snake", "already_snake"),
        ] {
            assert_eq!(snake_case(name), label);
        }
    }
}
