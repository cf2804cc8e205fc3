//! Hook functions collected at link time: `#[before_checkpoint]` and `#[on_restore]`.

use std::panic::Location;
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
    /// Where the function is written, from [`here`].
    pub location: &'static Location<'static>,
    /// The macro's `deadline = "..."`.
    pub deadline: Option<std::time::Duration>,
    /// The wrapped function.
    pub run: HookFn,
}

/// The location of the call, at compile time: the macros call it spanned at the
/// function's name, so that it is the user's file and line.
#[doc(hidden)]
#[track_caller]
pub const fn here() -> &'static Location<'static> {
    Location::caller()
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
    label = "unsupported return type",
    note = "an `async fn` hook (returning `impl Future`) needs crac's `tokio` feature: `crac = {{ version = \"0.1\", features = [\"tokio\"] }}`"
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

/// Without the `tokio` feature an async hook cannot run: this bound says so.
#[cfg(not(feature = "tokio"))]
#[doc(hidden)]
pub fn block_on_hook<F>(_: F) -> Result<(), BoxError>
where
    F: std::future::Future + AsyncHooksNeedTokio,
{
    unreachable!("AsyncHooksNeedTokio has no implementation")
}

/// Implemented by nothing: the bound of `block_on_hook` without the `tokio` feature.
#[cfg(not(feature = "tokio"))]
#[diagnostic::on_unimplemented(
    message = "async crac hooks need crac's `tokio` feature",
    label = "this hook is `async`",
    note = "enable it: `crac = {{ version = \"0.1\", features = [\"tokio\"] }}`; async hooks then run on the application's tokio runtime"
)]
#[doc(hidden)]
pub trait AsyncHooksNeedTokio {}

/// A `before_checkpoint`/`after_restore` method named in `#[crac(...)]` (or a `with`
/// module's function): `fn(&S, &E)`, or with the `tokio` feature an `async fn`,
/// returning `()` or `Result<(), E>`. `Marker` only tells the two apart.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be this crac hook",
    label = "expected `fn(&{S}, &{E})`, or an `async fn` of that signature (crac feature `tokio`), returning `()` or `Result<(), E>`",
    note = "a crac hook returns `()` or `Result<(), E>` where `E: Into<crac::BoxError>`"
)]
#[doc(hidden)]
pub trait MethodHook<S: ?Sized, E, Marker> {
    /// Calls the hook and converts its result.
    fn call_hook(&self, owner: &S, event: &E) -> Result<(), BoxError>;
}

/// `Marker` of synchronous hook methods.
#[doc(hidden)]
#[derive(Debug)]
pub struct SyncHook<R>(std::marker::PhantomData<R>);

impl<S: ?Sized, E, R: HookResult, F: Fn(&S, &E) -> R> MethodHook<S, E, SyncHook<R>> for F {
    fn call_hook(&self, owner: &S, event: &E) -> Result<(), BoxError> {
        self(owner, event).into_hook_result()
    }
}
