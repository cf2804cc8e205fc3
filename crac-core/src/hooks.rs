//! Hook functions collected at link time: `#[before_checkpoint]` and `#[on_restore]`.

use std::sync::OnceLock;

use crate::error::BoxError;
use crate::event::{Checkpoint, Restore};

/// One annotated function, submitted to `inventory` by the attribute macros.
#[doc(hidden)]
#[derive(Debug)]
pub struct StaticHook {
    /// The name in plans and errors: the macro's `name = "..."`, or else [`path`](Self::path).
    pub name: &'static str,
    /// `crate::module::function`, the function's full path: hooks count as registered in
    /// the order of their paths, whatever their names.
    pub path: &'static str,
    /// Its compile-time [`Ranked::RANK`](crate::Ranked::RANK).
    pub rank: u32,
    /// The wrapped function.
    pub run: HookFn,
}

/// Which event an annotated function takes.
#[doc(hidden)]
#[derive(Debug)]
pub enum HookFn {
    /// `#[before_checkpoint]`.
    BeforeCheckpoint(fn(&Checkpoint) -> Result<(), BoxError>),
    /// `#[on_restore]`.
    OnRestore(fn(&Restore) -> Result<(), BoxError>),
}

inventory::collect!(StaticHook);

/// Every hook linked into the program, sorted by full path (their registration order).
pub(crate) fn all() -> &'static [&'static StaticHook] {
    static SORTED: OnceLock<Vec<&'static StaticHook>> = OnceLock::new();
    SORTED.get_or_init(|| {
        let mut hooks: Vec<_> = inventory::iter::<StaticHook>.into_iter().collect();
        hooks.sort_by_key(|hook| hook.path);
        hooks
    })
}

/// What a hook function may return: `()` or `Result<(), E>` with `E: Into<BoxError>`.
#[diagnostic::on_unimplemented(
    message = "a crac hook must return `()` or `Result<(), E>` where `E: Into<crac::BoxError>`, not `{Self}`",
    label = "unsupported return type"
)]
#[doc(hidden)]
pub trait HookResult {
    /// Converts into the protocol's result type.
    fn into_hook_result(self) -> Result<(), BoxError>;
}

impl HookResult for () {
    fn into_hook_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> HookResult for Result<(), E> {
    fn into_hook_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}
