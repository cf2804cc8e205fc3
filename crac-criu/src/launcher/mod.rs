//! What the `crac` command runs: restore an image, run an application under `crac run`,
//! launch it in a private PID namespace, supervise it as its parent, inspect an image,
//! and ask a running process for a checkpoint.
//!
//! Public for the `crac` command only (hidden from the documentation): applications
//! never call these.

pub mod inspect;
mod lazy_pages;
pub mod namespace;
mod page_check;
mod phases;
pub mod request_client;
pub mod restore;
pub mod run;
mod supervise;

pub use crate::wire::restore_args::RestoreArgs;
pub use supervise::wait_for;
