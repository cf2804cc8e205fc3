//! Parsing: `#[crac(...)]` attributes and the hook macros' arguments become an ordered
//! list of [`Opt`]s.
//!
//! This layer only checks that each key is allowed where it is written and that its
//! value is well-formed. Duplicates and conflicts need the whole list and are judged by
//! the callers. A malformed option is reported and skipped, so that every mistake in an
//! item is reported in one compilation.

use std::fmt::Display;

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Attribute, Ident, LitStr, Path, Token, Type};

use crate::deadline::{self, Deadline};

/// Every error of one macro invocation, reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// `value`, unless there was an error.
    pub(crate) fn into_result<T>(self, value: T) -> syn::Result<T> {
        self.0.map_or(Ok(value), Err)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// One `compile_error!` per error; nothing when there is none.
    pub(crate) fn to_compile_errors(&self) -> TokenStream {
        self.0
            .as_ref()
            .map(syn::Error::to_compile_error)
            .unwrap_or_default()
    }
}

/// Where options are written; decides which keys are valid there.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    Struct,
    Field,
    HookFn,
}

impl Site {
    fn keys(self) -> &'static [&'static str] {
        match self {
            Site::Struct => &[
                "name",
                "depends_on",
                "before_checkpoint",
                "after_restore",
                "deadline",
            ],
            Site::Field => &[
                "resource",
                "skip",
                "with",
                "reseed",
                "secret",
                "reload",
                "restore_env",
                "reopen",
            ],
            Site::HookFn => &["depends_on", "name", "deadline"],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Site::Struct => "on a struct",
            Site::Field => "on a field",
            Site::HookFn => "of a hook function",
        }
    }
}

/// How a key is written, for error messages.
fn usage(key: &str) -> &'static str {
    match key {
        "name" => "`name = \"...\"`",
        "deadline" => "`deadline = \"500ms\"` (`ms`, `s` or `m`)",
        "depends_on" => "`depends_on(Type, hook_fn, ...)`",
        "before_checkpoint" => "`before_checkpoint = Self::method`",
        "after_restore" => "`after_restore = Self::method`",
        "with" => "`with = module`",
        "reload" => "`reload = Self::method`",
        "resource" => "`resource`",
        "skip" => "`skip`",
        "reseed" => "`reseed`",
        "secret" => "`secret`",
        "restore_env" => "`restore_env = \"NAME\"` (or `restore_env(\"NAME\", required)`)",
        "reopen" => "`reopen` (or `reopen(create, path_env = \"VAR\")`)",
        _ => unreachable!("every key has a usage"),
    }
}

/// One option, as written.
pub(crate) struct Opt {
    /// The key as written, for spans and messages (`r#` stripped by [`Opt::name`]).
    pub(crate) key: Ident,
    pub(crate) value: Value,
}

impl Opt {
    pub(crate) fn name(&self) -> String {
        self.key.unraw().to_string()
    }
}

pub(crate) enum Value {
    /// `name = "..."`
    Name(LitStr),
    /// `deadline = "2s"`
    Deadline(Deadline),
    /// `depends_on(A, b, c::D)`
    DependsOn(Vec<Type>),
    /// `before_checkpoint`, `after_restore`, `with`, `reload`: `key = path`
    Path(Path),
    /// `resource`, `skip`, `reseed`, `secret`
    Flag,
    /// `restore_env = "NAME"`, `restore_env("NAME")`, `restore_env("NAME", required)`
    RestoreEnv { name: LitStr, required: bool },
    /// `reopen`, `reopen(create, path_env = "VAR")`
    Reopen {
        path_env: Option<LitStr>,
        create: bool,
    },
}

/// The options of every `#[crac(...)]` among `attrs`, in source order.
pub(crate) fn parse_attrs(attrs: &[Attribute], site: Site, errors: &mut Errors) -> Vec<Opt> {
    let mut opts = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("crac")) {
        let result = attr.parse_nested_meta(|meta| {
            parse_opt(meta, site, &mut opts, errors);
            Ok(())
        });
        // Only structural errors get here (`#[crac]`, a missing comma...): the rest of
        // this attribute is unreadable, the other attributes are still parsed.
        if let Err(error) = result {
            errors.push(error);
        }
    }
    opts
}

/// The options of `#[crac::before_checkpoint(...)]` / `#[crac::on_restore(...)]`.
pub(crate) fn parse_args(args: TokenStream, errors: &mut Errors) -> Vec<Opt> {
    let mut opts = Vec::new();
    let parser = syn::meta::parser(|meta| {
        parse_opt(meta, Site::HookFn, &mut opts, errors);
        Ok(())
    });
    if let Err(error) = parser.parse2(args) {
        errors.push(error);
    }
    opts
}

