//! Ranks, shared by the derive and the hook macros: `impl Ranked` with
//! `RANK = rank_after(&[<Dep as Ranked>::RANK, ...])`, so that the compiler computes the
//! dependency graph's order and rejects its cycles.

use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::Type;
use syn::spanned::Spanned;

/// `rank_after(&[<Dep as Ranked>::RANK, ...])`. Each term carries the span of the
/// dependency as the user wrote it, so "not found" and "not `Ranked`" errors point there.
pub(crate) fn rank_expr(deps: &[Type]) -> TokenStream {
    let ranks = deps
        .iter()
        .map(|dep| quote_spanned!(dep.span()=> <#dep as ::crac::__private::Ranked>::RANK));
    // A local rather than `&[...]`: a promoted constant would add three more notes to
    // every link of a cycle error. Prefixed: a user's `const deps` in scope would turn
    // `let deps` into a pattern.
    quote!({
        let __crac_deps: [::core::primitive::u32; _] = [#(#ranks),*];
        ::crac::__private::rank_after(&__crac_deps)
    })
}

/// Forces the evaluation of a rank expression. Constants are evaluated only when used,
/// and a cycle (A → B → C → A) is only an error (E0391) once something evaluates it:
/// without this, a cycle between types nobody registers would compile.
pub(crate) fn force(expr: TokenStream) -> TokenStream {
    quote!(const _: ::core::primitive::u32 = #expr;)
}

/// The dependencies a forced evaluation can name outside the impl: those that do not
/// mention the impl's generic parameters (or `Self`).
pub(crate) fn outside_impl(deps: &[Type], params: &[Ident]) -> Vec<Type> {
    fn mentions(tokens: TokenStream, params: &[Ident]) -> bool {
        tokens.into_iter().any(|tree| match tree {
            TokenTree::Ident(ident) => ident == "Self" || params.contains(&ident),
            TokenTree::Group(group) => mentions(group.stream(), params),
            _ => false,
        })
    }
    deps.iter()
        .filter(|dep| !mentions(dep.to_token_stream(), params))
        .cloned()
        .collect()
}
