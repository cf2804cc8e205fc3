//! Hook deadlines with the `simulate` engine: an overrun refuses the checkpoint or fails
//! the restore, a late hook is waited for before its participant's next hook, a hook
//! without a deadline still runs on the protocol's thread.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use common::serial;
use crac::{
    BoxError, Checkpoint, Checkpointable, Context, DeadlineExceeded, Error, Outcome, Phase,
    Resource, Restore,
};

/// Sleeps in each hook as told, and records what ran, on which thread.
#[derive(Checkpointable, Default)]
#[crac(name = "slow", deadline = "200ms")]
#[crac(before_checkpoint = Self::close, after_restore = Self::open)]
struct Slow {
    checkpoint_ms: AtomicU64,
    restore_ms: AtomicU64,
    log: Mutex<Vec<(String, ThreadId)>>,
}

impl Slow {
    fn close(&self, _: &Checkpoint) {
        self.record("close: start");
        thread::sleep(Duration::from_millis(
            self.checkpoint_ms.load(Ordering::Relaxed),
        ));
        self.record("close: end");
    }

    fn open(&self, restore: &Restore) {
        self.record(&format!("open {:?}: start", restore.outcome()));
        thread::sleep(Duration::from_millis(
            self.restore_ms.load(Ordering::Relaxed),
        ));
        self.record(&format!("open {:?}: end", restore.outcome()));
    }

    fn record(&self, what: &str) {
        let entry = (what.to_owned(), thread::current().id());
        self.log.lock().unwrap().push(entry);
    }

    fn steps(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(s, _)| s.clone())
            .collect()
    }
}

fn slow(checkpoint_ms: u64, restore_ms: u64) -> Arc<Slow> {
    let slow = Arc::new(Slow::default());
    slow.checkpoint_ms.store(checkpoint_ms, Ordering::Relaxed);
    slow.restore_ms.store(restore_ms, Ordering::Relaxed);
    crac::register(&slow);
    slow
}

fn simulate() {
    crac::use_engine("simulate").unwrap();
}

fn overrun(error: &BoxError) -> &DeadlineExceeded {
    error
        .downcast_ref::<DeadlineExceeded>()
        .unwrap_or_else(|| panic!("not a deadline overrun: {error}"))
}

/// Waits until `slow` has logged `n` steps (its late hooks finish on their own).
fn wait_for_steps(slow: &Slow, n: usize) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(10);
    while slow.steps().len() < n && Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }
    slow.steps()
}

#[test]
fn a_before_checkpoint_that_overruns_refuses_the_checkpoint_naming_hook_deadline_and_time() {
    let _serial = serial();
    simulate();
    let slow = slow(350, 0);
    let error = crac::checkpoint_restore().unwrap_err();
    let Error::CheckpointRefused { failures } = &error else {
        panic!("expected a refused checkpoint: {error}");
    };
    assert_eq!(failures.0.len(), 1, "{error}");
    let failure = &failures.0[0];
    assert_eq!(
        (failure.resource.as_str(), failure.phase),
        ("slow", Phase::BeforeCheckpoint)
    );
    let late = overrun(&failure.error);
    assert_eq!(late.deadline, Duration::from_millis(200));
    // Given up on at the deadline, not after the hook's 350 ms; the rollback then
    // waited for the late hook (within its own 200 ms) before reopening.
    assert!(late.ran >= Duration::from_millis(200) && late.ran < Duration::from_millis(350));
    assert!(late.started);
    let message = error.to_string();
    assert!(
        message.contains("`slow` failed in before_checkpoint: did not finish within its deadline of 200ms (gave up after 2"),
        "{message}"
    );
    // The rollback's after_restore ran after the late before_checkpoint ended, not
    // beside it.
    assert_eq!(
        slow.steps(),
        [
            "close: start",
            "close: end",
            "open RolledBack: start",
            "open RolledBack: end"
        ]
    );
}