fn parse_opt(meta: ParseNestedMeta, site: Site, opts: &mut Vec<Opt>, errors: &mut Errors) {
    let result = match meta.path.get_ident() {
        Some(key) => {
            let name = key.unraw().to_string();
            if site.keys().contains(&name.as_str()) {
                parse_value(&meta, &name).map(|value| Opt {
                    key: key.clone(),
                    value,
                })
            } else {
                Err(unknown_key(&meta.path, &name, site))
            }
        }
        None => Err(unknown_key(
            &meta.path,
            &meta.path.to_token_stream().to_string(),
            site,
        )),
    };
    match result {
        Ok(opt) => opts.push(opt),
        Err(error) => {
            errors.push(error);
            skip_to_comma(meta.input);
        }
    }
}

fn unknown_key(path: &Path, name: &str, site: Site) -> syn::Error {
    let valid: Vec<_> = site.keys().iter().map(|key| usage(key)).collect();
    let elsewhere = [Site::Struct, Site::Field]
        .into_iter()
        .find(|other| *other != site && other.keys().contains(&name));
    let message = match elsewhere {
        Some(other) => format!(
            "`{name}` is an option {}, not {}; valid here: {}",
            other.describe(),
            site.describe(),
            valid.join(", ")
        ),
        None => format!(
            "unknown crac option `{name}`; valid options {}: {}",
            site.describe(),
            valid.join(", ")
        ),
    };
    syn::Error::new_spanned(path, message)
}

fn parse_value(meta: &ParseNestedMeta, key: &str) -> syn::Result<Value> {
    let input = meta.input;
    let value = match key {
        "resource" | "skip" | "reseed" | "secret" => Value::Flag,
        "depends_on" => {
            if !input.peek(syn::token::Paren) {
                return Err(needs(meta, key));
            }
            let content;
            syn::parenthesized!(content in input);
            let deps = Punctuated::<Type, Token![,]>::parse_terminated(&content).map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "expected a dependency: a `Checkpointable` type or a hook function, \
                     as in `depends_on(Database, flush_logs)`",
                )
            })?;
            Value::DependsOn(deps.into_iter().collect())
        }
        "restore_env" => restore_env(meta)?,
        "reopen" => reopen(meta)?,
        "deadline" => {
            equals(meta, key)?;
            let lit = input.parse::<LitStr>().map_err(|e| {
                syn::Error::new(e.span(), format!("expected a string: {}", usage(key)))
            })?;
            Value::Deadline(deadline::parse(lit)?)
        }
        "name" => {
            equals(meta, key)?;
            let lit = input.parse::<LitStr>().map_err(|e| {
                syn::Error::new(e.span(), format!("expected a string: {}", usage(key)))
            })?;
            Value::Name(lit)
        }
        _ => {
            equals(meta, key)?;
            let what = if key == "with" {
                "a module path"
            } else {
                "a path to a function"
            };
            let path = input.parse::<Path>().map_err(|e| {
                syn::Error::new(e.span(), format!("expected {what}: {}", usage(key)))
            })?;
            Value::Path(path)
        }
    };
    if !input.is_empty() && !input.peek(Token![,]) {
        let message = match value {
            Value::Flag => format!("`{key}` takes no value: write {}", usage(key)),
            _ => format!(
                "expected `,` after the value of `{key}`: write {}",
                usage(key)
            ),
        };
        return Err(input.error(message));
    }
    Ok(value)
}

/// `= "NAME"`, or `("NAME")` with `required` after the name: the variable first, as
/// the one thing the option is about.
fn restore_env(meta: &ParseNestedMeta) -> syn::Result<Value> {
    let input = meta.input;
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        let name = env_var(input, "restore_env")?;
        return Ok(Value::RestoreEnv {
            name,
            required: false,
        });
    }
    if !input.peek(syn::token::Paren) {
        return Err(needs(meta, "restore_env"));
    }
    let content;
    syn::parenthesized!(content in input);
    let result = restore_env_list(&content);
    // After an error, the rest of the list is not read: consumed here, it is not
    // reported a second time as unexpected tokens.
    content.parse::<TokenStream>()?;
    result
}

