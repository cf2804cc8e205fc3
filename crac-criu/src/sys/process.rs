//! Processes: forking the dump helper, sessions, returning freed heap, finding programs.

use std::io;
use std::path::{Path, PathBuf};

/// Forks. Returns `true` in the child.
///
/// # Safety
///
/// Only while the process has a single thread: the child of a multi-threaded process may
/// only call async-signal-safe functions.
pub(crate) unsafe fn fork_single_threaded() -> io::Result<bool> {
    // SAFETY: the caller guarantees there is no other thread whose locks the child
    // could inherit held.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => Ok(true),
        nix::unistd::ForkResult::Parent { .. } => Ok(false),
    }
}

/// Returns freed heap pages to the kernel, so that an image holds live memory only.
pub(crate) fn release_free_heap() {
    // SAFETY: malloc_trim only gives back pages malloc holds unused; it touches no
    // allocation in use. Its result only says whether anything was released.
    unsafe { libc::malloc_trim(0) };
}

/// The first directory of `PATH`, then of `extra`, that holds a file named `name`.
pub(crate) fn find_program(name: &Path, extra: &[&str]) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
