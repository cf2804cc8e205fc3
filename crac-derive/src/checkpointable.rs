//! `#[derive(Checkpointable)]`: parse → validate → expand.
//!
//! The generated code, for `#[crac(depends_on(Db), before_checkpoint = Self::flush)]
//! struct Cache { #[crac(resource)] conn: Conn, #[crac(reseed)] rng: Mutex<StdRng> }`:
//!
//! ```text
//! const _: () = {
//!     impl Ranked for Cache {
//!         const RANK: u32 = { let __crac_deps = [<Db as Ranked>::RANK]; rank_after(&__crac_deps) };
//!     }
//!     const _: u32 = <Cache as Ranked>::RANK;
//!     impl Resource for Cache {
//!         fn before_checkpoint(&self, __crac_event: &Checkpoint) -> Result<(), BoxError> {
//!             let mut __crac_steps = Steps::new(Resource::name(self), Phase::BeforeCheckpoint);
//!             __crac_steps.run("", || {
//!                 let __crac_hook: fn(&Self, &Checkpoint) -> _ = Self::flush;
//!                 HookResult::into_hook_result(__crac_hook(self, __crac_event))
//!             });
//!             __crac_steps.run("conn", || Delegate::before_checkpoint(&self.conn, __crac_event));
//!             __crac_steps.finish()
//!         }
//!         fn after_restore(&self, __crac_event: &Restore) -> Result<(), BoxError> {
//!             let mut __crac_steps = Steps::new(Resource::name(self), Phase::AfterRestore);
//!             __crac_steps.run("conn", || Delegate::after_restore(&self.conn, __crac_event));
//!             __crac_steps.run("rng", || Reseed::reseed(&self.rng));
//!             __crac_steps.finish()
//!         }
//!         fn rank(&self) -> u32 { <Self as Ranked>::RANK }
//!         // with `#[crac(deadline = "2s")]`: fn deadline(&self) -> Option<Duration> { Some(..) }
//!     }
//! };
//! ```
//!
//! All paths are absolute (`::crac::__private::...`). Generated locals and parameters
//! are prefixed `__crac_`: whatever their hygiene, a user's `const event`, `static steps`
//! or unit `struct hook` in scope would otherwise turn a binding of that name into a
//! pattern. A generic type's impl has the one bound `Type<T>: Send + Sync + 'static`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, GenericParam, Generics, Ident, LitStr, Member, Path, Type};

use crate::attr::{self, Errors, Opt, Site, Value};
use crate::call::{self, span_range};
use crate::deadline::{self, Deadline};
use crate::rank;
use crate::rng;
use crate::symbol::{self, Key};