#[test]
fn a_hook_that_finishes_after_the_rollback_gave_up_on_it_runs_its_after_restore_late_and_in_order()
{
    let _serial = serial();
    simulate();
    let slow = slow(700, 0);
    let error = crac::checkpoint_restore().unwrap_err();
    let Error::CheckpointRefused { failures } = &error else {
        panic!("expected a refused checkpoint: {error}");
    };
    // Its checkpoint overran, and so did the rollback's wait for it.
    let phases: Vec<_> = failures.0.iter().map(|f| f.phase).collect();
    assert_eq!(
        phases,
        [Phase::BeforeCheckpoint, Phase::AfterRestore],
        "{error}"
    );
    assert!(!overrun(&failures.0[1].error).started, "{error}");
    assert!(
        error
            .to_string()
            .contains("still waiting for its earlier hook that overran")
    );
    assert_eq!(slow.steps(), ["close: start"]);
    // The late hook ends; its result is ignored, and only then does its rollback run.
    assert_eq!(
        wait_for_steps(&slow, 4),
        [
            "close: start",
            "close: end",
            "open RolledBack: start",
            "open RolledBack: end"
        ]
    );
    // The protocol is intact: the next checkpoint goes through.
    slow.checkpoint_ms.store(0, Ordering::Relaxed);
    assert!(crac::checkpoint_restore().unwrap().is_restored());
}

#[test]
fn a_checkpoint_after_a_late_hook_waits_for_it_before_notifying_that_participant_again() {
    let _serial = serial();
    simulate();
    let slow = slow(700, 0);
    crac::checkpoint_restore().unwrap_err();
    slow.checkpoint_ms.store(0, Ordering::Relaxed);
    // Its late close and rollback are still queued, for 300 ms more: this checkpoint's
    // close waits for them and overruns its 200 ms without having started.
    let error = crac::checkpoint_restore().unwrap_err();
    let Error::CheckpointRefused { failures } = &error else {
        panic!("expected a refused checkpoint: {error}");
    };
    assert!(!overrun(&failures.0[0].error).started, "{error}");
    let rolled_back = [
        "close: start",
        "close: end",
        "open RolledBack: start",
        "open RolledBack: end",
    ];
    assert_eq!(
        wait_for_steps(&slow, 8),
        [rolled_back, rolled_back].concat()
    );
}

#[test]
fn an_after_restore_that_overruns_fails_the_restore_and_the_process_runs_on() {
    let _serial = serial();
    simulate();
    let slow = slow(0, 500);
    let error = crac::checkpoint_restore().unwrap_err();
    let Error::RestoreFailed { failures, restore } = &error else {
        panic!("expected a failed restore: {error}");
    };
    assert_eq!(restore.outcome(), Outcome::Restored);
    assert_eq!(failures.0.len(), 1, "{error}");
    assert_eq!(failures.0[0].phase, Phase::AfterRestore);
    assert_eq!(
        overrun(&failures.0[0].error).deadline,
        Duration::from_millis(200)
    );
    assert!(error.to_string().contains("`slow` failed in after_restore"));
    assert_eq!(
        wait_for_steps(&slow, 4)[2..],
        ["open Restored: start", "open Restored: end"]
    );
}

#[test]
fn hooks_with_a_deadline_run_on_their_own_thread_and_hooks_without_one_on_the_callers() {
    let _serial = serial();
    simulate();
    let with = slow(0, 0);
    let caller = thread::current().id();
    crac::checkpoint_restore().unwrap();
    let threads: Vec<_> = with.log.lock().unwrap().iter().map(|(_, id)| *id).collect();
    assert!(threads.iter().all(|id| *id != caller));
    assert_eq!(ON_CALLER.lock().unwrap().take(), Some(caller));
}

static ON_CALLER: Mutex<Option<ThreadId>> = Mutex::new(None);

#[crac::on_restore]
fn records_its_thread() {
    *ON_CALLER.lock().unwrap() = Some(thread::current().id());
}

