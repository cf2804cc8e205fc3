//! Coordinated Restore at Checkpoint for Rust.
//!
//! A warmed-up process is checkpointed to an image and later restored — once or many
//! times — in milliseconds. Sockets, files, random seeds and secrets hold state that is
//! wrong or dangerous after a restore, so the application *coordinates*: each resource
//! releases such state before the checkpoint and re-creates it after the restore.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use crac::{BoxError, Checkpoint, Checkpointable, Restore};
//!
//! #[derive(Checkpointable)]
//! #[crac(name = "cache", before_checkpoint = Self::flush, after_restore = Self::reload)]
//! struct Cache {
//!     entries: Mutex<Vec<String>>,
//! }
//!
//! impl Cache {
//!     fn flush(&self, _: &Checkpoint) -> Result<(), BoxError> { Ok(()) }
//!     fn reload(&self, _: &Restore) -> Result<(), BoxError> { Ok(()) }
//! }
//!
//! #[crac::on_restore(depends_on(Cache))]
//! fn announce(restore: &Restore) {
//!     println!("running again ({:?})", restore.outcome());
//! }
//!
//! let cache = Arc::new(Cache { entries: Mutex::new(Vec::new()) });
//! crac::register(&cache);
//! crac::use_engine("simulate")?;
//! let restore = crac::checkpoint_restore()?;
//! assert!(restore.is_restored());
//! # Ok::<(), crac::Error>(())
//! ```
//!
//! See the README for the semantics table and the engines.

pub use crac_core::{
    BlockingConnection, BlockingListener, BoxError, Checkpoint, Context, DeadlineExceeded, Error,
    Failure, Failures, Gate, Outcome, Pass, Phase, Plan, PlanEntry, PlanEntryKind, Ranked,
    Resource, Restore, ScrubbingAlloc, engine, field, global, instance_id, plan, rank_after,
    register, register_engine, use_engine,
};
#[cfg(unix)]
pub use crac_core::{FdClaim, claim_fd, claimed_fds};
/// The CRIU engine: the engine itself and the errors it reports.
#[cfg(all(feature = "criu", target_os = "linux"))]
pub mod criu {
    pub use crac_criu::{
        Criu, Error, FdAction, FdKind, FdPolicy, HelperFailure, NotCheckpointable, OpenFd,
        set_fd_policy,
    };
}
#[cfg(all(feature = "criu", target_os = "linux"))]
pub use crac_criu::{at_consistent_point, checkpoint_on_request, ready, secret_env};
/// `#[crac::test]`'s runtime: checkpoint a test's setup, restore copies, collect their
/// values.
#[cfg(all(feature = "criu", target_os = "linux"))]
pub mod testing {
    pub use crac_criu::testing::{Trial, Value};
}

/// Notifies every participant, asks the selected engine for an image, and returns once
/// the process runs again — restored, left running, or rolled back after a failure.
///
/// Calls from several threads are serialized. Resources registered while a checkpoint
/// is in progress are not notified by it; the next checkpoint includes them.
pub fn checkpoint_restore() -> Result<Restore, Error> {
    // Keeps the criu engine (found through link-time registration only) linked in.
    #[cfg(all(feature = "criu", target_os = "linux"))]
    std::hint::black_box(crac_criu::ensure_linked());
    crac_core::checkpoint_restore()
}
pub use crac_derive::{Checkpointable, before_checkpoint, on_restore, test};

/// Checkpoints started from async code (feature `tokio`): the protocol runs on a thread
/// of its own while the application's runtime keeps running its tasks, and async hooks
/// (`async fn` in `#[derive(Checkpointable)]` and the hook attributes) run on that
/// runtime. Works on current-thread and multi-thread runtimes, from `main` or a task.
///
/// ```
/// use crac::{BoxError, Checkpoint, Checkpointable, Restore};
///
/// #[derive(Checkpointable)]
/// #[crac(before_checkpoint = Self::drain, after_restore = Self::reconnect)]
/// struct Client;
///
/// impl Client {
///     async fn drain(&self, _: &Checkpoint) -> Result<(), BoxError> {
///         tokio::task::yield_now().await; // flush, close, await the close
///         Ok(())
///     }
///     async fn reconnect(&self, _: &Restore) {}
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), crac::Error> {
/// let client = std::sync::Arc::new(Client);
/// crac::register(&client);
/// crac::use_engine("simulate")?;
/// let restore = crac::tokio::checkpoint_restore().await?;
/// assert!(restore.is_restored());
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "tokio")]
pub mod tokio {
    use crate::{Error, Restore};
    use crac_core::tokio::{off_runtime, remember_runtime};

    pub use crac_core::tokio::{Borrowed, Client, Connection, Listener};

    /// [`crate::checkpoint_restore`], awaited: run off the runtime's threads.
    pub async fn checkpoint_restore() -> Result<Restore, Error> {
        off_runtime(crate::checkpoint_restore).await
    }

    /// [`crate::ready`], awaited: run off the runtime's threads.
    #[cfg(all(feature = "criu", target_os = "linux"))]
    pub async fn ready() -> Result<Option<Restore>, Error> {
        off_runtime(crac_criu::ready).await
    }

    /// [`crate::at_consistent_point`], awaited: costs an atomic load and a clock read
    /// unless a periodic checkpoint is due, which then runs off the runtime's threads.
    #[cfg(all(feature = "criu", target_os = "linux"))]
    pub async fn at_consistent_point() -> Result<Option<Restore>, Error> {
        if !crac_criu::consistent_point_due() {
            return Ok(None);
        }
        off_runtime(crac_criu::at_consistent_point).await
    }

    /// [`crate::checkpoint_on_request`], called on the runtime: requested checkpoints
    /// run their async hooks on it.
    #[cfg(all(feature = "criu", target_os = "linux"))]
    pub fn checkpoint_on_request() -> std::io::Result<()> {
        remember_runtime();
        crac_criu::checkpoint_on_request()
    }
}

#[doc(hidden)]
pub use crac_core::__private;

/// The README's examples compile (they are doc tests of this item).
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
