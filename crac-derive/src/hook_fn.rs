//! `#[crac::before_checkpoint]` and `#[crac::on_restore]` on free functions.
//!
//! The function is kept as written. Next to it, for `fn flush(event: &Checkpoint)`:
//!
//! ```text
//! #[doc(hidden)]
//! struct flush {}            // type namespace only: `depends_on(flush)` names it;
//!                            // spanned at the attribute, so no lint needs an `allow`
//! const _: () = {
//!     impl Ranked for flush { const RANK: u32 = { let __crac_deps = [...]; rank_after(&__crac_deps) }; }
//!     inventory::submit! { StaticHook {
//!         name: concat!(module_path!(), "::", "flush"),   // or the `name = "..."` given
//!         path: concat!(module_path!(), "::", "flush"),
//!         rank: <flush as Ranked>::RANK,
//!         location: here(),                                // spanned at `flush`: its file:line
//!         deadline: None,                                  // or Some(from_millis(..)) for `deadline = "..."`
//!         run: HookFn::BeforeCheckpoint(|__crac_event| {
//!             let __crac_hook: fn(&Checkpoint) -> _ = flush;
//!             HookResult::into_hook_result(__crac_hook(__crac_event))
//!         }),
//!     } }
//! };
//! ```
//!
//! The submitted static evaluates the rank, so a cycle is an error without a separate
//! forcing constant.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::{FnArg, Ident, Item, LitStr, ReturnType, Safety, Signature, Type};

use crate::attr::{self, Errors, Value};
use crate::call::{self, span_range};
use crate::deadline::{self, Deadline};
use crate::rank;

#[derive(Clone, Copy)]
pub(crate) enum HookKind {
    BeforeCheckpoint,
    OnRestore,
}

impl HookKind {
    fn attr(self) -> &'static str {
        match self {
            HookKind::BeforeCheckpoint => "#[crac::before_checkpoint]",
            HookKind::OnRestore => "#[crac::on_restore]",
        }
    }

    /// The event type's name, and the other kind's.
    fn events(self) -> (&'static str, &'static str) {
        match self {
            HookKind::BeforeCheckpoint => ("Checkpoint", "Restore"),
            HookKind::OnRestore => ("Restore", "Checkpoint"),
        }
    }

    fn signature(self) -> String {
        format!("`fn name(event: &crac::{})`", self.events().0)
    }
}

