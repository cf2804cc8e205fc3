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
//! The guide (`docs/` in the repository, an mdBook) has the rules every checkpoint follows
//! (`docs/semantics.md`), the attributes, the checks around the image, and `crac run`.

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
pub use crac_criu::{MappedHeap, at_consistent_point, checkpoint_on_request, ready, secret_env};
/// `#[crac::test]`'s runtime: checkpoint a test's setup, restore copies, collect their
/// values. Feature `testing`, for tests only:
///
/// ```toml
/// [dev-dependencies]
/// crac = { version = "0.1", features = ["testing"] }
/// ```
///
/// The copies are restored by the `crac` command, looked for in this order:
/// `CRAC_CLI=/path/to/crac` (which must then be an executable file), `crac` beside the
/// test executable (crac-rs's own workspace, after `cargo build -p crac-cli`), `crac` on
/// `PATH` (`cargo install --path <crac-rs checkout>/crac-cli`). Copies are numbered from
/// 0, in [`Trial::env`](testing::Trial::env) as in failures.
#[cfg(all(feature = "testing", target_os = "linux"))]
pub mod testing {
    pub use crac_criu::testing::{Trial, Value};
}

/// What `#[crac::test]` expands to goes through this macro: as written with the
/// `testing` feature, an error naming the feature without it.
#[doc(hidden)]
#[cfg(all(feature = "testing", target_os = "linux"))]
#[macro_export]
macro_rules! __crac_test {
    ($($test:tt)*) => { $($test)* };
}

/// What `#[crac::test]` expands to goes through this macro: as written with the
/// `testing` feature, an error naming the feature without it.
#[doc(hidden)]
#[cfg(not(all(feature = "testing", target_os = "linux")))]
#[macro_export]
macro_rules! __crac_test {
    ($($test:tt)*) => {
        ::core::compile_error!(
            "#[crac::test] needs crac's `testing` feature (Linux): enable it for tests, under \
             `[dev-dependencies]`: `crac = { version = \"0.1\", features = [\"testing\"] }` \
             (or `cargo add crac --dev --features testing`)"
        );
    };
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

    pub use crac_core::tokio::{Borrowed, Client, Connection, Listener, Pool, Pooled};

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

/// The guide's examples compile: each chapter of `docs/` is the doc of one item here.
#[cfg(doctest)]
pub mod guide {
    #[doc = include_str!("../docs/semantics.md")]
    pub struct Semantics;
    #[doc = include_str!("../docs/attributes.md")]
    #[cfg(target_os = "linux")]
    pub struct Attributes;
    #[doc = include_str!("../docs/open-resources.md")]
    #[cfg(all(feature = "criu", target_os = "linux"))]
    pub struct OpenResources;
    #[doc = include_str!("../docs/images.md")]
    pub struct Images;
    #[doc = include_str!("../docs/crac-run.md")]
    #[cfg(all(feature = "criu", target_os = "linux"))]
    pub struct CracRun;
    #[doc = include_str!("../docs/mapped-heap.md")]
    #[cfg(all(feature = "criu", target_os = "linux"))]
    pub struct MappedHeap;
    #[doc = include_str!("../docs/packing.md")]
    pub struct Packing;
    #[doc = include_str!("../docs/tokio.md")]
    #[cfg(all(feature = "tokio", feature = "criu", target_os = "linux"))]
    pub struct Tokio;
    #[doc = include_str!("../docs/uniqueness.md")]
    #[cfg(all(feature = "criu", target_os = "linux"))]
    pub struct Uniqueness;
    #[doc = include_str!("../docs/testing.md")]
    #[cfg(all(feature = "testing", target_os = "linux"))]
    pub struct Testing;
    #[doc = include_str!("../docs/containers.md")]
    pub struct Containers;
    #[doc = include_str!("../docs/rootless.md")]
    pub struct Rootless;
    #[doc = include_str!("../docs/benchmarks.md")]
    pub struct Benchmarks;
}
