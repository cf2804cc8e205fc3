//! The runtime of crac-rs: resources, contexts, the dependency ordering, the
//! checkpoint/restore protocol and its failure rules, and the engine boundary.
//!
//! Use it through the `crac` facade crate; the paths documented there are the stable ones.

// What an application implements and receives: the `Resource` trait, the events its
// hooks get, the errors they return, and the hook functions collected at link time.
mod error;
mod event;
mod hooks;
mod resource;

// Ready-made resources (`Gate`, the listeners, the tokio `Client`, reopened files), and
// the `crac::tokio` namespace with the async-hook runtime they and async hooks run on.
#[cfg(feature = "tokio")]
mod async_hooks;
mod resources;
#[cfg(feature = "tokio")]
pub mod tokio;

// Where resources are registered, and what `#[derive(Checkpointable)]` needs of fields.
mod context;
pub mod field;
mod participant;
mod registry;

// The protocol: the order of participants, the plan, hook deadlines, the checkpoint
// path, and the engine boundary (its options, the variables it reads, the `simulate` engine).
mod deadline;
pub mod engine;
pub mod env;
mod options;
mod ordering;
mod plan;
mod protocol;
mod simulate;

// What an image may hold and its copies must not share: fds claimed into it, instance
// ids, freed memory scrubbed of secrets.
#[cfg(unix)]
mod claims;
mod instance;
mod scrub;

#[cfg(unix)]
pub use claims::{FdClaim, claim_fd, claimed_fds};
pub use context::{Context, global, register};
pub use deadline::DeadlineExceeded;
pub use engine::use_engine;
pub use error::{BoxError, Error, Failure, Failures, Phase};
pub use event::{Checkpoint, Outcome, Restore};
pub use instance::instance_id;
pub use ordering::{Ranked, rank_after};
pub use plan::{Plan, PlanEntry, PlanEntryKind};
pub use protocol::{checkpoint_restore, checkpoint_restore_with, plan};
pub use resource::Resource;
pub use resources::blocking_listener::{BlockingConnection, BlockingListener};
pub use resources::gate::{Gate, Pass};
pub use scrub::ScrubbingAlloc;
#[doc(hidden)]
pub use scrub::require_scrubbing;
pub use simulate::Simulate;

/// What the macros expand to. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::error::Phase;
    pub use crate::field::{
        Delegate, Reseed, RestoreEnv, Secret, Steps, apply_restore_env, secret_wiped,
    };
    #[cfg(target_os = "linux")]
    pub use crate::field::{Reopen, ReopenOptions, as_reopen, detach_file, reopen_file};
    #[cfg(not(feature = "tokio"))]
    pub use crate::hooks::block_on_hook;
    pub use crate::hooks::{HookFn, HookResult, MethodHook, StaticHook, here};
    pub use crate::ordering::{Ranked, rank_after};
    #[cfg(feature = "tokio")]
    pub use crate::tokio::block_on_hook;
    pub use inventory;
    pub use std::borrow::Cow;
    pub use std::result::Result;
}
