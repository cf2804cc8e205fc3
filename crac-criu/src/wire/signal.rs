//! The one real-time signal the self-dump protocol speaks, and the values it carries.
//!
//! The waiting thread blocks the signal and waits for it with `sigtimedwait`; senders
//! address that thread (`rt_tgsigqueueinfo`), so other threads never see it. A no-op
//! handler is installed as well, so that a signal arriving late (after a timeout, or at
//! a stale thread) is ignored instead of killing the process. A restored process keeps
//! its TIDs, so the restorer can address it too.

use std::io;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sys::signal as sys;

/// What a signal says (the low 8 bits of `si_value`; the rest is a payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Message {
    /// helper → process: I am running and hold your original stdio.
    HelperReady = 1,
    /// process → helper: everything is released, dump me. Also requester → process:
    /// checkpoint yourself (payload: the request number that names the answer file).
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

pub(crate) use sys::SavedMask as Mask;

/// Blocks the signal in the calling thread, so it can be waited for, and makes sure a
/// stray one can never terminate the process.
pub(crate) fn block() -> io::Result<Mask> {
    static HANDLER: OnceLock<Result<(), io::ErrorKind>> = OnceLock::new();
    HANDLER
        .get_or_init(|| sys::ignore_strays(NUMBER).map_err(|e| e.kind()))
        .map_err(io::Error::from)?;
    sys::block(NUMBER)
}

/// Puts back the mask [`block`] returned.
pub(crate) fn restore_mask(old: &Mask) -> io::Result<()> {
    sys::restore_mask(old)
}

/// A received message, who sent it, and its payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    pub(crate) message: Message,
    pub(crate) sender: libc::pid_t,
    pub(crate) payload: u32,
}

/// Waits for the next protocol message (the signal must be blocked in this thread).
/// `EINTR` — which every CRIU seize causes — is retried; `None` on timeout. Signals
/// carrying an unknown value (another program's) are ignored.
pub(crate) fn wait(timeout: Option<Duration>) -> io::Result<Option<Received>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let queued = match sys::wait(NUMBER, left) {
            Ok(Some(queued)) => queued,
            Ok(None) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let found = Message::ALL
            .into_iter()
            .find(|m| *m as u64 == queued.value & 0xff);
        if let Some(message) = found {
            return Ok(Some(Received {
                message,
                sender: queued.sender,
                payload: (queued.value >> 8) as u32,
            }));
        }
    }
}

/// Sends `message` to thread `tid` of process `pid`.
pub(crate) fn send(pid: libc::pid_t, tid: libc::pid_t, message: Message) -> io::Result<()> {
    send_with(pid, tid, message, 0)
}

/// Sends `message` with a payload to thread `tid` of process `pid`.
pub(crate) fn send_with(
    pid: libc::pid_t,
    tid: libc::pid_t,
    message: Message,
    payload: u32,
) -> io::Result<()> {
    sys::queue(pid, tid, NUMBER, message as u64 | (payload as u64) << 8)
}
