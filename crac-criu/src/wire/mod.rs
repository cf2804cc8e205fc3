//! The wire between the two sides of a checkpoint — the process (with its dump helper)
//! and the `crac` command: the signal they speak, the memfds a restore substitutes,
//! and checkpoint requests. Both sides
//! depend on this folder; it depends on neither.

pub(crate) mod dump_failure;
pub(crate) mod request;
pub(crate) mod restore_args;
pub(crate) mod signal;

/// Names of the memfds that stand in for stdio in an image: a restore maps its own
/// stdio onto them (`--inherit-fd fd[N]:/memfd:<name>`).
pub(crate) const STDIO_MEMFDS: [&str; 3] = ["crac-stdin", "crac-stdout", "crac-stderr"];
