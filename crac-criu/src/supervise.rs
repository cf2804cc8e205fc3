//! Supervising a process as its parent: forward termination and user signals to it,
//! reap every child (as PID 1 of a namespace, orphans land here too), and report its
//! exit status. Used by `crac restore` (parent of CRIU), by `__wait` (what CRIU becomes
//! after a restore), by `__init` (PID 1 of a private PID namespace) and by `crac run`.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Once;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use crate::Error;

/// Signals passed on to the supervised process.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Where forwarded signals go; 0: nowhere. One forwarding thread per process.
static TARGET: AtomicI32 = AtomicI32::new(0);

extern "C" fn ignore(_: libc::c_int) {}

fn forwarded_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise the set they are given.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in FORWARDED {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Forwards the signals from now on to `pid` (0: drop them). The first call blocks them
/// in the calling thread (so in threads it starts later, the forwarding thread included)
/// and starts the thread; the no-op handlers matter only as PID 1 of a namespace, where
/// the kernel drops signals without a handler before they can be waited for.
pub fn forward_to(pid: libc::pid_t) {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let set = forwarded_set();
        // SAFETY: installs no-op handlers and blocks the set in this thread.
        unsafe {
            for sig in FORWARDED {
                libc::signal(
                    sig,
                    ignore as extern "C" fn(libc::c_int) as libc::sighandler_t,
                );
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        std::thread::spawn(move || {
            loop {
                let mut sig = 0;
                // SAFETY: waits on the blocked set.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    continue;
                }
                let target = TARGET.load(Ordering::SeqCst);
                if target > 0 {
                    // SAFETY: plain kill of the supervised process.
                    unsafe { libc::kill(target, sig) };
                }
            }
        });
    });
    TARGET.store(pid, Ordering::SeqCst);
}

/// Makes `cmd` start an application: with the forwarded signals unblocked (a child
/// inherits its parent's signal mask, and an application must be able to receive
/// SIGTERM), and in a session of its own — what CRIU needs to restore it without a
/// terminal, and so a terminal's Ctrl-C reaches it once, through the forwarder. Fds
/// beyond stdio that the launcher inherited (IDE terminals and CI runners leak them) do
/// not reach it: the open-resource check would rightly refuse them.
pub fn application(cmd: &mut Command) -> &mut Command {
    let set = forwarded_set();
    // SAFETY: sigprocmask, setsid and close_range are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::setsid();
            libc::close_range(
                3,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
            );
            Ok(())
        })
    }
}

/// Forwards signals to our child `pid`, reaps every child, and returns `pid`'s exit
/// code (128 + signal if it was killed). As PID 1 of a namespace, it then keeps reaping
/// for a while: leaving kills every process of the namespace, the dump helper included,
/// which may still be removing a replaced image.
pub fn wait_for(pid: libc::pid_t) -> Result<i32, Error> {
    forward_to(pid);
    let code = reap_until(pid)?;
    forward_to(0);
    if std::process::id() == 1 {
        let deadline = Instant::now() + Duration::from_secs(30);
        // SAFETY: waits for any remaining child, without blocking.
        while Instant::now() < deadline
            && unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } >= 0
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(code)
}

fn reap_until(pid: libc::pid_t) -> Result<i32, Error> {
    loop {
        let mut status = 0;
        // SAFETY: waits for any of our children.
        let reaped = unsafe { libc::waitpid(-1, &mut status, 0) };
        if reaped == pid {
            return Ok(exit_code(status));
        }
        if reaped < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                return Err(Error::Io("waiting for the supervised process", err));
            }
        }
    }
}

/// A wait status as a shell reports it: the exit code, or 128 + the killing signal.
pub fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}
