//! Calls of functions the user names (hook functions, `Self::method` paths), generated
//! so that the compiler's errors about them point at the user's tokens.
//!
//! A proc macro cannot join spans on stable, but an expression or type generated to
//! start at one span and end at another is reported by the compiler as covering
//! everything in between: `at` pairs are the first and last spans to cover.

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};

/// The first and last spans of `tokens`.
pub(crate) fn span_range(tokens: &impl ToTokens) -> (Span, Span) {
    let mut tokens = tokens.to_token_stream().into_iter();
    let first = tokens
        .next()
        .map_or_else(Span::call_site, |token| token.span());
    let last = tokens.last().map_or(first, |token| token.span());
    (first, last)
}

/// The local holding the coerced function. It has call-site hygiene (its uses are
/// spanned at the user's tokens, for the errors), so it is named not to collide with
/// the user's items: a `const hook`, `static hook` or unit `struct hook` in scope would
/// make `let hook` a pattern. Nothing of the user's is expanded after it in its block.
fn hook() -> Ident {
    Ident::new("__crac_hook", Span::call_site())
}

/// `let __crac_hook: fn(params) -> ret = value;`. Coercing the user's function to the `fn`
/// pointer type crac calls turns any signature mismatch into one error, "expected fn
/// pointer `for<'a> fn(&'a Checkpoint) -> _`, found fn item `fn(&String) {flush}`", with
/// the expected type underlined over `at`. `ret` is usually `_`, left to the function.
pub(crate) fn coerce(
    value: impl ToTokens,
    params: TokenStream,
    ret: TokenStream,
    at: (Span, Span),
) -> TokenStream {
    let (first, last) = at;
    let mut ret: Vec<TokenTree> = ret.into_iter().collect();
    if let Some(token) = ret.last_mut() {
        token.set_span(last);
    }
    let hook = hook();
    let expected = quote_spanned!(first=> fn(#params) -> #(#ret)*);
    quote!(let #hook: #expected = #value;)
}

/// `__crac_hook(args)`, an expression covering `at`.
pub(crate) fn call(args: TokenStream, at: (Span, Span)) -> TokenStream {
    let mut hook = hook();
    hook.set_span(at.0);
    let mut args = Group::new(Delimiter::Parenthesis, args);
    args.set_span(at.1);
    quote!(#hook #args)
}

/// `HookResult::into_hook_result(expr)`: an unsupported return type is reported at
/// `expr`, with `HookResult`'s message.
pub(crate) fn into_hook_result(expr: TokenStream, first: Span) -> TokenStream {
    let convert = quote_spanned!(first=> ::crac::__private::HookResult::into_hook_result);
    quote!(#convert(#expr))
}
