//! Processes: forking the dump helper, sessions, returning freed heap, finding programs,
//! and owning what CRIU starts (waiting for it, killing its group, reaping orphans).

use std::io;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

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

/// Forks children that exit at once, and reaps them, until one is numbered above
/// `above` (at most 65 536 forks): the PIDs up to it are then behind this PID
/// namespace's counter, and what this process starts next (threads included) is
/// numbered after them.
///
/// # Safety
///
/// Only while the process has a single thread (see [`fork_single_threaded`]).
pub(crate) unsafe fn move_pid_counter_past(above: i32) -> io::Result<()> {
    for _ in 0..1 << 16 {
        // SAFETY: single-threaded, as the caller guarantees.
        let child = match unsafe { nix::unistd::fork() }? {
            // SAFETY: _exit is async-signal-safe, and the child has nothing to clean up.
            nix::unistd::ForkResult::Child => unsafe { libc::_exit(0) },
            nix::unistd::ForkResult::Parent { child } => child,
        };
        nix::sys::wait::waitpid(child, None)?;
        if child.as_raw() > above {
            return Ok(());
        }
    }
    Ok(())
}

/// Returns freed heap pages to the kernel, so that an image holds live memory only.
pub(crate) fn release_free_heap() {
    // SAFETY: malloc_trim only gives back pages malloc holds unused; it touches no
    // allocation in use. Its result only says whether anything was released.
    unsafe { libc::malloc_trim(0) };
}

/// A program on `PATH`, then in extra directories: the search `criu` is found by.
pub(crate) use crac_shared::criu::find_program;

/// Makes this process the reaper of its orphaned descendants: what a child started and
/// left behind becomes this process's child, to be killed and reaped, not init's.
pub(crate) fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// Whether the child `pid` has ended, waiting for it to if `block`. The child is left
/// unreaped, so that its PID, and so its process group, cannot be reused meanwhile.
pub(crate) fn has_ended(pid: u32, block: bool) -> io::Result<bool> {
    let mut flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
    if !block {
        flags |= WaitPidFlag::WNOHANG;
    }
    loop {
        match nix::sys::wait::waitid(Id::Pid(Pid::from_raw(pid as i32)), flags) {
            Ok(WaitStatus::StillAlive) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends SIGKILL to every process of the group `pgid` (stopped ones die too); a group
/// with no process left is fine.
pub(crate) fn kill_group(pgid: u32) -> io::Result<()> {
    match nix::sys::signal::killpg(Pid::from_raw(pgid as i32), nix::sys::signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sends SIGKILL to `pid`; a process already gone is fine.
pub(crate) fn kill(pid: u32) -> io::Result<()> {
    match nix::sys::signal::kill(Pid::from_raw(pid as i32), nix::sys::signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reaps this process's children until none is left, for at most `limit` (a process
/// stuck in the kernel may take longer to die; init reaps it then).
pub(crate) fn reap_children(limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Err(Errno::ECHILD) => return,
            Ok(WaitStatus::StillAlive) | Err(_) if Instant::now() >= deadline => return,
            Ok(WaitStatus::StillAlive) | Err(_) => std::thread::sleep(Duration::from_millis(5)),
            Ok(_) => {} // one reaped; look for the next at once
        }
    }
}
