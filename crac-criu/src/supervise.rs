//! Supervising a process as its parent: forward termination and user signals to it,
//! reap every child (as PID 1 of a namespace, orphans land here too), and report its
//! exit status. Used by `crac restore` (parent of CRIU), by `__wait` (what CRIU becomes
//! after a restore) and by `__init` (PID 1 of a private PID namespace).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

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

/// Passes signals on to a target process: they are blocked in the calling thread (and
/// so in threads it starts later, the forwarding thread included, which waits for
/// them; Rust resets the mask of spawned child processes) and a thread forwards them.
pub struct Forwarding {
    target: Arc<AtomicI32>,
}

extern "C" fn ignore(_: libc::c_int) {}

impl Forwarding {
    /// Starts forwarding; signals arriving before [`Forwarding::to`] are dropped.
    pub fn start() -> Forwarding {
        let target = Arc::new(AtomicI32::new(0));
        // SAFETY: builds and installs a signal mask for this thread; the no-op handlers
        // matter only as PID 1 of a namespace, where the kernel drops signals that have
        // no handler before they can be waited for.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in FORWARDED {
                libc::sigaddset(&mut set, sig);
                libc::signal(
                    sig,
                    ignore as extern "C" fn(libc::c_int) as libc::sighandler_t,
                );
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            set
        };
        let forward_to = target.clone();
        std::thread::spawn(move || {
            loop {
                let mut sig = 0;
                // SAFETY: waits on the blocked set built above.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    continue;
                }
                let pid = forward_to.load(Ordering::SeqCst);
                if pid > 0 {
                    // SAFETY: plain kill of the supervised process.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        });
        Forwarding { target }
    }

    /// Forwards from now on to `pid`.
    pub fn to(&self, pid: libc::pid_t) {
        self.target.store(pid, Ordering::SeqCst);
    }
}

/// Forwards signals to our child `pid`, reaps every child, and returns `pid`'s exit
/// code (128 + signal if it was killed).
pub fn wait_for(pid: libc::pid_t) -> Result<i32, Error> {
    let forwarding = Forwarding::start();
    forwarding.to(pid);
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