fn restore_env_list(content: ParseStream) -> syn::Result<Value> {
    if content.peek(Ident::peek_any) && content.peek2(Token![=]) {
        let key = content.call(Ident::parse_any)?;
        return Err(syn::Error::new_spanned(
            &key,
            format!(
                "`restore_env` takes the variable's name first, as a string, not `{key} = ...`: \
                 write {}",
                usage("restore_env")
            ),
        ));
    }
    let name = env_var(content, "restore_env")?;
    let mut required = None;
    let mut errors = Errors::default();
    if !content.is_empty() {
        content.parse::<Token![,]>()?;
        let parser = syn::meta::parser(|option| {
            if option.path.is_ident("required") {
                flag(&option, "required", &mut required, &mut errors);
            } else {
                errors.spanned(
                    &option.path,
                    format!(
                        "unknown `restore_env` option `{}`: the only one is `required`, as in \
                         `restore_env(\"NAME\", required)`",
                        option.path.to_token_stream()
                    ),
                );
            }
            skip_to_comma(option.input);
            Ok(())
        });
        parser.parse2(content.parse::<TokenStream>()?)?;
    }
    errors.into_result(Value::RestoreEnv {
        name,
        required: required.is_some(),
    })
}

/// Bare, or with options in parentheses: `create` and `path_env = "VAR"`, in any order.
fn reopen(meta: &ParseNestedMeta) -> syn::Result<Value> {
    let mut create = None;
    let mut path_env = None;
    if meta.input.peek(Token![=]) {
        return Err(needs(meta, "reopen"));
    }
    if !meta.input.peek(syn::token::Paren) {
        return Ok(Value::Reopen {
            path_env,
            create: false,
        });
    }
    let mut errors = Errors::default();
    meta.parse_nested_meta(|option| {
        if option.path.is_ident("create") {
            flag(&option, "create", &mut create, &mut errors);
        } else if option.path.is_ident("path_env") {
            match path_env_value(&option) {
                Ok(_) if path_env.is_some() => {
                    errors.spanned(&option.path, "duplicate `path_env`");
                }
                Ok(lit) => path_env = Some(lit),
                Err(error) => errors.push(error),
            }
        } else {
            errors.spanned(
                &option.path,
                format!(
                    "unknown `reopen` option `{}`: valid options are `create` and \
                     `path_env = \"VAR\"`",
                    option.path.to_token_stream()
                ),
            );
        }
        skip_to_comma(option.input);
        Ok(())
    })?;
    errors.into_result(Value::Reopen {
        path_env,
        create: create.is_some(),
    })
}

fn path_env_value(option: &ParseNestedMeta) -> syn::Result<LitStr> {
    if !option.input.peek(Token![=]) {
        return Err(syn::Error::new_spanned(
            &option.path,
            "`path_env` is written `path_env = \"VAR\"`, naming a restore-time variable",
        ));
    }
    env_var(option.value()?, "reopen")
}

/// An option inside another's parentheses that takes no value; a repetition is an error.
fn flag(option: &ParseNestedMeta, key: &str, slot: &mut Option<Path>, errors: &mut Errors) {
    if !option.input.is_empty() && !option.input.peek(Token![,]) {
        errors.spanned(&option.path, format!("`{key}` takes no value"));
    } else if slot.is_some() {
        errors.spanned(&option.path, format!("duplicate `{key}`"));
    } else {
        *slot = Some(option.path.clone());
    }
}

/// The name of an environment variable, as a string literal that can name one.
fn env_var(input: ParseStream, key: &str) -> syn::Result<LitStr> {
    let lit = input.parse::<LitStr>().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("expected the variable's name as a string: {}", usage(key)),
        )
    })?;
    let name = lit.value();
    if name.is_empty() || name.contains(['=', '\0']) {
        return Err(syn::Error::new_spanned(
            &lit,
            "not a valid environment variable name: it must be non-empty, without `=` or NUL",
        ));
    }
    Ok(lit)
}

fn equals(meta: &ParseNestedMeta, key: &str) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.input.parse::<Token![=]>().map(drop)
    } else {
        Err(needs(meta, key))
    }
}

fn needs(meta: &ParseNestedMeta, key: &str) -> syn::Error {
    syn::Error::new_spanned(&meta.path, format!("`{key}` is written {}", usage(key)))
}

/// Moves past a malformed option so that the next one can still be read.
fn skip_to_comma(input: ParseStream) {
    while !input.is_empty() && !input.peek(Token![,]) {
        if input.parse::<TokenTree>().is_err() {
            return;
        }
    }
}

/// Stores the value of a key that may be given once; a repetition is an error at the
/// repeated key.
pub(crate) fn set_once<T>(slot: &mut Option<T>, value: T, opt: &Opt, errors: &mut Errors) {
    if slot.is_some() {
        errors.spanned(&opt.key, format!("duplicate `{}`", opt.name()));
    } else {
        *slot = Some(value);
    }
}