pub(crate) fn derive(input: DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let model = validate(&input, &mut errors);
    // With errors, a minimal but valid implementation keeps one mistake from turning
    // into more errors wherever the type is registered or named as a dependency.
    let items = if errors.is_empty() {
        expand(&input, &model)
    } else {
        fallback(&input)
    };
    let errors = errors.to_compile_errors();
    quote! {
        #errors
        const _: () = { #items };
    }
}

/// The struct-level options.
#[derive(Default)]
struct TypeOpts {
    name: Option<LitStr>,
    depends_on: Option<Vec<Type>>,
    before_checkpoint: Option<Path>,
    after_restore: Option<Path>,
    deadline: Option<Deadline>,
}

/// What one field's options ask for.
enum Role {
    /// No option, or `skip`.
    Untouched {
        skipped: bool,
    },
    /// `same_in_every_copy`: a random generator left as it is, deliberately.
    SameInEveryCopy,
    Resource,
    With(Path),
    Reseed,
    Secret {
        reload: Option<Path>,
    },
    RestoreEnv {
        name: LitStr,
        required: bool,
    },
    Reopen {
        path_env: Option<LitStr>,
        create: bool,
    },
}

struct Field {
    member: Member,
    /// Its name in failures (`Type.label`): the field name, or its index.
    label: String,
    ty: Type,
    role: Role,
}

struct Model {
    opts: TypeOpts,
    fields: Vec<Field>,
}

fn validate(input: &DeriveInput, errors: &mut Errors) -> Model {
    for param in input.generics.lifetimes() {
        errors.spanned(
            param,
            format!(
                "Checkpointable types must be 'static: a registered resource lives as long as the \
                 process, so it cannot borrow `{}`; own the data or share it through an `Arc`",
                param.lifetime
            ),
        );
    }
    let opts = type_opts(
        &attr::parse_attrs(&input.attrs, Site::Struct, errors),
        errors,
    );
    let fields = match &input.data {
        Data::Struct(data) => data
            .fields
            .iter()
            .enumerate()
            .map(|(index, field)| {
                let label = field
                    .ident
                    .as_ref()
                    .map_or_else(|| index.to_string(), |ident| ident.unraw().to_string());
                let before = errors.count();
                let role = role(
                    &attr::parse_attrs(&field.attrs, Site::Field, errors),
                    errors,
                );
                // A field whose options are wrong may have meant one of the two.
                if let Role::Untouched { skipped } = role
                    && errors.count() == before
                    && rng::is_generator(&field.ty)
                {
                    errors.spanned(&field.ty, rng::message(&label, &field.ty, skipped));
                }
                Field {
                    member: field
                        .ident
                        .clone()
                        .map_or_else(|| Member::from(index), Member::Named),
                    label,
                    ty: field.ty.clone(),
                    role,
                }
            })
            .collect(),
        Data::Enum(data) => {
            errors.spanned(
                data.enum_token,
                "`#[derive(Checkpointable)]` supports structs only, not enums; implement \
                 `crac::Resource` by hand, or hold the enum in a field of a struct and give \
                 that field `#[crac(with = module)]`",
            );
            Vec::new()
        }
        Data::Union(data) => {
            errors.spanned(
                data.union_token,
                "`#[derive(Checkpointable)]` supports structs only, not unions; implement \
                 `crac::Resource` by hand",
            );
            Vec::new()
        }
    };
    Model { opts, fields }
}

fn type_opts(opts: &[Opt], errors: &mut Errors) -> TypeOpts {
    let mut out = TypeOpts::default();
    for opt in opts {
        match (opt.key, &opt.value) {
            (symbol::NAME, Value::Name(lit)) => {
                attr::set_once(&mut out.name, lit.clone(), opt, errors);
            }
            (symbol::DEPENDS_ON, Value::DependsOn(deps)) => {
                attr::set_once(&mut out.depends_on, deps.clone(), opt, errors);
            }
            (symbol::BEFORE_CHECKPOINT, Value::Path(path)) => {
                attr::set_once(&mut out.before_checkpoint, path.clone(), opt, errors);
            }
            (symbol::AFTER_RESTORE, Value::Path(path)) => {
                attr::set_once(&mut out.after_restore, path.clone(), opt, errors);
            }
            (symbol::DEADLINE, Value::Deadline(limit)) => {
                attr::set_once(&mut out.deadline, limit.clone(), opt, errors);
            }
            _ => unreachable!("attr only accepts struct keys with their value kind"),
        }
    }
    out
}

/// A field does one thing: only `secret` and `reload` go together.
fn role(opts: &[Opt], errors: &mut Errors) -> Role {
    let mut kept: Vec<&Opt> = Vec::new();
    for opt in opts {
        if kept.iter().any(|k| k.key == opt.key) {
            errors.spanned(&opt.ident, format!("duplicate `{}`", opt.key));
        } else if let Some(first) = kept.iter().find(|k| !compatible(k.key, opt.key)) {
            errors.spanned(&opt.ident, conflict(first.key, opt.key));
        } else {
            kept.push(opt);
        }
    }
    let find = |key: Key| kept.iter().find(|opt| opt.key == key);
    let path = |key: Key| {
        find(key).map(|opt| match &opt.value {
            Value::Path(path) => path.clone(),
            _ => unreachable!("attr parses `{key}` as a path"),
        })
    };
    let reload = path(symbol::RELOAD);
    let has = |key: Key| find(key).is_some();
    if let Some(opt) = find(symbol::RELOAD).filter(|_| !has(symbol::SECRET)) {
        errors.spanned(
            &opt.ident,
            format!(
                "`{}` only applies to secrets: write `#[crac({}, {})]`",
                symbol::RELOAD,
                symbol::SECRET,
                symbol::RELOAD.usage.trim_matches('`')
            ),
        );
    }
    if has(symbol::RESOURCE) {
        Role::Resource
    } else if let Some(module) = path(symbol::WITH) {
        Role::With(module)
    } else if has(symbol::RESEED) {
        Role::Reseed
    } else if has(symbol::SECRET) {
        Role::Secret { reload }
    } else if let Some(opt) = find(symbol::RESTORE_ENV) {
        match &opt.value {
            Value::RestoreEnv { name, required } => Role::RestoreEnv {
                name: name.clone(),
                required: *required,
            },
            _ => unreachable!("attr parses `restore_env` as a variable"),
        }
    } else if let Some(opt) = find(symbol::REOPEN) {
        match &opt.value {
            Value::Reopen { path_env, create } => Role::Reopen {
                path_env: path_env.clone(),
                create: *create,
            },
            _ => unreachable!("attr parses `reopen` with its options"),
        }
    } else if has(symbol::SAME_IN_EVERY_COPY) {
        Role::SameInEveryCopy
    } else {
        Role::Untouched {
            skipped: has(symbol::SKIP),
        }
    }
}

fn compatible(a: Key, b: Key) -> bool {
    [(a, b), (b, a)].contains(&(symbol::SECRET, symbol::RELOAD))
}

fn conflict(first: Key, then: Key) -> String {
    if first == symbol::SKIP || then == symbol::SKIP {
        let other = if first == symbol::SKIP { then } else { first };
        format!(
            "`{}` cannot be combined with `{other}`: a skipped field is left alone by crac",
            symbol::SKIP
        )
    } else {
        let roles: Vec<String> = symbol::FIELD_KEYS
            .iter()
            .filter(|key| ![symbol::RELOAD, symbol::SKIP].contains(key))
            .map(|key| match *key {
                symbol::SECRET => format!("`{key}` (optionally with `{}`)", symbol::RELOAD),
                _ => format!("`{key}`"),
            })
            .collect();
        format!(
            "`{then}` conflicts with `{first}`: a field takes one of {} or `{}`",
            roles.join(", "),
            symbol::SKIP
        )
    }
}

fn expand(input: &DeriveInput, model: &Model) -> TokenStream {
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let deps = model.opts.depends_on.as_deref().unwrap_or_default();
    let rank = rank::rank_expr(deps);
    let forced = if input.generics.params.is_empty() {
        rank::force(quote!(<#ident as ::crac::__private::Ranked>::RANK))
    } else {
        // `<Type<T> as Ranked>::RANK` cannot be named outside the impl: force what can be.
        let outside = rank::outside_impl(deps, &param_idents(&input.generics));
        if outside.is_empty() {
            TokenStream::new()
        } else {
            rank::force(rank::rank_expr(&outside))
        }
    };

    // Mixed-site locals: user paths expanded next to them cannot see or shadow them.
    // Prefixed as well: a user's `const event` in scope would still be found by the
    // binding, which would then be a pattern.
    let event = Ident::new("__crac_event", Span::mixed_site());
    let steps = Ident::new("__crac_steps", Span::mixed_site());
    // Through `MethodHook`, which takes `fn(&Self, &Event)` and, with crac's `tokio`
    // feature, `async fn`: a wrong signature or return type is reported at the path.
    let own = |path: &Option<Path>, event_ty: &str| {
        path.as_ref().map(|path| {
            let at = span_range(path);
            let event_ty = Ident::new(event_ty, at.0);
            let call = quote_spanned! {at.0=>
                ::crac::__private::MethodHook::<Self, ::crac::#event_ty, _>::call_hook(&#path, self, #event)
            };
            (String::new(), call)
        })
    };
    let field_steps: Vec<_> = model
        .fields
        .iter()
        .map(|field| field_steps(field, &event))
        .collect();
    // Before checkpoint: the type's own logic, then fields from the last one up;
    // after restore: the exact reverse.
    let before: Vec<_> = own(&model.opts.before_checkpoint, "Checkpoint")
        .into_iter()
        .chain(
            field_steps
                .iter()
                .rev()
                .filter_map(|(label, before, _)| before.clone().map(|step| (label.clone(), step))),
        )
        .collect();
    let after: Vec<_> = field_steps
        .iter()
        .filter_map(|(label, _, after)| after.clone().map(|step| (label.clone(), step)))
        .chain(own(&model.opts.after_restore, "Restore"))
        .collect();
    let before = hook_body(quote!(BeforeCheckpoint), before, &steps);
    let after = hook_body(quote!(AfterRestore), after, &steps);

    let name = model.opts.name.as_ref().map(|name| {
        quote! {
            fn name(&self) -> ::crac::__private::Cow<'_, str> {
                ::crac::__private::Cow::Borrowed(#name)
            }
        }
    });
    let deadline = model.opts.deadline.as_ref().map(|limit| {
        let limit = deadline::option_expr(Some(limit));
        quote! {
            fn deadline(&self) -> ::core::option::Option<::core::time::Duration> {
                #limit
            }
        }
    });
    let bounded = with_resource_bounds(ident, &input.generics);
    let (resource_generics, _, resource_where) = bounded.split_for_impl();
    // Spanned at the type's name: cycle errors then read "RANK of <impl at (the name)>".
    let ranked = quote_spanned! {ident.span()=>
        impl #impl_generics ::crac::__private::Ranked for #ident #ty_generics #where_clause {
            const RANK: ::core::primitive::u32 = #rank;
        }
    };
    quote! {
        #ranked
        #forced
        impl #resource_generics ::crac::Resource for #ident #ty_generics #resource_where {
            fn before_checkpoint(
                &self,
                #event: &::crac::Checkpoint,
            ) -> ::crac::__private::Result<(), ::crac::BoxError> {
                #before
            }
            fn after_restore(
                &self,
                #event: &::crac::Restore,
            ) -> ::crac::__private::Result<(), ::crac::BoxError> {
                #after
            }
            #name
            #deadline
            fn rank(&self) -> ::core::primitive::u32 {
                <Self as ::crac::__private::Ranked>::RANK
            }
        }
    }
}

/// A field's label and its steps before checkpoint and after restore. Each step is
/// spanned at the field's type (or the user's path), so that "does not implement
/// `Delegate`/`Reseed`/`Secret`" errors point at the field.
fn field_steps(field: &Field, event: &Ident) -> (String, Option<TokenStream>, Option<TokenStream>) {
    // `&self.member` runs from the type's first token to its last: trait errors
    // ("`u32` cannot be used with `#[crac(reseed)]`") underline the field's whole type.
    let (span, last) = span_range(&field.ty);
    let mut member = field.member.clone();
    match &mut member {
        Member::Named(ident) => ident.set_span(last),
        Member::Unnamed(index) => index.span = last,
    }
    let (before, after) = match &field.role {
        Role::Untouched { .. } | Role::SameInEveryCopy => (None, None),
        Role::Resource => (
            Some(
                quote_spanned!(span=> ::crac::__private::Delegate::before_checkpoint(&self.#member, #event)),
            ),
            Some(
                quote_spanned!(span=> ::crac::__private::Delegate::after_restore(&self.#member, #event)),
            ),
        ),
        Role::With(module) => {
            // `module::function(&field, event)` through `MethodHook`, like the type's own
            // hooks: sync or (feature `tokio`) async, errors reported at the module path.
            let (first, last) = span_range(module);
            let step = |function: &str, event_ty: &str| {
                let function = Ident::new(function, last);
                let event_ty = Ident::new(event_ty, first);
                quote_spanned! {first=>
                    ::crac::__private::MethodHook::<_, ::crac::#event_ty, _>::call_hook(
                        &#module::#function, &self.#member, #event)
                }
            };
            (
                Some(step("before_checkpoint", "Checkpoint")),
                Some(step("after_restore", "Restore")),
            )
        }
        Role::Reseed => (
            None,
            Some(quote_spanned!(span=> ::crac::__private::Reseed::reseed(&self.#member))),
        ),
        Role::RestoreEnv { name, required } => (
            None,
            Some(quote_spanned! {span=>
                ::crac::__private::apply_restore_env(&self.#member, #name, #required, #event)
            }),
        ),
        Role::Reopen { path_env, create } => {
            let label = &field.label;
            let path_env = match path_env {
                Some(name) => quote!(::core::option::Option::Some(#name)),
                None => quote!(::core::option::Option::None),
            };
            let file = quote_spanned!(span=> ::crac::__private::as_reopen(&self.#member));
            (
                Some(quote! {
                    ::crac::__private::detach_file(#file, &::crac::Resource::name(self), #label)
                }),
                Some(quote! {
                    ::crac::__private::reopen_file(
                        #file,
                        ::crac::__private::ReopenOptions { path_env: #path_env, create: #create },
                        #event,
                    )
                }),
            )
        }
        Role::Secret { reload } => {
            let wipe = quote_spanned! {span=> {
                ::crac::__private::Secret::wipe(&self.#member);
                ::crac::__private::secret_wiped()
            }};
            let reload = reload.as_ref().map(|path| {
                // The expected type names the secret's value: a function returning
                // something else is reported at the path, with both signatures.
                let at = span_range(path);
                let ty = &field.ty;
                let value = quote!(<#ty as ::crac::__private::Secret>::Value);
                let ret = quote!(::crac::__private::Result<#value, _>);
                let check = call::coerce(path, quote!(&Self), ret, at);
                let load = call::call(quote!(self), at);
                let question = quote_spanned!(at.1=> ?);
                quote_spanned! {at.0=> {
                    #check
                    ::crac::__private::Secret::replace(&self.#member, #load #question);
                    ::crac::__private::Result::Ok(())
                }}
            });
            (Some(wipe), reload)
        }
    };
    (field.label.clone(), before, after)
}

/// Runs every step through `Steps`, so that all run and their failures are collected.
fn hook_body(phase: TokenStream, steps: Vec<(String, TokenStream)>, var: &Ident) -> TokenStream {
    if steps.is_empty() {
        return quote!(::crac::__private::Result::Ok(()));
    }
    let (labels, steps): (Vec<_>, Vec<_>) = steps.into_iter().unzip();
    quote! {
        let mut #var = ::crac::__private::Steps::new(
            ::crac::Resource::name(self),
            ::crac::__private::Phase::#phase,
        );
        #( #var.run(#labels, || #steps); )*
        #var.finish()
    }
}

/// The generics plus `Type<T, ...>: Send + Sync + 'static`, as `Resource` requires of
/// `Self`. One bound on the type rather than one per parameter: `Pool<C>` holding a
/// `Mutex<C>` is `Sync` for any `C: Send`. Without type parameters the bound would be
/// trivial (and an unsatisfied one an error of its own), so it is left to the supertraits.
fn with_resource_bounds(ident: &Ident, generics: &Generics) -> Generics {
    let mut bounded = generics.clone();
    if generics.type_params().next().is_some() {
        let (_, ty_generics, _) = generics.split_for_impl();
        let bound: syn::WherePredicate = syn::parse_quote!(
            #ident #ty_generics: ::core::marker::Send + ::core::marker::Sync + 'static
        );
        bounded.make_where_clause().predicates.push(bound);
    }
    bounded
}

fn param_idents(generics: &Generics) -> Vec<Ident> {
    generics
        .params
        .iter()
        .filter_map(|param| match param {
            GenericParam::Type(param) => Some(param.ident.clone()),
            GenericParam::Const(param) => Some(param.ident.clone()),
            GenericParam::Lifetime(_) => None,
        })
        .collect()
}

/// After an error: rank 0 and hooks that do nothing. No `Resource` impl for a type that
/// borrows: it could not satisfy `'static` and would only add errors.
fn fallback(input: &DeriveInput) -> TokenStream {
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let ranked = quote! {
        impl #impl_generics ::crac::__private::Ranked for #ident #ty_generics #where_clause {
            const RANK: ::core::primitive::u32 = 0;
        }
    };
    if input.generics.lifetimes().next().is_some() {
        return ranked;
    }
    let bounded = with_resource_bounds(ident, &input.generics);
    let (resource_generics, _, resource_where) = bounded.split_for_impl();
    quote! {
        #ranked
        impl #resource_generics ::crac::Resource for #ident #ty_generics #resource_where {
            fn before_checkpoint(
                &self,
                _: &::crac::Checkpoint,
            ) -> ::crac::__private::Result<(), ::crac::BoxError> {
                ::crac::__private::Result::Ok(())
            }
            fn after_restore(
                &self,
                _: &::crac::Restore,
            ) -> ::crac::__private::Result<(), ::crac::BoxError> {
                ::crac::__private::Result::Ok(())
            }
        }
    }
}
