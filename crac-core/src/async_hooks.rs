//! Async hooks on the application's tokio runtime (feature `tokio`).
//!
//! The protocol itself is synchronous: each hook returns before the next one starts, and
//! the engine waits in place until the process runs again. An async hook is therefore
//! run to completion with `Handle::block_on` — which must not happen on a thread of the
//! runtime (it panics there, and on a current-thread runtime it would block the only
//! thread the awaited tasks can run on). [`off_runtime`] moves the whole protocol to a
//! thread of its own, remembered as the place where async hooks may block on the
//! application's runtime, while that runtime keeps running every other task: a hook
//! that waits for the server task to drain gets it drained.
//!
//! The tokio resources (`resources/tokio_listener.rs`, `resources/tokio_client.rs`) are
//! built on this; `crate::tokio` gathers both into the public namespace.

use std::cell::RefCell;
use std::future::Future;
use std::sync::{Mutex, PoisonError};

use tokio::runtime::Handle;

use crate::error::BoxError;
use crate::hooks::{HookResult, MethodHook};

thread_local! {
    /// On the protocol's own thread: the runtime async hooks run on.
    static PROTOCOL_RUNTIME: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

/// The application's runtime, remembered from the last async entry point it used: a
/// checkpoint requested from outside (`crac checkpoint PID`) runs its async hooks there,
/// so that runtime must still be running then.
static APPLICATION_RUNTIME: Mutex<Option<Handle>> = Mutex::new(None);

/// Runs `protocol` (a checkpoint entry point) on a thread of its own and awaits it; the
/// current runtime is where its async hooks run. Must be awaited on a tokio runtime.
pub async fn off_runtime<T: Send + 'static>(protocol: impl FnOnce() -> T + Send + 'static) -> T {
    let handle = remember_runtime();
    let (done, result) = tokio::sync::oneshot::channel();
    // As `std::thread::spawn` does: a process that cannot start a thread is out of
    // resources, and a checkpoint cannot help it.
    let thread = std::thread::Builder::new()
        .name("crac-protocol".into())
        .spawn(move || {
            PROTOCOL_RUNTIME.set(Some(handle));
            // The receiver only goes away if the awaiting task was cancelled: the
            // checkpoint still completed, and nobody is left to tell.
            let _ = done.send(protocol());
        })
        .expect("starting the crac-protocol thread");
    match result.await {
        Ok(value) => value,
        // It ended without an answer: it panicked; the panic goes on here.
        Err(_) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the protocol thread answers before it ends"),
        },
    }
}

/// Remembers the current runtime as the application's and returns it. Panics outside a
/// runtime, as `Handle::current` does.
pub fn remember_runtime() -> Handle {
    let handle = Handle::current();
    *APPLICATION_RUNTIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(handle.clone());
    handle
}

/// Runs an async hook to completion: on the application's runtime when the protocol
/// runs off it, on a private current-thread runtime when the program has none, and
/// never on a runtime thread, where blocking would panic or deadlock.
#[doc(hidden)]
pub fn block_on_hook<F>(future: F) -> Result<(), BoxError>
where
    F: Future,
    F::Output: HookResult,
{
    block_on_hook_on(None, future)
}

/// Refuses to wait on a thread of a tokio runtime outside the protocol's own thread:
/// the tasks a hook waits for may need that very thread.
pub(crate) fn refuse_on_runtime_thread() -> Result<(), BoxError> {
    if PROTOCOL_RUNTIME.with_borrow(Option::is_none) && Handle::try_current().is_ok() {
        return Err(
            "a hook cannot wait here: the checkpoint was started with a blocking \
                    call on a thread of the tokio runtime, which the tasks it waits for may \
                    need; start it with crac::tokio::checkpoint_restore().await (or \
                    crac::tokio::ready().await)"
                .into(),
        );
    }
    Ok(())
}

/// [`block_on_hook`], preferring `own` — the runtime a resource was made on — to the
/// remembered or a private one when the protocol does not run off a runtime.
pub(crate) fn block_on_hook_on<F>(own: Option<&Handle>, future: F) -> Result<(), BoxError>
where
    F: Future,
    F::Output: HookResult,
{
    if let Some(handle) = PROTOCOL_RUNTIME.with_borrow(Clone::clone) {
        return handle.block_on(future).into_hook_result();
    }
    refuse_on_runtime_thread()?;
    if let Some(handle) = own {
        return handle.block_on(future).into_hook_result();
    }
    let remembered = APPLICATION_RUNTIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some(handle) = remembered {
        return handle.block_on(future).into_hook_result();
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting a runtime for an async hook: {e}"))?
        .block_on(future)
        .into_hook_result()
}

/// `Marker` of async hook methods (see [`MethodHook`]).
#[doc(hidden)]
#[derive(Debug)]
pub struct AsyncHook<R>(std::marker::PhantomData<R>);

impl<S: ?Sized, E, R: HookResult, F: AsyncFn(&S, &E) -> R> MethodHook<S, E, AsyncHook<R>> for F {
    fn call_hook(&self, owner: &S, event: &E) -> Result<(), BoxError> {
        block_on_hook(self(owner, event))
    }
}

/// `future`'s output, or `None` once `deadline` has passed. The deadline is kept by a
/// thread of its own: the runtime may have no timer driver.
pub(crate) async fn within<T>(
    deadline: std::time::Duration,
    future: impl Future<Output = T>,
) -> Option<T> {
    let (expire, expired) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        let _ = expire.send(());
    });
    let mut future = std::pin::pin!(future);
    let mut expired = std::pin::pin!(expired);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(value) = future.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(value));
        }
        expired.as_mut().poll(cx).map(|_| None)
    })
    .await
}
