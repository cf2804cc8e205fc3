//! The `criu` engine of crac-rs: a Linux process checkpoints itself with
//! [CRIU](https://criu.org), is stopped, and is later restored from the image by
//! `crac restore` with its warmed state intact and its hooks run.
//!
//! Folders by role:
//!
//! | folder | what is in it |
//! |---|---|
//! | `checkpoint/` | linked into the application, runs at checkpoint: settings, the open-fd check, stdio handover, secret environment variables, the self-dump protocol and its helper, `ready`/`at_consistent_point`, the request server |
//! | `launcher/` | what the `crac` command runs: restore, `crac run`, private PID namespaces, supervision, inspection, the request client |
//! | `image/` | the image directory: staging, publishing, the manifest, validation, whether this host can take it back, and why not |
//! | `heap/` | `MappedHeap`: a global allocator whose heap lives in segment files beside the image, sealed (mapped private, digested) at a checkpoint so that restores map it |
//! | `wire/` | what the two sides exchange: the protocol signal, restore-time arguments, checkpoint requests |
//! | `testing/` | (feature `testing`) `#[crac::test]`'s runtime: a test's setup checkpointed in a process of its own, restored as copies that send values back |
//! | `sys/` | thin OS wrappers, depending on nothing else of the crate but `env`: procfs, what an fd is, the `criu` binary, fds, signals, processes, the C environment, the stack |
//!
//! `env.rs`, beneath them all, is the table of every environment variable crac-rs reads.
//!
//! The checkpoint path, after the hooks have run (see `crac-core`): `engine` →
//! `checkpoint/fd_check` → `checkpoint/self_dump` (a detached `checkpoint/helper` runs
//! `criu dump` while the process waits in place) → `image/publish`. The restore path:
//! `launcher/restore/`, one module a step (admit → launch → resume → conclude), CRIU
//! calling back `launcher/action_script` and `__wait`. Which process plays which part,
//! and how it knows: `role`.

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
compile_error!("crac-criu supports 64-bit Linux only");

mod checkpoint;
mod engine;
mod env;
mod error;
mod heap;
mod image;
#[doc(hidden)]
pub mod launcher;
#[doc(hidden)]
pub mod role;
mod sys;
#[cfg(feature = "testing")]
pub mod testing;
mod wire;

pub use checkpoint::fd_check::{FdAction, FdPolicy, set_fd_policy};
pub use checkpoint::ready::{at_consistent_point, consistent_point_due, ready};
pub use checkpoint::request_server::checkpoint_on_request;
pub use checkpoint::secret_env::secret_env;
pub use engine::Criu;
#[doc(hidden)]
pub use env::environment_help;
pub use error::{Error, HelperFailure, NotCheckpointable};
pub use heap::MappedHeap;
#[doc(hidden)]
pub use heap::{__resume_for_tests, __seal_for_tests, __store_for_tests};
pub use sys::fd_info::{FdKind, OpenFd};

/// Referenced by the `crac` facade so that this crate — its engine registration and
/// its dump-helper entry point, both reached only through link sections — is linked in.
#[doc(hidden)]
pub fn ensure_linked() -> *const () {
    checkpoint::helper::entry_point()
}
