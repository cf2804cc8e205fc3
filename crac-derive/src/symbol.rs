//! Every key of `#[crac(...)]` and of the hook macros' arguments, once: its name as
//! written and how it is written, for parsing, validation and error messages alike.

use std::fmt;

use syn::Ident;
use syn::ext::IdentExt;

/// The attribute the derive reads: `#[crac(...)]`.
pub(crate) const ATTR: &str = "crac";

/// An option's key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    /// The key as written.
    pub(crate) name: &'static str,
    /// How the key is written, for error messages.
    pub(crate) usage: &'static str,
}

const fn key(name: &'static str, usage: &'static str) -> Key {
    Key { name, usage }
}

pub(crate) const NAME: Key = key("name", "`name = \"...\"`");
pub(crate) const DEPENDS_ON: Key = key("depends_on", "`depends_on(Type, hook_fn, ...)`");
pub(crate) const BEFORE_CHECKPOINT: Key =
    key("before_checkpoint", "`before_checkpoint = Self::method`");
pub(crate) const AFTER_RESTORE: Key = key("after_restore", "`after_restore = Self::method`");
pub(crate) const DEADLINE: Key = key("deadline", "`deadline = \"500ms\"` (`ms`, `s` or `m`)");
pub(crate) const RESOURCE: Key = key("resource", "`resource`");
pub(crate) const SKIP: Key = key("skip", "`skip`");
pub(crate) const WITH: Key = key("with", "`with = module`");
pub(crate) const RESEED: Key = key("reseed", "`reseed`");
pub(crate) const SAME_IN_EVERY_COPY: Key = key("same_in_every_copy", "`same_in_every_copy`");
pub(crate) const SECRET: Key = key("secret", "`secret`");
pub(crate) const RELOAD: Key = key("reload", "`reload = Self::method`");
pub(crate) const RESTORE_ENV: Key = key(
    "restore_env",
    "`restore_env = \"NAME\"` (or `restore_env(\"NAME\", required)`)",
);
pub(crate) const REOPEN: Key = key(
    "reopen",
    "`reopen` (or `reopen(create, path_env = \"VAR\")`)",
);

/// The keys of `#[crac(...)]` on a struct.
pub(crate) const STRUCT_KEYS: &[Key] =
    &[NAME, DEPENDS_ON, BEFORE_CHECKPOINT, AFTER_RESTORE, DEADLINE];
/// The keys of `#[crac(...)]` on a field.
pub(crate) const FIELD_KEYS: &[Key] = &[
    RESOURCE,
    SKIP,
    WITH,
    RESEED,
    SAME_IN_EVERY_COPY,
    SECRET,
    RELOAD,
    RESTORE_ENV,
    REOPEN,
];
/// The arguments of `#[crac::before_checkpoint(...)]` and `#[crac::on_restore(...)]`.
pub(crate) const HOOK_FN_KEYS: &[Key] = &[DEPENDS_ON, NAME, DEADLINE];

/// Inside `reopen(...)`.
pub(crate) const CREATE: Key = key("create", "`create`");
pub(crate) const PATH_ENV: Key = key("path_env", "`path_env = \"VAR\"`");
/// Inside `restore_env(...)`.
pub(crate) const REQUIRED: Key = key("required", "`required`");
/// The one argument of `#[crac::test(...)]`.
pub(crate) const COPIES: Key = key("copies", "`copies = N`");

impl Key {
    /// The key among `keys` that `ident` names (`r#` stripped).
    pub(crate) fn find(keys: &[Key], ident: &Ident) -> Option<Key> {
        let name = ident.unraw().to_string();
        keys.iter().copied().find(|key| key.name == name)
    }
}

impl PartialEq<Key> for Ident {
    fn eq(&self, key: &Key) -> bool {
        self == key.name
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}
