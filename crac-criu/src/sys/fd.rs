//! File descriptors by number: the stdio slots, fds another process holds, memfds.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::memfd::{MFdFlags, memfd_create};

/// A new memfd named `name` (CRIU records it as `/memfd:<name>`); close-on-exec unless
/// it is meant to be inherited.
pub(crate) fn memfd(name: &str, inherited: bool) -> io::Result<File> {
    let flags = if inherited {
        MFdFlags::empty()
    } else {
        MFdFlags::MFD_CLOEXEC
    };
    Ok(File::from(memfd_create(name, flags)?))
}

/// Makes fd number `target` refer to what `source` refers to. Whoever owns `target`
/// keeps a valid fd of that number: only what it refers to changes — which is the point
/// where it is used: stdio handed over, and fds the policy detaches to `/dev/null`.
pub(crate) fn redirect(target: RawFd, source: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: dup2 replaces `target` atomically, so no other owner ever sees it closed
    // or reused; `source` is borrowed, so it is open for the whole call.
    if unsafe { libc::dup2(source.as_raw_fd(), target) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Closes a stdio slot (0–2). std's `Stdin`/`Stdout`/`Stderr` do not own these numbers,
/// so closing one cannot invalidate an `OwnedFd` elsewhere.
pub(crate) fn close_stdio(fd: RawFd) -> io::Result<()> {
    assert!(
        (0..3).contains(&fd),
        "only stdio slots are closed by number"
    );
    // SAFETY: as above, no Rust object owns fds 0–2.
    if unsafe { libc::close(fd) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A pidfd for process `pid`.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    owned(fd)
}

/// A copy of fd `fd` of the process behind `pidfd`.
pub(crate) fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes a borrowed (open) pidfd and integers, and returns a new
    // fd or -1.
    let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    owned(copy)
}

fn owned(result: libc::c_long) -> io::Result<OwnedFd> {
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nobody else knows it.
    Ok(unsafe { OwnedFd::from_raw_fd(result as RawFd) })
}

/// Marks every fd from 3 up close-on-exec: a program started next gets stdio only.
/// Async-signal-safe, for `pre_exec`.
pub(crate) fn close_on_exec_beyond_stdio() -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC closes nothing; it only sets a flag
    // on fds that stay open for their owners until exec.
    let rc = unsafe {
        libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the socket `fd` has `SO_REUSEPORT` set (several sockets may listen on its
/// address).
pub(crate) fn reuse_port(fd: RawFd) -> io::Result<bool> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for the int-sized option getsockopt writes;
    // an fd that is not a socket is an error, not UB.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            &mut value as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value != 0)
}

/// `/dev/null`, readable and writable.
pub(crate) fn dev_null() -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
}

/// Makes `fd` available as fd number `target` across exec (for `pre_exec`, after
/// [`close_on_exec_beyond_stdio`]). Async-signal-safe.
pub(crate) fn inherit_as(fd: RawFd, target: RawFd) -> io::Result<()> {
    if fd != target {
        // SAFETY: as in `redirect`; in a forked child about to exec, `target` is ours,
        // and the copy dup2 makes is never close-on-exec.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(());
    }
    // SAFETY: F_SETFD only changes the close-on-exec flag of an fd that stays open.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of fd `number`, which the process that started us passed (its
/// number in an environment variable). Fails if it is not open.
///
/// # Safety
///
/// Nothing else in this process may own or use fd `number`.
pub(crate) unsafe fn inherited(number: RawFd) -> io::Result<File> {
    if number < 3 {
        return Err(io::Error::other("stdio is not an inherited fd"));
    }
    // SAFETY: F_GETFD only reads the flags of an fd number; it fails if none is open.
    if unsafe { libc::fcntl(number, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open, and the caller guarantees nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(number) }))
}
