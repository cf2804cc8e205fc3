//! `#[crac::test]`: a test whose setup is checkpointed with CRIU and restored as copies.
//!
//! The function is kept as written, renamed, beside the test libtest runs:
//!
//! ```text
//! ::crac::__crac_test! {                             // an error without crac's `testing` feature
//! #[doc(hidden)] #[allow(dead_code)]
//! fn __crac_test_name(trial: Trial) -> R { ... }   // the user's function, always compiled
//!
//! #[test]                                          // the user's attributes, then
//! #[ignore = "crac::test needs ..."]               // only when the probe below finds CRIU unusable
//! fn name() -> R {
//!     __crac_test_name(::crac::testing::Trial::__new(module_path!(), "name", 3))
//! }
//! }
//! ```
//!
//! libtest cannot skip a test at run time, so whether CRIU can run is probed here, when
//! the test is compiled, and a test that could not run is marked ignored with the reason
//! (libtest prints it; `--include-ignored` runs it anyway). Under `CI=true` nothing is
//! ignored: a missing CRIU fails the test. The expansion names `CI` and `CRAC_CRIU` in
//! `option_env!`, so that changing either compiles the test, and probes, again.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, FnArg, Item, ItemFn, Lit, Safety, Type};

use crate::attr::Errors;
use crate::symbol;

const USAGE: &str = "`#[crac::test] fn name(trial: crac::testing::Trial)`";

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let copies = copies(args, &mut errors);
    let func = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(func)) => func,
        Ok(other) => {
            errors.spanned(
                other,
                format!("#[crac::test] goes on a test function: {USAGE}"),
            );
            // The item stays, so that its uses elsewhere do not add errors.
            let errors = errors.to_compile_errors();
            return quote!(#item #errors);
        }
        Err(error) => return error.to_compile_error(),
    };
    check_function(&func, &mut errors);
    if !errors.is_empty() {
        // The function alone, so that its body is still checked and its uses resolve.
        let errors = errors.to_compile_errors();
        return quote!(#item #errors);
    }
    let (vis, block) = (&func.vis, &func.block);
    let name = &func.sig.ident;
    // libtest's name for the test keeps a raw identifier's `r#`.
    let name_str = name.to_string();
    let output = &func.sig.output;
    let mut sig = func.sig.clone();
    sig.ident = format_ident!("__crac_test_{}", name.unraw(), span = name.span());
    let body_fn = &sig.ident;
    // `#[ignore]` and `#[should_panic]` are the test's; the rest (docs, lints, cfg) is
    // the function's as much as the test's.
    let (test_attrs, fn_attrs): (Vec<_>, Vec<_>) = func
        .attrs
        .iter()
        .partition(|a| a.path().is_ident("ignore") || a.path().is_ident("should_panic"));
    let ignored = test_attrs.iter().any(|a| a.path().is_ident("ignore"));
    let ignore = match probe() {
        Some(reason) if !ignored => quote!(#[ignore = #reason]),
        _ => TokenStream::new(),
    };
    let trial = quote_spanned! {name.span()=>
        ::crac::testing::Trial::__new(::core::module_path!(), #name_str, #copies)
    };
    // Through the facade's gate: without crac's `testing` feature, one error naming it
    // instead of unresolved `crac::testing` paths.
    quote! { ::crac::__crac_test! {
        // Outside the test, so that `cargo check` and doc tests type-check the body too.
        #(#fn_attrs)*
        #[doc(hidden)]
        #[allow(dead_code, non_snake_case)]
        #vis #sig #block

        #(#fn_attrs)*
        #(#test_attrs)*
        #[::core::prelude::v1::test]
        #ignore
        #vis fn #name() #output {
            const _: [::core::option::Option<&str>; 2] =
                [::core::option_env!("CI"), ::core::option_env!("CRAC_CRIU")];
            #body_fn(#trial)
        }
    } }
}

/// `copies = N` (default 1), N ≥ 1.
fn copies(args: TokenStream, errors: &mut Errors) -> usize {
    let mut copies: Option<Expr> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident(&symbol::COPIES) {
            let value: Expr = meta.value()?.parse()?;
            if copies.is_some() {
                return Err(meta.error(format!("`{}` is given twice", symbol::COPIES)));
            }
            copies = Some(value);
            Ok(())
        } else {
            let path = &meta.path;
            Err(meta.error(format!(
                "unknown #[crac::test] option `{}`: the one option is {}, the number of copies \
                 restored from the image",
                quote!(#path).to_string().replace(' ', ""),
                symbol::COPIES.usage
            )))
        }
    });
    if let Err(error) = syn::parse::Parser::parse2(parser, args) {
        errors.push(error);
    }
    let Some(value) = copies else { return 1 };
    let number = match &value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => lit.base10_parse::<usize>().ok(),
        _ => None,
    };
    match number {
        Some(n) if n >= 1 => n,
        _ => {
            errors.spanned(
                &value,
                format!(
                    "`{}` is a whole number of restored copies, at least 1",
                    symbol::COPIES
                ),
            );
            1
        }
    }
}

