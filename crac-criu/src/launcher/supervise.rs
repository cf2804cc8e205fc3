//! Supervising a process as its parent: forward termination and user signals to it,
//! reap every child (as PID 1 of a namespace, orphans land here too), and report its
//! exit status. Used by `crac restore` (parent of CRIU), by `__wait` (what CRIU becomes
//! after a restore), by `__init` (PID 1 of a private PID namespace) and by `crac run`.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{self, SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::launcher::error::LaunchError;
use crate::sys::fd;
use crate::sys::signal::ignore_strays;

/// Signals passed on to the supervised process.
const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Where forwarded signals go; 0: nowhere. One forwarding thread per process.
static TARGET: AtomicI32 = AtomicI32::new(0);
/// The signals passed on so far, one bit per signal number.
static FORWARDED_SO_FAR: AtomicU64 = AtomicU64::new(0);
/// The signals received so far, passed on or not.
static RECEIVED_SO_FAR: AtomicU64 = AtomicU64::new(0);

/// Whether `signal` (one of those forwarded) reached this process since [`forward_to`]
/// was first called, whether or not there was anyone to pass it on to.
pub(crate) fn was_received(signal: i32) -> bool {
    (0..64).contains(&signal) && RECEIVED_SO_FAR.load(Ordering::SeqCst) & (1 << signal) != 0
}

/// Whether `signal` was passed on to the supervised process: its death by that signal
/// then means "stopped" (Ctrl-C, `docker stop`), not "crashed".
pub(crate) fn was_forwarded(signal: i32) -> bool {
    (0..64).contains(&signal) && FORWARDED_SO_FAR.load(Ordering::SeqCst) & (1 << signal) != 0
}

fn forwarded_set() -> SigSet {
    FORWARDED.into_iter().collect()
}

/// Forwards the signals from now on to `pid` (0: drop them). The first call blocks them
/// in the calling thread (so in threads it starts later, the forwarding thread included)
/// and starts the thread; the no-op handlers matter only as PID 1 of a namespace, where
/// the kernel drops signals without a handler before they can be waited for.
pub(crate) fn forward_to(pid: libc::pid_t) -> Result<(), LaunchError> {
    static STARTED: OnceLock<Result<(), std::io::ErrorKind>> = OnceLock::new();
    // Before the thread starts: a signal already pending (`__wait` inherits those CRIU
    // held) must find its target, not be dropped.
    TARGET.store(pid, Ordering::SeqCst);
    STARTED
        .get_or_init(|| {
            let set = forwarded_set();
            for sig in FORWARDED {
                ignore_strays(sig as libc::c_int).map_err(|e| e.kind())?;
            }
            set.thread_block()
                .map_err(|e| std::io::Error::from(e).kind())?;
            std::thread::spawn(move || {
                loop {
                    let Ok(sig) = set.wait() else { continue };
                    RECEIVED_SO_FAR.fetch_or(1 << sig as i32, Ordering::SeqCst);
                    let target = TARGET.load(Ordering::SeqCst);
                    if target > 0 {
                        FORWARDED_SO_FAR.fetch_or(1 << sig as i32, Ordering::SeqCst);
                        // gone already: nothing left to forward to
                        let _ = signal::kill(Pid::from_raw(target), sig);
                    }
                }
            });
            Ok(())
        })
        .map_err(|kind| LaunchError::io("setting up signal forwarding")(kind.into()))?;
    Ok(())
}

/// Makes `cmd` start an application: with the forwarded signals unblocked (a child
/// inherits its parent's signal mask, and an application must be able to receive
/// SIGTERM), in a session of its own — what CRIU needs to restore it without a
/// terminal, and so a terminal's Ctrl-C reaches it once, through the forwarder — and
/// with stdio only: fds the launcher inherited (IDE terminals and CI runners leak them)
/// would rightly make the open-resource check refuse the checkpoint.
pub(crate) fn application(cmd: &mut Command) -> &mut Command {
    let set = forwarded_set();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (sigprocmask, setsid, close_range); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            set.thread_unblock()?;
            nix::unistd::setsid()?;
            fd::close_on_exec_beyond_stdio()
        })
    }
}

