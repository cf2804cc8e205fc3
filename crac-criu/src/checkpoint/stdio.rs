//! Stdio handover. The original stdin/stdout/stderr (a terminal, a pipe, a file that
//! will grow) must not be captured: restoring them later fails or writes into the void.
//! Before the dump, fds 0–2 become memfds with fixed names; a restore maps the
//! restorer's own stdio onto them (`--inherit-fd fd[N]:/memfd:<name>`), so a restored
//! process writes where whoever restored it reads. The originals stay with the dump
//! helper; if the process keeps running (failed or left-running dump), it takes them
//! back with `pidfd_getfd`.

use std::io::{self, Write as _};
use std::os::fd::AsFd;

use crate::sys::fd;
use crate::wire::STDIO_MEMFDS;

/// Replaces fds 0–2 with empty memfds named as CRIU will see them.
pub(super) fn swap_to_memfds() -> io::Result<()> {
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    for (number, name) in STDIO_MEMFDS.iter().enumerate() {
        let memfd = fd::memfd(name, false)?;
        fd::redirect(number as i32, memfd.as_fd())?;
    }
    Ok(())
}

/// Takes the original fds 0–2 back from the helper that holds them. A stdio fd the
/// helper does not have was closed originally, and is closed again.
pub(super) fn take_back(helper: libc::pid_t) -> io::Result<()> {
    let pidfd = fd::pidfd_open(helper)?;
    let mut result = Ok(());
    for number in 0..3 {
        let outcome = match fd::pidfd_getfd(pidfd.as_fd(), number) {
            Ok(theirs) => fd::redirect(number, theirs.as_fd()),
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => fd::close_stdio(number),
            Err(e) => Err(e),
        };
        if outcome.is_err() && result.is_ok() {
            result = outcome;
        }
    }
    result
}
