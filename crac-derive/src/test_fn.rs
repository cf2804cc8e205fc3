//! `#[crac::test]`: a test whose setup is checkpointed with CRIU and restored as copies.
//!
//! The function is kept as written, inside the test libtest runs:
//!
//! ```text
//! #[test]                                 // the user's attributes, then
//! #[ignore = "crac::test needs ..."]      // only when the probe below finds CRIU unusable
//! fn name() -> R {
//!     fn name(trial: Trial) -> R { ... }  // the user's function
//!     name(::crac::testing::Trial::__new(module_path!(), "name", 3))
//! }
//! ```
//!
//! libtest cannot skip a test at run time, so whether CRIU can run is probed here, when
//! the test is compiled, and a test that could not run is marked ignored with the reason
//! (libtest prints it). Under `CI=true` nothing is ignored: a missing CRIU fails the
//! test. The probe reads `PATH`, `CRAC_CRIU` and `CI`; the expansion names them in
//! `option_env!`, so that changing any of them compiles the test, and probes, again.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, FnArg, Item, ItemFn, Lit, Safety, Type};

use crate::attr::Errors;

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
            let errors = errors.to_compile_errors();
            return quote!(#errors);
        }
        Err(error) => return error.to_compile_error(),
    };
    check_function(&func, &mut errors);
    if !errors.is_empty() {
        // The function alone, so that its body is still checked and its uses resolve.
        let errors = errors.to_compile_errors();
        return quote!(#item #errors);
    }
    let (attrs, vis, sig, block) = (&func.attrs, &func.vis, &func.sig, &func.block);
    let name = &sig.ident;
    let name_str = name.unraw().to_string();
    let output = &sig.output;
    let inner = quote!(#sig #block);
    let ignored = attrs.iter().any(|a| a.path().is_ident("ignore"));
    let ignore = match probe() {
        Some(reason) if !ignored => quote!(#[ignore = #reason]),
        _ => TokenStream::new(),
    };
    let trial = quote_spanned! {name.span()=>
        ::crac::testing::Trial::__new(::core::module_path!(), #name_str, #copies)
    };
    quote! {
        #(#attrs)*
        #[::core::prelude::v1::test]
        #ignore
        #vis fn #name() #output {
            const _: [::core::option::Option<&str>; 3] = [
                ::core::option_env!("CI"),
                ::core::option_env!("CRAC_CRIU"),
                ::core::option_env!("PATH"),
            ];
            #inner
            #name(#trial)
        }
    }
}

/// `copies = N` (default 1), N ≥ 1.
fn copies(args: TokenStream, errors: &mut Errors) -> usize {
    let mut copies: Option<Expr> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("copies") {
            let value: Expr = meta.value()?.parse()?;
            if copies.is_some() {
                return Err(meta.error("`copies` is given twice"));
            }
            copies = Some(value);
            Ok(())
        } else {
            let path = &meta.path;
            Err(meta.error(format!(
                "unknown #[crac::test] option `{}`: the one option is `copies = N`, the number \
                 of copies restored from the image",
                quote!(#path).to_string().replace(' ', "")
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
                "`copies` is a whole number of restored copies, at least 1",
            );
            1
        }
    }
}

/// Everything that keeps the function from being run as described.
fn check_function(func: &ItemFn, errors: &mut Errors) {
    let sig = &func.sig;
    if let Some(attr) = func.attrs.iter().find(|a| a.path().is_ident("test")) {
        errors.spanned(
            attr,
            "#[crac::test] makes the function a test already: remove `#[test]`",
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

/// Whether `ty` is written as `Trial` or a path to it. Checked here because a test
/// function's body is only compiled by `cargo test`: a wrong type would otherwise pass
/// `cargo build` and `cargo check`.
fn names_trial(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none()
        && path.path.segments.last().is_some_and(|last| last.ident == "Trial"))
}

/// Why CRIU cannot run where this test is compiled, unless under `CI=true`.
fn probe() -> Option<String> {
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        return None;
    }
    let why = if !is_root() {
        "crac::test needs root (CRIU restores processes as root)".to_string()
    } else if !criu_found() {
        "crac::test needs CRIU: none at CRAC_CRIU, on PATH, in /usr/local/sbin or /usr/sbin \
         (scripts/install-criu.sh installs it)"
            .to_string()
    } else {
        return None;
    };
    Some(format!(
        "{why}; found when the test was compiled: `cargo test -- --include-ignored` runs it anyway"
    ))
}

fn is_root() -> bool {
    // The effective uid: the second number of the `Uid:` line.
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Where the criu engine looks for it (`crac-criu`'s `sys/criu.rs`).
fn criu_found() -> bool {
    if let Some(path) = std::env::var_os("CRAC_CRIU").filter(|p| !p.is_empty()) {
        return std::path::Path::new(&path).is_file();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(["/usr/local/sbin".into(), "/usr/sbin".into()])
        .any(|dir| dir.join("criu").is_file())
}
