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
    BoxError, Checkpoint, Context, Error, Failure, Failures, Kind, Outcome, Phase, Plan,
    PlanEntry, Ranked, Resource, Restore, checkpoint_restore, engine, field, global, plan,
    rank_after, register, register_engine, use_engine,
};
pub use crac_derive::{Checkpointable, before_checkpoint, on_restore};

#[doc(hidden)]
pub use crac_core::__private;
