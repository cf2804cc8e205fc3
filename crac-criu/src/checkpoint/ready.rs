//! The application's side of `crac run`: the points at which a checkpoint may be taken.
//!
//! [`ready`] is where a freshly started service is warm (Spring's
//! `-Dspring.context.checkpoint=onRefresh`): when `crac run` started the process to
//! produce an image (`CRAC_CHECKPOINT_ON_READY=1`), the first call checkpoints it;
//! otherwise it does nothing. [`at_consistent_point`] is where the application's state
//! is consistent (Kafka Streams' commit): with `CRAC_CHECKPOINT_INTERVAL=SECS` it takes
//! a left-running checkpoint when that much time has passed since the last one, so that
//! after a crash `crac run` restarts from the last consistent image instead of cold.
//!
//! Under `crac run` these points (and `crac checkpoint` requests) are the only way to a
//! checkpoint: a direct `checkpoint_restore()` is refused, since it would replace the
//! image `crac run` restores and stop the service.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crac_core::engine::{CheckpointOptions, Origin};
use crac_core::{Error, Restore};

use crate::env::{INTERVAL, MANAGED, ON_READY};
use crate::error::NotCheckpointable;

static READY_DONE: AtomicBool = AtomicBool::new(false);
/// Unix seconds when the next periodic checkpoint is due; 0 until first read, MAX: never.
static DUE: AtomicU64 = AtomicU64::new(0);

/// Refuses a checkpoint that would collide with `crac run`'s own: the process runs
/// under `crac run` and the checkpoint was not asked for at one of its points.
pub(crate) fn check_origin(origin: Origin) -> Result<(), NotCheckpointable> {
    if std::env::var_os(MANAGED).is_some() && !origin.is_at_a_point() {
        return Err(NotCheckpointable::UnderCracRun);
    }
    Ok(())
}

/// The service is warm. Checkpoints once if `crac run` asked for it (returning the
/// restore, in the restored copy); otherwise returns `Ok(None)` at once.
pub fn ready() -> Result<Option<Restore>, Error> {
    if std::env::var_os(ON_READY).is_none_or(|v| v != "1")
        || READY_DONE.swap(true, Ordering::SeqCst)
    {
        return Ok(None);
    }
    crac_core::checkpoint_restore_with(CheckpointOptions::new(Origin::Ready)).map(Some)
}

/// The application's state is consistent here. Takes a left-running checkpoint when
/// `CRAC_CHECKPOINT_INTERVAL` seconds have passed since the last one (costs an atomic
/// load and a clock read otherwise); returns its outcome, or `Ok(None)`.
pub fn at_consistent_point() -> Result<Option<Restore>, Error> {
    if !consistent_point_due() {
        return Ok(None);
    }
    let now = unix_secs();
    let Some(every) = interval() else {
        DUE.store(u64::MAX, Ordering::Relaxed);
        return Ok(None);
    };
    DUE.store(now + every, Ordering::Relaxed);
    let options = CheckpointOptions::new(Origin::ConsistentPoint).leaving_running();
    crac_core::checkpoint_restore_with(options).map(Some)
}

/// Whether [`at_consistent_point`] would checkpoint now: for callers that must prepare
/// (the async variant moves off the runtime first).
#[doc(hidden)]
pub fn consistent_point_due() -> bool {
    let now = unix_secs();
    let due = match DUE.load(Ordering::Relaxed) {
        0 => {
            let first = interval().map_or(u64::MAX, |every| now + every);
            DUE.store(first, Ordering::Relaxed);
            first
        }
        due => due,
    };
    now >= due
}

/// A restored copy reads its interval again: the restorer may have given a new one.
pub(crate) fn reset_schedule() {
    DUE.store(0, Ordering::Relaxed);
}

fn interval() -> Option<u64> {
    std::env::var(INTERVAL)
        .ok()?
        .parse()
        .ok()
        .filter(|every| *every > 0)
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