/// Hand-written, without a deadline of its own.
struct Sleeper(Duration);

impl Resource for Sleeper {
    fn before_checkpoint(&self, _: &Checkpoint) -> Result<(), BoxError> {
        thread::sleep(self.0);
        Ok(())
    }
    fn after_restore(&self, _: &Restore) -> Result<(), BoxError> {
        Ok(())
    }
    fn name(&self) -> std::borrow::Cow<'_, str> {
        "sleeper".into()
    }
}

#[test]
fn a_context_gives_its_members_a_deadline_and_a_members_own_one_wins() {
    let _serial = serial();
    simulate();
    let context = Arc::new(Context::new("pool").with_deadline(Duration::from_millis(50)));
    crac::register(&context);
    let sleeper = Arc::new(Sleeper(Duration::from_millis(150)));
    context.register(&sleeper);
    let error = crac::checkpoint_restore().unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(
            "`sleeper` failed in before_checkpoint: did not finish within its deadline of 50ms"
        ),
        "{message}"
    );
    // Once the late hook is done, `Slow`'s own 200 ms deadline counts, not the
    // context's 50 ms.
    drop(sleeper);
    thread::sleep(Duration::from_millis(200));
    let slow = Arc::new(Slow::default());
    slow.checkpoint_ms.store(100, Ordering::Relaxed);
    context.register(&slow);
    crac::checkpoint_restore().unwrap();
}

#[test]
fn crac_hook_deadline_applies_to_hooks_without_one_and_a_malformed_value_is_refused_by_name() {
    let _serial = serial();
    simulate();
    let sleeper = Arc::new(Sleeper(Duration::from_millis(150)));
    crac::register(&sleeper);
    // SAFETY: the tests of this binary are serialized, and no other thread reads the
    // environment meanwhile.
    unsafe { std::env::set_var("CRAC_HOOK_DEADLINE", "2 parsecs") };
    let error = crac::checkpoint_restore().unwrap_err();
    assert!(matches!(
        error,
        Error::InvalidSetting {
            variable: "CRAC_HOOK_DEADLINE",
            ..
        }
    ));
    assert_eq!(
        error.to_string(),
        "checkpoint refused before any hook ran: CRAC_HOOK_DEADLINE=\"2 parsecs\" is invalid: \
         expected a whole number followed by `ms`, `s` or `m`, as in `500ms`, `2s` or `1m`"
    );
    // SAFETY: as above.
    unsafe { std::env::set_var("CRAC_HOOK_DEADLINE", "50ms") };
    let error = crac::checkpoint_restore().unwrap_err();
    // SAFETY: as above.
    unsafe { std::env::remove_var("CRAC_HOOK_DEADLINE") };
    assert!(
        error.to_string().contains(
            "`sleeper` failed in before_checkpoint: did not finish within its deadline of 50ms"
        ),
        "{error}"
    );
    crac::checkpoint_restore().unwrap();
}

struct Reenters(Mutex<Option<Error>>);

impl Resource for Reenters {
    fn before_checkpoint(&self, _: &Checkpoint) -> Result<(), BoxError> {
        *self.0.lock().unwrap() = crac::checkpoint_restore().err();
        Ok(())
    }
    fn after_restore(&self, _: &Restore) -> Result<(), BoxError> {
        Ok(())
    }
    fn deadline(&self) -> Option<Duration> {
        Some(Duration::from_secs(5))
    }
}

#[test]
fn checkpoint_restore_from_a_hook_on_its_own_thread_is_refused_as_reentrant_not_deadlocked() {
    let _serial = serial();
    simulate();
    let reenters = Arc::new(Reenters(Mutex::new(None)));
    crac::register(&reenters);
    crac::checkpoint_restore().unwrap();
    assert!(matches!(
        *reenters.0.lock().unwrap(),
        Some(Error::Reentrant)
    ));
}
