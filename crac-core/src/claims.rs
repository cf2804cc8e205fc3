//! File-descriptor claims: how a resource tells the engine "this open fd is mine and
//! expected at checkpoint", so the open-resource check does not refuse it.
//!
//! Claims are engine-neutral: the `criu` engine carries claimed fds into the image
//! (CRIU restores regular files, listening TCP sockets, pipes, eventfds, ...), and
//! refuses every unclaimed fd beyond stdio unless its policy says otherwise.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

static CLAIMS: Mutex<Vec<(u64, RawFd, String)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A claim on an open fd; dropping it withdraws the claim.
#[must_use = "the claim is withdrawn when this guard is dropped"]
#[derive(Debug)]
pub struct FdClaim {
    id: u64,
}

/// Claims `fd` for `owner` (a name shown in diagnostics), until the guard is dropped.
///
/// ```
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let _claim = crac::claim_fd(&listener, "http listener");
/// assert!(crac::claimed_fds().iter().any(|(_, owner)| owner == "http listener"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn claim_fd(fd: &impl AsRawFd, owner: impl Into<String>) -> FdClaim {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    lock().push((id, fd.as_raw_fd(), owner.into()));
    FdClaim { id }
}

/// Every claimed fd with its owner.
pub fn claimed_fds() -> Vec<(RawFd, String)> {
    lock()
        .iter()
        .map(|(_, fd, owner)| (*fd, owner.clone()))
        .collect()
}

impl Drop for FdClaim {
    fn drop(&mut self) {
        lock().retain(|(id, _, _)| *id != self.id);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(u64, RawFd, String)>> {
    CLAIMS.lock().unwrap_or_else(PoisonError::into_inner)
}
