//! The `leaving` engine (included by the tests that use it, so that it is listed among
//! the available engines of no other test binary): a left-running checkpoint without an
//! image. It records the claimed fds as the `criu` engine would find them, and runs
//! [`DURING`] as if while the process were frozen (the test's tasks go on meanwhile,
//! as they do between the hooks and the freeze). With [`AS_COPY`] it plays a copy
//! restored from that image instead: the claimed TCP connections are dissolved, as CRIU's
//! `--tcp-close` restores them (no peer), before [`DURING`] runs, and it reports a restore.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crac::engine::{Engine, EngineOutcome, Probed, Request};

/// Leaves the process running.
pub(crate) struct Leaving;
/// What the last checkpoint found claimed: fd and owner.
pub(crate) static CLAIMED: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());
/// Run by the next checkpoint, between the hooks.
pub(crate) static DURING: Mutex<Option<Box<dyn FnOnce() + Send>>> = Mutex::new(None);
/// The next checkpoint plays a restored copy (reset by it).
pub(crate) static AS_COPY: AtomicBool = AtomicBool::new(false);

impl Engine for Leaving {
    fn name(&self) -> &'static str {
        "leaving"
    }
    fn probe(&self, _: &crac::engine::CheckpointOptions) -> Result<Probed, crac::BoxError> {
        Ok(Probed::default().leaving_running(true))
    }
    fn checkpoint(&self, _: &Request<'_>) -> Result<EngineOutcome, crac::BoxError> {
        *CLAIMED.lock().unwrap() = crac::claimed_fds();
        let as_copy = AS_COPY.swap(false, Ordering::SeqCst);
        if as_copy {
            CLAIMED
                .lock()
                .unwrap()
                .iter()
                .for_each(|(fd, _)| dissolve(*fd));
        }
        if let Some(during) = DURING.lock().unwrap().take() {
            during();
        }
        if as_copy {
            return Ok(EngineOutcome::Restored {
                checkpointed_for: None,
                args: Vec::new(),
                env: Vec::new(),
                restore_began: None,
                monotonic_time_kept: None,
            });
        }
        Ok(EngineOutcome::LeftRunning)
    }
}
crac::register_engine!(Leaving);

/// The fds the last checkpoint found claimed by `owner`.
pub(crate) fn claimed_by(owner: &str) -> Vec<i32> {
    CLAIMED
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, by)| by == owner)
        .map(|(fd, _)| *fd)
        .collect()
}

/// Leaves the TCP connection on `fd` closed and without a peer, as CRIU restores one
/// with `--tcp-close` (connecting to `AF_UNSPEC` disconnects it); other fds are left.
fn dissolve(fd: i32) {
    // SAFETY: all-zero bytes are a valid `sockaddr`; AF_UNSPEC in it asks for a disconnect.
    let mut unspecified: libc::sockaddr = unsafe { std::mem::zeroed() };
    unspecified.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
    // SAFETY: `unspecified` is a `sockaddr` of `len` bytes; a non-socket fd makes it fail.
    unsafe { libc::connect(fd, &raw const unspecified, len) };
}
