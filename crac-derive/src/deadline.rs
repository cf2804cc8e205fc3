//! `deadline = "500ms"`: checked here, at compile time, with the grammar crac-core
//! applies at run time to `CRAC_HOOK_DEADLINE` (both from `crac-shared`).

use crac_shared::deadline::{Malformed, parse_millis};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::LitStr;

/// A deadline as written, and its milliseconds.
#[derive(Clone)]
pub(crate) struct Deadline {
    lit: LitStr,
    millis: u64,
}

/// A whole, non-zero number of `ms`, `s` or `m`; an error at the string otherwise.
pub(crate) fn parse(lit: LitStr) -> syn::Result<Deadline> {
    let text = lit.value();
    match parse_millis(&text) {
        Ok(millis) => Ok(Deadline { lit, millis }),
        Err(Malformed::Zero) => Err(syn::Error::new_spanned(&lit, Malformed::Zero)),
        Err(Malformed::NotADeadline) => Err(syn::Error::new_spanned(
            &lit,
            format!(
                "`{text}` is not a deadline: write a whole number followed by `ms`, `s` or `m`, \
                 as in `deadline = \"500ms\"`, `\"2s\"` or `\"1m\"`"
            ),
        )),
    }
}

/// `Option<Duration>` for the generated code, spanned at the user's string.
pub(crate) fn option_expr(deadline: Option<&Deadline>) -> TokenStream {
    match deadline {
        Some(Deadline { lit, millis }) => quote_spanned! {lit.span()=>
            ::core::option::Option::Some(::core::time::Duration::from_millis(#millis))
        },
        None => quote!(::core::option::Option::None),
    }
}
