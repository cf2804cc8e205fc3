//! The checkpoint path, top-down: guard → plan → `before_checkpoint` → engine →
//! `after_restore` in exact reverse → [`Restore`] or an [`Error`] naming every failure.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use crate::context::global_participants;
use crate::deadline;
use crate::engine::{self, CheckpointOptions, Engine, EngineOutcome, Origin, Request};
use crate::error::{Error, Failures, catch_panic};
use crate::event::{Checkpoint, Outcome, Restore};
use crate::instance;
use crate::participant::{self, RankedParticipant};
use crate::plan::Plan;

/// Counters live in the process image, so a restored copy continues them.
static CHECKPOINTS: AtomicU64 = AtomicU64::new(0);
static RESTORES: AtomicU64 = AtomicU64::new(0);

/// Serializes checkpoints requested from several threads: hooks never overlap.
static PROTOCOL: Mutex<()> = Mutex::new(());

thread_local! {
    static IN_PROTOCOL: Cell<bool> = const { Cell::new(false) };
}

/// Notifies every participant, asks the selected engine for an image, and returns once
/// the process runs again — restored, left running, or rolled back after a failure.
///
/// Calls from several threads are serialized. Resources registered while a checkpoint
/// is in progress are not notified by it; the next checkpoint includes them.
pub fn checkpoint_restore() -> Result<Restore, Error> {
    checkpoint_restore_with(CheckpointOptions::new(Origin::Direct))
}

/// [`checkpoint_restore`] for an entry point that says who asks and how: `crac::ready()`,
/// `crac::at_consistent_point()` and `crac checkpoint` requests pass their
/// [`Origin`]; the engine reads the options in its [`Request`].
pub fn checkpoint_restore_with(options: CheckpointOptions) -> Result<Restore, Error> {
    // Two calls and no local: the protocol's frames are laid down after the engine
    // prepared the stack below this one.
    prepare_thread();
    prepared(options)
}

#[inline(never)]
fn prepare_thread() {
    if let Some(engine) = selected_engine() {
        engine.prepare_thread();
    }
}

/// In a frame of its own, gone before the engine prepares the stack.
#[inline(never)]
fn selected_engine() -> Option<&'static dyn Engine> {
    engine::selected().ok()
}

#[inline(never)]
fn prepared(options: CheckpointOptions) -> Result<Restore, Error> {
    let _guard = enter()?;
    let engine = engine::selected()?;
    let probed = engine
        .probe(&options)
        .map_err(|reason| Error::Unsupported {
            engine: engine.name(),
            reason,
        })?;
    let participants = global_participants();
    let event = Checkpoint {
        generation: CHECKPOINTS.fetch_add(1, Ordering::Relaxed) + 1,
        engine: engine.name(),
        hook_deadline: deadline::process_default()?,
        leaves_running: options.leave_running || probed.1,
    };
    let _span = tracing::info_span!(
        "crac_checkpoint",
        engine = engine.name(),
        generation = event.generation,
        participants = participants.len()
    )
    .entered();
    release(&participants, &event)?;
    let request = Request {
        event: &event,
        options,
        participants: &participants,
        probed: &probed,
    };
    let returned = take_image(engine, &request)?;
    resume(&participants, &event, returned)
}

/// The `before_checkpoint` pass; on a failure, the rollback and the refusal naming both.
fn release(participants: &[RankedParticipant], event: &Checkpoint) -> Result<(), Error> {
    let phase = Instant::now();
    let mut failures = participant::checkpoint_pass(participants, event, None);
    tracing::info!(
        phase = "before_checkpoint",
        ms = ms(phase),
        failures = failures.0.len()
    );
    if failures.is_empty() {
        return Ok(());
    }
    let rollback = roll_back(participants, event);
    failures.0.extend(rollback.0);
    Err(Error::CheckpointRefused { failures })
}

/// How the process came back from the engine, as the `after_restore` pass needs it.
struct Returned {
    outcome: Outcome,
    checkpointed_for: Option<std::time::Duration>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    restore_began: Option<SystemTime>,
    monotonic_time_kept: Option<bool>,
}