pub(crate) fn expand(kind: HookKind, args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let (name, deps, deadline) = options(args, &mut errors);
    let func = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(func)) => func,
        Ok(other) => {
            errors.spanned(
                other,
                format!(
                    "{} goes on a free function: {}",
                    kind.attr(),
                    kind.signature()
                ),
            );
            let errors = errors.to_compile_errors();
            return quote!(#item #errors);
        }
        Err(error) => {
            let error = error.to_compile_error();
            return quote!(#item #error);
        }
    };
    let sig = &func.sig;
    let fname = &sig.ident;
    let (arg, is_method) = check_signature(sig, kind, &mut errors);

    if is_method {
        // Inside an impl: no item can be added next to it, the error says why.
        let errors = errors.to_compile_errors();
        return quote!(#item #errors);
    }
    // The type `depends_on(fname)` resolves to. Its name is spanned at the attribute,
    // which is the macro's own code: lints about it (`non_camel_case_types`,
    // `dead_code`) are not reported, so it needs no `#[allow]`, which a user's `forbid`
    // of those lints would reject. Call-site hygiene: it resolves like the function's name.
    let vis = &func.vis;
    let mut marker_ident = fname.clone();
    marker_ident.set_span(Span::call_site());
    let marker = quote! {
        #[doc(hidden)]
        #vis struct #marker_ident {}
    };
    let items = if !errors.is_empty() {
        quote!(impl ::crac::__private::Ranked for #fname { const RANK: ::core::primitive::u32 = 0; })
    } else {
        let rank = rank::rank_expr(&deps);
        let variant = match kind {
            HookKind::BeforeCheckpoint => quote!(BeforeCheckpoint),
            HookKind::OnRestore => quote!(OnRestore),
        };
        let fname_str = fname.unraw().to_string();
        let path = quote!(::core::concat!(::core::module_path!(), "::", #fname_str));
        let name = match name {
            Some(name) => quote!(#name),
            None => path.clone(),
        };
        // `#[track_caller]` reports the call's span: the function's file and line.
        let location = quote_spanned!(fname.span()=> ::crac::__private::here());
        let deadline = deadline::option_expr(deadline.as_ref());
        let run = match &sig.asyncness {
            Some(token) => async_run_closure(fname, arg, token.span),
            None => run_closure(fname, arg, &sig.output, kind),
        };
        // Spanned at the function's name: a cycle error then reads "RANK of <impl at
        // (the name)>" for each function of the cycle.
        let ranked = quote_spanned! {fname.span()=>
            impl ::crac::__private::Ranked for #fname {
                const RANK: ::core::primitive::u32 = #rank;
            }
        };
        quote! {
            #ranked
            ::crac::__private::inventory::submit! {
                ::crac::__private::StaticHook {
                    name: #name,
                    path: #path,
                    rank: <#fname as ::crac::__private::Ranked>::RANK,
                    location: #location,
                    deadline: #deadline,
                    run: ::crac::__private::HookFn::#variant(#run),
                }
            }
        }
    };
    let errors = errors.to_compile_errors();
    quote! {
        #item
        #marker
        #errors
        const _: () = { #items };
    }
}

/// The closure stored in `HookFn`: calls the function and converts its result.
///
/// A wrong argument type fails the coercion to the `fn` pointer type crac calls, and is
/// reported at the user's argument type; an unsupported return type fails `HookResult`,
/// and is reported at the user's return type.
fn run_closure(
    fname: &Ident,
    arg: Option<&Type>,
    output: &ReturnType,
    kind: HookKind,
) -> TokenStream {
    let ret = match output {
        ReturnType::Type(_, ty) => span_range(ty),
        ReturnType::Default => (fname.span(), fname.span()),
    };
    let (param, check, args) = match arg {
        None => (
            quote!(_),
            call::coerce(fname, TokenStream::new(), quote!(_), ret),
            TokenStream::new(),
        ),
        Some(ty) => {
            let at = span_range(ty);
            let event_ty = Ident::new(kind.events().0, at.0);
            // The coerced value is spanned there too: the mismatch is the argument's.
            let mut value = fname.clone();
            value.set_span(at.0);
            let event = Ident::new("__crac_event", Span::mixed_site());
            let check = call::coerce(value, quote!(&::crac::#event_ty), quote!(_), at);
            (quote!(#event), check, quote!(#event))
        }
    };
    let convert = call::into_hook_result(call::call(args, ret), ret.0);
    quote! {
        |#param| {
            #check
            #convert
        }
    }
}

/// The closure stored in `HookFn` for an `async fn`: runs the future to completion on
/// the application's runtime (crac feature `tokio`; without it the error is reported at
/// `async`). Its argument type is checked at the call, against the event.
fn async_run_closure(fname: &Ident, arg: Option<&Type>, at: Span) -> TokenStream {
    let event = Ident::new("__crac_event", Span::mixed_site());
    let (param, args) = match arg {
        None => (quote!(_), TokenStream::new()),
        Some(_) => (quote!(#event), quote!(#event)),
    };
    let run = quote_spanned!(at=> ::crac::__private::block_on_hook(#fname(#args)));
    quote!(|#param| #run)
}

fn options(
    args: TokenStream,
    errors: &mut Errors,
) -> (Option<LitStr>, Vec<Type>, Option<Deadline>) {
    let (mut name, mut deps, mut deadline) = (None, None, None);
    for opt in attr::parse_args(args, errors) {
        match &opt.value {
            Value::Name(lit) => attr::set_once(&mut name, lit.clone(), &opt, errors),
            Value::DependsOn(types) => attr::set_once(&mut deps, types.clone(), &opt, errors),
            Value::Deadline(limit) => attr::set_once(&mut deadline, limit.clone(), &opt, errors),
            _ => unreachable!(
                "attr only accepts `name`, `depends_on` and `deadline` on hook functions"
            ),
        }
    }
    (name, deps.unwrap_or_default(), deadline)
}

/// Reports every unsupported part of the signature. Returns the event argument's type,
/// if any, and whether the function is a method.
fn check_signature<'a>(
    sig: &'a Signature,
    kind: HookKind,
    errors: &mut Errors,
) -> (Option<&'a Type>, bool) {
    let attr = kind.attr();
    if let Some(token) = &sig.constness {
        errors.spanned(token, format!("{attr} functions cannot be `const`"));
    }
    if let Safety::Unsafe(token) = &sig.safety {
        errors.spanned(
            token,
            format!(
                "{attr} functions cannot be `unsafe`: put the `unsafe` block inside the function"
            ),
        );
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, format!("{attr} functions cannot be `extern`"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(
            &sig.generics,
            format!(
                "{attr} functions cannot be generic: crac calls them through a plain `fn` \
                 pointer; write {} (an elided lifetime is fine)",
                kind.signature()
            ),
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, format!("{attr} functions cannot be variadic"));
    }

    let (event, other) = kind.events();
    let mut arg = None;
    let mut is_method = false;
    let mut typed_args = 0;
    for input in &sig.inputs {
        let typed = match input {
            FnArg::Receiver(receiver) => {
                is_method = true;
                let own = match kind {
                    HookKind::BeforeCheckpoint => "before_checkpoint",
                    HookKind::OnRestore => "after_restore",
                };
                errors.spanned(
                    receiver,
                    format!(
                        "{attr} goes on a free function, not a method: write {}; for logic \
                         that needs an instance, derive `Checkpointable` and use \
                         `#[crac({own} = Self::method)]`",
                        kind.signature(),
                    ),
                );
                continue;
            }
            FnArg::Typed(typed) => typed,
        };
        typed_args += 1;
        if typed_args > 1 {
            errors.spanned(
                input,
                format!(
                    "{attr} functions take at most one argument, the event: {}",
                    kind.signature()
                ),
            );
            continue;
        }
        match &*typed.ty {
            Type::Reference(reference) if reference.mutability.is_some() => errors.spanned(
                &typed.ty,
                format!("the event is passed by shared reference: `&crac::{event}`, not `&mut`"),
            ),
            // A likely mix-up, worth a better message than a type mismatch.
            Type::Reference(reference) if last_ident_is(&reference.elem, other) => {
                let right = match kind {
                    HookKind::BeforeCheckpoint => "#[crac::on_restore]",
                    HookKind::OnRestore => "#[crac::before_checkpoint]",
                };
                errors.spanned(
                    &typed.ty,
                    format!(
                        "{attr} functions receive `&crac::{event}`; `&{other}` is the event of \
                         {right} functions"
                    ),
                );
            }
            // Any other reference: the compiler checks it against the expected type.
            Type::Reference(_) => arg = Some(&*typed.ty),
            _ => errors.spanned(
                &typed.ty,
                format!("the event is passed by reference: write `&crac::{event}`"),
            ),
        }
    }
    (arg, is_method)
}

fn last_ident_is(ty: &Type, name: &str) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none()
        && path.path.segments.last().is_some_and(|segment| segment.ident == name))
}
