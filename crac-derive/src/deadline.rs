//! `deadline = "500ms"`: checked here, at compile time, with the grammar crac-core
//! applies at run time to `CRAC_HOOK_DEADLINE`.

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
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let per_unit = match unit {
        "ms" => Some(1),
        "s" => Some(1_000),
        "m" => Some(60_000),
        _ => None,
    };
    let millis = per_unit.and_then(|per_unit| number.parse::<u64>().ok()?.checked_mul(per_unit));
    match millis {
        Some(0) => Err(syn::Error::new_spanned(
            &lit,
            "a deadline must be longer than zero",
        )),
        Some(millis) => Ok(Deadline { lit, millis }),
        None => Err(syn::Error::new_spanned(
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