/// Forwards signals to our child `pid`, reaps every child, and returns `pid`'s exit
/// code (128 + signal if it was killed). As PID 1 of a namespace, it then keeps reaping
/// for a while: leaving kills every process of the namespace, the dump helper included,
/// which may still be removing a replaced image.
pub fn wait_for(pid: libc::pid_t) -> Result<i32, LaunchError> {
    stop_if_orphaned(pid);
    wait_for_end(pid).map(Ended::code)
}

/// The restorer's PID, for the `__wait` CRIU becomes (see [`stop_if_orphaned`]).
pub(crate) use crate::env::RESTORER as RESTORER_ENV;

/// How long a copy whose restorer died has to stop after SIGTERM before SIGKILL.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// A copy restored in the host PID namespace must not outlive its restorer (one killed
/// by SIGKILL included): once this process (`__wait`, what CRIU became, whose parent is
/// the restorer) is orphaned, `pid` gets SIGTERM, and SIGKILL after [`ORPHAN_GRACE`].
/// In a private namespace the parent is outside it (0) and the namespace already dies
/// with the restorer.
fn stop_if_orphaned(pid: libc::pid_t) {
    // Named by the restorer: it may have died before this process started.
    let Some(restorer) = std::env::var(RESTORER_ENV)
        .ok()
        .and_then(|p| p.parse().ok())
        .map(Pid::from_raw)
    else {
        return;
    };
    if nix::unistd::getppid().as_raw() == 0 {
        return;
    }
    std::thread::spawn(move || {
        while nix::unistd::getppid() == restorer {
            std::thread::sleep(Duration::from_millis(50));
        }
        let copy = Pid::from_raw(pid);
        let _ = signal::kill(copy, Signal::SIGTERM);
        let deadline = Instant::now() + ORPHAN_GRACE;
        while Instant::now() < deadline && signal::kill(copy, None).is_ok() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = signal::kill(copy, Signal::SIGKILL);
    });
}

/// How a supervised process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It exited with this code.
    Exited(i32),
    /// This signal killed it.
    Killed(i32),
}

impl Ended {
    /// As a shell reports it: the exit code, or 128 + the killing signal.
    pub(crate) fn code(self) -> i32 {
        match self {
            Ended::Exited(code) => code,
            Ended::Killed(signal) => 128 + signal,
        }
    }
}

impl From<std::process::ExitStatus> for Ended {
    fn from(status: std::process::ExitStatus) -> Ended {
        use std::os::unix::process::ExitStatusExt;
        match status.signal() {
            Some(signal) => Ended::Killed(signal),
            None => Ended::Exited(status.code().unwrap_or(0)),
        }
    }
}

/// Makes this process the reaper of its orphaned descendants: a task that CRIU killed in
/// a failed restore is a zombie when CRIU exits, and would otherwise hold its PID (which
/// the next restore needs) until PID 1 gets round to it.
pub(crate) fn adopt_orphans() -> Result<(), LaunchError> {
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| LaunchError::io("becoming the reaper of the restore's orphans")(e.into()))
}

/// Reaps `pid` if it is (or within a second becomes) this process's dead child: see
/// [`adopt_orphans`].
pub(crate) fn reap_orphan(pid: libc::pid_t) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            // reaped, or never ours
            _ => return,
        }
    }
}

/// [`wait_for`], telling an exit from a death by signal.
pub(crate) fn wait_for_end(pid: libc::pid_t) -> Result<Ended, LaunchError> {
    forward_to(pid)?;
    let status = reap_until(pid);
    forward_to(0)?;
    if std::process::id() == 1 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)).is_ok()
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    status
}

fn reap_until(pid: libc::pid_t) -> Result<Ended, LaunchError> {
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(reaped, code)) if reaped.as_raw() == pid => {
                return Ok(Ended::Exited(code));
            }
            Ok(WaitStatus::Signaled(reaped, signal, _)) if reaped.as_raw() == pid => {
                return Ok(Ended::Killed(signal as i32));
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                return Err(LaunchError::io("waiting for the supervised process")(
                    e.into(),
                ));
            }
        }
    }
}
