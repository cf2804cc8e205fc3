//! Stdio handover. The original stdin/stdout/stderr (a terminal, a pipe, a file that
//! will grow) must not be captured: restoring them later fails or writes into the void.
//! Before the dump, fds 0–2 become memfds with fixed names; a restore maps the
//! restorer's own stdio onto them (`--inherit-fd fd[N]:/memfd:<name>`), so a restored
//! process writes where whoever restored it reads. The originals stay with the dump
//! helper; if the process keeps running (failed or left-running dump), it takes them
//! back with `pidfd_getfd`.

use std::ffi::CString;
use std::io::{self, Write as _};

use crate::criu::STDIO_MEMFDS;

/// Replaces fds 0–2 with empty memfds named as CRIU will see them.
pub fn swap_to_memfds() -> io::Result<()> {
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    for (fd, name) in STDIO_MEMFDS.iter().enumerate() {
        let name = CString::new(*name).expect("no NUL in a constant");
        // SAFETY: plain syscalls on fds this module owns.
        unsafe {
            let memfd = libc::memfd_create(name.as_ptr(), 0);
            if memfd < 0 {
                return Err(io::Error::last_os_error());
            }
            let rc = libc::dup2(memfd, fd as i32);
            libc::close(memfd);
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Takes the original fds 0–2 back from the helper that holds them. A stdio fd the
/// helper does not have was closed originally, and is closed again.
pub fn take_back(helper: libc::pid_t) -> io::Result<()> {
    // SAFETY: pidfd syscalls; every fd obtained is closed or installed on 0–2.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, helper, 0) as i32;
        if pidfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut result = Ok(());
        for fd in 0..3 {
            let theirs = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32;
            if theirs < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EBADF) {
                    libc::close(fd);
                } else {
                    result = Err(err);
                }
                continue;
            }
            libc::dup2(theirs, fd);
            libc::close(theirs);
        }
        libc::close(pidfd);
        result
    }
}
