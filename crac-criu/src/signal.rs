//! The one real-time signal the self-dump protocol speaks, and the values it carries.
//!
//! The waiting thread blocks the signal and waits for it with `sigtimedwait`; senders
//! address that thread (`rt_tgsigqueueinfo`), so other threads never see it. A no-op
//! handler is installed as well, so that a signal arriving late (after a timeout, or at
//! a stale thread) is ignored instead of killing the process. A restored process keeps
//! its TIDs, so the restorer can address it too.

use std::io;
use std::time::{Duration, Instant};

/// What a signal says (the low 8 bits of `si_value`; the rest is a payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Message {
    /// helper → process: I am running and hold your original stdio.
    HelperReady = 1,
    /// process → helper: everything is released, dump me. Also requester → process:
    /// checkpoint yourself (payload: the requester's answer fd).
    Go = 2,
    /// restorer → process: you run from an image.
    Restored = 3,
    /// helper → process: image taken, you kept running.
    LeftRunning = 4,
    /// helper → process: CRIU failed, you were not dumped.
    DumpFailed = 5,
    /// process → helper: I took my stdio back, you may exit.
    Release = 6,
}

impl Message {
    const ALL: [Message; 6] = [
        Message::HelperReady,
        Message::Go,
        Message::Restored,
        Message::LeftRunning,
        Message::DumpFailed,
        Message::Release,
    ];
}

/// The signal number. Fixed rather than relative to libc's `SIGRTMIN`, which differs
/// between glibc and musl: a `crac` built against one must reach programs built
/// against the other.
const NUMBER: libc::c_int = 41;

fn number() -> libc::c_int {
    debug_assert!((libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&NUMBER));
    NUMBER
}

/// The calling thread's signal mask, to put back with [`restore_mask`].
pub struct Mask(libc::sigset_t);

extern "C" fn ignore(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Blocks the signal in the calling thread, so it can be waited for, and makes sure a
/// stray one can never terminate the process.
pub fn block() -> io::Result<Mask> {
    static HANDLER: std::sync::Once = std::sync::Once::new();
    HANDLER.call_once(|| {
        // SAFETY: installs a handler that does nothing; SIG_IGN would instead discard
        // signals already queued for a waiting thread.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(number(), &action, std::ptr::null_mut());
        }
    });
    let raw = raw_set();
    // SAFETY: plain mask manipulation of the calling thread; `old` is written on success.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &raw, &mut old) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(Mask(old))
}

/// Puts back the mask [`block`] returned.
pub fn restore_mask(old: &Mask) {
    // SAFETY: restores a mask previously read from this thread.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old.0, std::ptr::null_mut()) };
}

fn raw_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise the set they are given.
    unsafe {
        let mut raw: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut raw);
        libc::sigaddset(&mut raw, number());
        raw
    }
}

/// A received message, who sent it, and its payload.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub message: Message,
    pub sender: libc::pid_t,
    pub payload: u32,
}

/// Waits for the next protocol message (the signal must be blocked in this thread).
/// `EINTR` — which every CRIU seize causes — is retried; `None` on timeout. Signals
/// carrying an unknown value (another program's) are ignored.
pub fn wait(timeout: Option<Duration>) -> io::Result<Option<Received>> {
    let raw = raw_set();
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        // SAFETY: siginfo is written by the kernel on success.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = match deadline {
            None => unsafe { libc::sigwaitinfo(&raw, &mut info) },
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let ts = libc::timespec {
                    tv_sec: left.as_secs() as libc::time_t,
                    tv_nsec: left.subsec_nanos() as libc::c_long,
                };
                unsafe { libc::sigtimedwait(&raw, &mut info, &ts) }
            }
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(None),
                _ => return Err(err),
            }
        }
        // SAFETY: the signal was queued with a value (SI_QUEUE), so si_value and si_pid are set.
        let (value, sender) = unsafe { (info.si_value().sival_ptr as usize as u64, info.si_pid()) };
        let found = Message::ALL.into_iter().find(|m| *m as u64 == value & 0xff);
        if let Some(message) = found {
            let payload = (value >> 8) as u32;
            return Ok(Some(Received {
                message,
                sender,
                payload,
            }));
        }
    }
}

/// Sends `message` to thread `tid` of process `pid`.
pub fn send(pid: libc::pid_t, tid: libc::pid_t, message: Message) -> io::Result<()> {
    send_with(pid, tid, message, 0)
}

/// Sends `message` with a payload to thread `tid` of process `pid`.
pub fn send_with(
    pid: libc::pid_t,
    tid: libc::pid_t,
    message: Message,
    payload: u32,
) -> io::Result<()> {
    // SAFETY: a zeroed siginfo filled with the fields rt_tgsigqueueinfo reads.
    let rc = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        info.si_signo = number();
        info.si_code = libc::SI_QUEUE;
        let raw = &mut info as *mut libc::siginfo_t as *mut u8;
        // libc exposes no setters: the kernel's 64-bit layout is si_signo, si_errno,
        // si_code, padding, then the queue fields (pid, uid, value) at offset 16.
        let fields = raw.add(16) as *mut libc::c_int;
        *fields = libc::getpid();
        *fields.add(1) = libc::getuid() as libc::c_int;
        let value = fields.add(2) as *mut u64;
        *value = message as u64 | (payload as u64) << 8;
        libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, number(), &info)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
