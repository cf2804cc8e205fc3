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
//! A restored copy takes periodic checkpoints only if its restorer gave it an interval
//! (`crac run` gives its own `--every` to every copy it restores; `crac restore --env
//! CRAC_CHECKPOINT_INTERVAL=SECS` asks for it): the value the copy inherited from the
//! image's process is ignored, so that copies someone restores do not write periodic
//! images into the directory of the process they were copied from.
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
/// In a restored copy, the interval its restorer gave (0: none); before any restore,
/// `u64::MAX`: the environment's.
static RESTORED_INTERVAL: AtomicU64 = AtomicU64::new(u64::MAX);

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

/// A restored copy's interval is the one its restorer gave in `env`, if any: not the
/// one inherited from the process the image was taken of.
pub(crate) fn reset_schedule(env: &[(String, String)]) {
    let given = env.iter().rev().find(|(name, _)| name == INTERVAL);
    let every = given.and_then(|(_, value)| parse(value)).unwrap_or(0);
    RESTORED_INTERVAL.store(every, Ordering::Relaxed);
    DUE.store(0, Ordering::Relaxed);
}

fn interval() -> Option<u64> {
    match RESTORED_INTERVAL.load(Ordering::Relaxed) {
        u64::MAX => parse(&std::env::var(INTERVAL).ok()?),
        0 => None,
        every => Some(every),
    }
}

/// Seconds between checkpoints; none for 0 or what is not a number.
fn parse(value: &str) -> Option<u64> {
    value
        .trim()
        .parse()
        .ok()
        .filter(|every| *every > 0 && *every < u64::MAX)
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_copy_has_the_interval_its_restorer_gave_and_no_other() {
        let given = |value: &str| vec![(INTERVAL.to_string(), value.to_string())];
        reset_schedule(&given("5"));
        assert_eq!(
            interval(),
            Some(5),
            "crac run --every 5 restoring its image"
        );
        reset_schedule(&[("PORT".to_string(), "8081".to_string())]);
        assert_eq!(
            interval(),
            None,
            "crac restore without it: the inherited one is ignored"
        );
        reset_schedule(&given("0"));
        assert_eq!(interval(), None);
        reset_schedule(&given("soon"));
        assert_eq!(interval(), None);
        RESTORED_INTERVAL.store(u64::MAX, Ordering::Relaxed);
        DUE.store(0, Ordering::Relaxed);
    }
}