/// Everything that keeps the function from being run as described.
fn check_function(func: &ItemFn, errors: &mut Errors) {
    let sig = &func.sig;
    // `#[test]`, `#[tokio::test]`, `#[core::prelude::v1::test]`: a test already.
    let is_test = |a: &&syn::Attribute| a.path().segments.last().is_some_and(|s| s.ident == "test");
    if let Some(attr) = func.attrs.iter().find(is_test) {
        errors.spanned(
            attr,
            "#[crac::test] makes the function a test: remove this test attribute",
        );
    }
    if let Some(token) = &sig.asyncness {
        errors.spanned(
            token,
            "#[crac::test] functions are not `async`: the checkpointed process starts its \
             own runtime inside `setup` (and each copy inside `each`) if it needs one",
        );
    }
    for (present, what) in [
        (sig.constness.is_some(), "`const`"),
        (matches!(sig.safety, Safety::Unsafe(_)), "`unsafe`"),
        (sig.abi.is_some(), "`extern`"),
    ] {
        if present {
            errors.push(syn::Error::new(
                sig.span(),
                format!("#[crac::test] functions cannot be {what}: {USAGE}"),
            ));
        }
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(
            &sig.generics,
            format!("#[crac::test] functions cannot be generic: {USAGE}"),
        );
    }
    let mut typed = 0;
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => errors.spanned(
                receiver,
                format!("#[crac::test] goes on a free function, not a method: {USAGE}"),
            ),
            FnArg::Typed(arg) => {
                typed += 1;
                if typed == 1 && !names_trial(&arg.ty) {
                    errors.spanned(
                        &arg.ty,
                        format!("the argument is the trial, a `crac::testing::Trial`: {USAGE}"),
                    );
                } else if typed > 1 {
                    errors.spanned(
                        input,
                        format!("#[crac::test] functions take one argument, the trial: {USAGE}"),
                    );
                }
            }
        }
    }
    if sig.inputs.is_empty() {
        errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            format!(
                "#[crac::test] functions take the trial, which checkpoints and restores: {USAGE}"
            ),
        ));
    }
}

/// Whether `ty` is written as `Trial` or a path to it: a wrong type gets this message
/// rather than a mismatch at the generated call.
fn names_trial(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none()
        && path.path.segments.last().is_some_and(|last| last.ident == "Trial"))
}

/// Why CRIU cannot run where this test is compiled, unless under `CI=true`: the probe
/// the runtime makes again before it starts (`crac-shared`).
fn probe() -> Option<String> {
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        return None;
    }
    let why = crac_shared::criu::probe().err()?;
    Some(format!(
        "crac::test needs CRIU, and root or rootless mode: {why} (as found when the test \
         was compiled); \
         `cargo test -- --include-ignored` runs it"
    ))
}
