//! One real-time signal, by number: blocking it in a thread, waiting for it with a
//! deadline, and queueing it with a value to one thread of a process. nix covers the
//! standard signals only, so these are raw calls.

use std::io;
use std::time::Duration;

/// A thread's signal mask as it was, to put back with [`restore_mask`].
pub(crate) struct SavedMask(libc::sigset_t);

/// A signal that arrived with a value.
pub(crate) struct Queued {
    /// The `si_value` it was queued with.
    pub(crate) value: u64,
    /// The process that queued it.
    pub(crate) sender: libc::pid_t,
}

extern "C" fn do_nothing(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs a handler that does nothing for `signal`: a stray one can then never
/// terminate the process (SIG_IGN instead would discard signals already queued for a
/// thread that waits for them), and as PID 1 of a namespace the kernel delivers it
/// (it drops signals PID 1 has no handler for before they can be waited for).
pub(crate) fn ignore_strays(signal: libc::c_int) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = do_nothing as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: the handler is async-signal-safe (it does nothing), and `action` is fully
    // initialised (its mask is empty: zeroed).
    if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_of(signal: libc::c_int) -> io::Result<libc::sigset_t> {
    // SAFETY: a zeroed sigset_t is an empty set on Linux; sigaddset only writes into it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid set; an invalid signal number is an error, not UB.
    if unsafe { libc::sigaddset(&mut set, signal) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(set)
}

/// Blocks `signal` in the calling thread (and so in threads it starts later).
pub(crate) fn block(signal: libc::c_int) -> io::Result<SavedMask> {
    // SAFETY: zeroed is a valid sigset_t for pthread_sigmask to overwrite.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    let set = set_of(signal)?;
    // SAFETY: both sets are valid; only the calling thread's mask changes.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(SavedMask(old))
}

/// Puts back a mask [`block`] returned.
pub(crate) fn restore_mask(saved: &SavedMask) -> io::Result<()> {
    // SAFETY: `saved` was read from a thread's mask, so it is a valid set.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved.0, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits up to `timeout` (forever if `None`) for `signal`, which must be blocked in
/// this thread. `None` on timeout; EINTR is returned as an error for the caller to retry.
pub(crate) fn wait(signal: libc::c_int, timeout: Option<Duration>) -> io::Result<Option<Queued>> {
    let set = set_of(signal)?;
    // SAFETY: zeroed is a valid siginfo_t for the kernel to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let rc = match timeout {
        // SAFETY: valid set and siginfo; the call only writes `info`.
        None => unsafe { libc::sigwaitinfo(&set, &mut info) },
        Some(left) => {
            let ts = libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            };
            // SAFETY: as above, with a valid timespec.
            unsafe { libc::sigtimedwait(&set, &mut info, &ts) }
        }
    };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EAGAIN) => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: `info` is plain data, zero-initialised and then written by the kernel, so
    // reading its union as the queue fields is defined whatever kind of signal came (a
    // plain `kill` leaves the value 0, which no protocol message uses).
    let value = unsafe { info.si_value() }.sival_ptr as usize as u64;
    // SAFETY: as above.
    let sender = unsafe { info.si_pid() };
    Ok(Some(Queued { value, sender }))
}

/// Queues `signal` with `value` to thread `tid` of process `pid`.
pub(crate) fn queue(
    pid: libc::pid_t,
    tid: libc::pid_t,
    signal: libc::c_int,
    value: u64,
) -> io::Result<()> {
    // SAFETY: zeroed is a valid siginfo_t to fill in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    info.si_signo = signal;
    info.si_code = libc::SI_QUEUE;
    // libc has no setters for the queue fields. In the kernel's 64-bit layout (the only
    // one this crate builds for: see the `compile_error!` in lib.rs) they follow
    // si_signo, si_errno, si_code and padding, at offset 16: pid, uid, value.
    #[repr(C)]
    #[derive(Debug)]
    struct QueueFields {
        pid: libc::pid_t,
        uid: libc::uid_t,
        value: u64,
    }
    let fields = QueueFields {
        pid: nix::unistd::getpid().as_raw(),
        uid: nix::unistd::getuid().as_raw(),
        value,
    };
    const _: () =
        assert!(16 + std::mem::size_of::<QueueFields>() <= std::mem::size_of::<libc::siginfo_t>());
    let at = (&mut info as *mut libc::siginfo_t as *mut u8).wrapping_add(16);
    // SAFETY: the write stays inside `info` (asserted above), at the offset the kernel
    // reads the queue fields from; QueueFields is plain data.
    unsafe { std::ptr::write_unaligned(at as *mut QueueFields, fields) };
    // SAFETY: integers and a fully initialised siginfo the kernel only reads.
    let rc = unsafe { libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, signal, &info) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
