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
use crate::symbol::{self, Key};

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

    /// How many errors so far: whether a step added any.
    pub(crate) fn count(&self) -> usize {
        self.0.iter().flat_map(|all| all.clone()).count()
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
    fn keys(self) -> &'static [Key] {
        match self {
            Site::Struct => symbol::STRUCT_KEYS,
            Site::Field => symbol::FIELD_KEYS,
            Site::HookFn => symbol::HOOK_FN_KEYS,
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

/// One option, as written.
pub(crate) struct Opt {
    pub(crate) key: Key,
    /// The key as written, for spans.
    pub(crate) ident: Ident,
    pub(crate) value: Value,
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
    /// `resource`, `skip`, `reseed`, `same_in_every_copy`, `secret`
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
    for attr in attrs
        .iter()
        .filter(|attr| attr.path().is_ident(symbol::ATTR))
    {
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
        Some(ident) => match Key::find(site.keys(), ident) {
            Some(key) => parse_value(&meta, key).map(|value| Opt {
                key,
                ident: ident.clone(),
                value,
            }),
            None => Err(unknown_key(&meta.path, &ident.unraw().to_string(), site)),
        },
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
    let valid: Vec<_> = site.keys().iter().map(|key| key.usage).collect();
    let elsewhere = [Site::Struct, Site::Field]
        .into_iter()
        .find(|other| *other != site && other.keys().iter().any(|key| key.name == name));
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

fn parse_value(meta: &ParseNestedMeta, key: Key) -> syn::Result<Value> {
    let input = meta.input;
    let value = match key {
        symbol::RESOURCE
        | symbol::SKIP
        | symbol::RESEED
        | symbol::SAME_IN_EVERY_COPY
        | symbol::SECRET => Value::Flag,
        symbol::DEPENDS_ON => {
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
        symbol::RESTORE_ENV => restore_env(meta)?,
        symbol::REOPEN => reopen(meta)?,
        symbol::DEADLINE => Value::Deadline(deadline::parse(string(meta, key)?)?),
        symbol::NAME => Value::Name(string(meta, key)?),
        _ => {
            equals(meta, key)?;
            let what = if key == symbol::WITH {
                "a module path"
            } else {
                "a path to a function"
            };
            let path = input.parse::<Path>().map_err(|e| {
                syn::Error::new(e.span(), format!("expected {what}: {}", key.usage))
            })?;
            Value::Path(path)
        }
    };
    if !input.is_empty() && !input.peek(Token![,]) {
        let message = match value {
            Value::Flag => format!("`{key}` takes no value: write {}", key.usage),
            _ => format!(
                "expected `,` after the value of `{key}`: write {}",
                key.usage
            ),
        };
        return Err(input.error(message));
    }
    Ok(value)
}

/// `= "..."`.
fn string(meta: &ParseNestedMeta, key: Key) -> syn::Result<LitStr> {
    equals(meta, key)?;
    meta.input
        .parse::<LitStr>()
        .map_err(|e| syn::Error::new(e.span(), format!("expected a string: {}", key.usage)))
}

/// `= "NAME"`, or `("NAME")` with `required` after the name: the variable first, as
/// the one thing the option is about.
fn restore_env(meta: &ParseNestedMeta) -> syn::Result<Value> {
    let input = meta.input;
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        let name = env_var(input, symbol::RESTORE_ENV)?;
        return Ok(Value::RestoreEnv {
            name,
            required: false,
        });
    }
    if !input.peek(syn::token::Paren) {
        return Err(needs(meta, symbol::RESTORE_ENV));
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
                symbol::RESTORE_ENV.usage
            ),
        ));
    }
    let name = env_var(content, symbol::RESTORE_ENV)?;
    let mut required = None;
    let mut errors = Errors::default();
    if !content.is_empty() {
        content.parse::<Token![,]>()?;
        let parser = syn::meta::parser(|option| {
            if option.path.is_ident(&symbol::REQUIRED) {
                flag(&option, symbol::REQUIRED, &mut required, &mut errors);
            } else {
                errors.spanned(
                    &option.path,
                    format!(
                        "unknown `{}` option `{}`: the only one is {}, as in \
                         `restore_env(\"NAME\", required)`",
                        symbol::RESTORE_ENV,
                        option.path.to_token_stream(),
                        symbol::REQUIRED.usage
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
        return Err(needs(meta, symbol::REOPEN));
    }
    if !meta.input.peek(syn::token::Paren) {
        return Ok(Value::Reopen {
            path_env,
            create: false,
        });
    }
    let mut errors = Errors::default();
    meta.parse_nested_meta(|option| {
        if option.path.is_ident(&symbol::CREATE) {
            flag(&option, symbol::CREATE, &mut create, &mut errors);
        } else if option.path.is_ident(&symbol::PATH_ENV) {
            match path_env_value(&option) {
                Ok(_) if path_env.is_some() => {
                    errors.spanned(&option.path, format!("duplicate `{}`", symbol::PATH_ENV));
                }
                Ok(lit) => path_env = Some(lit),
                Err(error) => errors.push(error),
            }
        } else {
            errors.spanned(
                &option.path,
                format!(
                    "unknown `{}` option `{}`: valid options are {} and {}",
                    symbol::REOPEN,
                    option.path.to_token_stream(),
                    symbol::CREATE.usage,
                    symbol::PATH_ENV.usage
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
            format!(
                "`{}` is written {}, naming a restore-time variable",
                symbol::PATH_ENV,
                symbol::PATH_ENV.usage
            ),
        ));
    }
    env_var(option.value()?, symbol::REOPEN)
}

/// An option inside another's parentheses that takes no value; a repetition is an error.
fn flag(option: &ParseNestedMeta, key: Key, slot: &mut Option<Path>, errors: &mut Errors) {
    if !option.input.is_empty() && !option.input.peek(Token![,]) {
        errors.spanned(&option.path, format!("`{key}` takes no value"));
    } else if slot.is_some() {
        errors.spanned(&option.path, format!("duplicate `{key}`"));
    } else {
        *slot = Some(option.path.clone());
    }
}

/// The name of an environment variable, as a string literal that can name one.
fn env_var(input: ParseStream, key: Key) -> syn::Result<LitStr> {
    let lit = input.parse::<LitStr>().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("expected the variable's name as a string: {}", key.usage),
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

fn equals(meta: &ParseNestedMeta, key: Key) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.input.parse::<Token![=]>().map(drop)
    } else {
        Err(needs(meta, key))
    }
}

fn needs(meta: &ParseNestedMeta, key: Key) -> syn::Error {
    syn::Error::new_spanned(&meta.path, format!("`{key}` is written {}", key.usage))
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
        errors.spanned(&opt.ident, format!("duplicate `{}`", opt.key));
    } else {
        *slot = Some(value);
    }
}