/// Asks the engine for the image. A restored copy gets its restore-time variables set
/// here; a failed engine rolls the participants back.
fn take_image(engine: &dyn Engine, request: &Request<'_>) -> Result<Returned, Error> {
    let phase = Instant::now();
    let engine_result = catch_panic(|| engine.checkpoint(request));
    tracing::info!(phase = "engine", ms = ms(phase), ok = engine_result.is_ok());
    match engine_result {
        Ok(EngineOutcome::Restored {
            checkpointed_for,
            args,
            env,
            restore_began,
            monotonic_time_kept,
        }) => {
            RESTORES.fetch_add(1, Ordering::Relaxed);
            for (key, value) in &env {
                // SAFETY: `set_var` is sound while no other thread reads or writes the
                // environment. crac-rs's own threads never do; the application's are
                // covered by the contract `Restore::env` and the guide (docs/crac-run.md) state: whoever
                // passes restore-time variables to a process whose threads may call
                // `getenv` meanwhile reads `Restore::env` instead (or passes none).
                unsafe { std::env::set_var(key, value) };
            }
            Ok(Returned {
                outcome: Outcome::Restored,
                checkpointed_for,
                args,
                env,
                restore_began,
                monotonic_time_kept,
            })
        }
        Ok(EngineOutcome::LeftRunning) => Ok(Returned {
            outcome: Outcome::LeftRunning,
            checkpointed_for: None,
            args: Vec::new(),
            env: Vec::new(),
            restore_began: None,
            monotonic_time_kept: None,
        }),
        Err(reason) => Err(Error::EngineFailed {
            engine: engine.name(),
            reason,
            rollback: roll_back(request.participants, request.event),
        }),
    }
}

/// The `after_restore` pass, in exact reverse; the [`Restore`] or the failures naming it.
fn resume(
    participants: &[RankedParticipant],
    event: &Checkpoint,
    returned: Returned,
) -> Result<Restore, Error> {
    let restore = Restore {
        outcome: returned.outcome,
        generation: RESTORES.load(Ordering::Relaxed),
        engine: event.engine,
        checkpointed_for: returned.checkpointed_for,
        instance_id: instance::current(returned.outcome == Outcome::Restored),
        args: returned.args,
        env: returned.env,
        monotonic_time_kept: returned.monotonic_time_kept,
        hook_deadline: event.hook_deadline,
    };
    let phase = Instant::now();
    let failures = participant::restore_pass(participants, &restore, None);
    tracing::info!(
        phase = "after_restore",
        ms = ms(phase),
        failures = failures.0.len()
    );
    if let Some(began) = returned.restore_began {
        tracing::info!(
            ms = began.elapsed().unwrap_or_default().as_secs_f64() * 1000.0,
            participants = participants.len(),
            hooks_ms = ms(phase),
            "restored"
        );
    }
    if failures.is_empty() {
        Ok(restore)
    } else {
        Err(Error::RestoreFailed {
            failures,
            restore: Box::new(restore),
        })
    }
}

/// The plan the next checkpoint would follow: link-time hooks and the global context's
/// live resources, in checkpoint order.
pub fn plan() -> Plan {
    Plan::of(&global_participants())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn roll_back(participants: &[RankedParticipant], event: &Checkpoint) -> Failures {
    let restore = Restore {
        outcome: Outcome::RolledBack,
        generation: RESTORES.load(Ordering::Relaxed),
        engine: event.engine,
        checkpointed_for: None,
        instance_id: instance::current(false),
        args: Vec::new(),
        env: Vec::new(),
        monotonic_time_kept: None,
        hook_deadline: event.hook_deadline,
    };
    participant::restore_pass(participants, &restore, None)
}

struct Guard {
    _serialized: MutexGuard<'static, ()>,
}

/// Refuses re-entry from a hook, then waits for any checkpoint on another thread.
fn enter() -> Result<Guard, Error> {
    if IN_PROTOCOL.get() || deadline::on_hook_thread() {
        return Err(Error::Reentrant);
    }
    let lock = PROTOCOL.lock().unwrap_or_else(PoisonError::into_inner);
    IN_PROTOCOL.set(true);
    Ok(Guard { _serialized: lock })
}

impl Drop for Guard {
    fn drop(&mut self) {
        IN_PROTOCOL.set(false);
    }
}
