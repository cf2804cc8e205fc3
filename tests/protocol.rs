//! The coordination protocol: order, weak registration, failures and rollback,
//! re-entry, concurrency, nested contexts and engines — observed through recorded calls.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Behaviour, Log, Recorder, serial};
use crac::engine::{CheckpointOptions, Engine, EngineOutcome, Origin, Probed, Request};
use crac::{
    BoxError, Checkpoint, Context, Error, Outcome, Phase, PlanEntryKind, Resource, Restore,
};

struct Failing;
impl Engine for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn checkpoint(&self, _: &Request<'_>) -> Result<EngineOutcome, BoxError> {
        Err("disk full while writing pages".into())
    }
}
crac::register_engine!(Failing);

struct KeepRunning;
impl Engine for KeepRunning {
    fn name(&self) -> &'static str {
        "keep-running"
    }
    fn checkpoint(&self, request: &Request<'_>) -> Result<EngineOutcome, BoxError> {
        *SEEN_PLAN.lock().unwrap() = request
            .plan()
            .names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        *SEEN_OPTIONS.lock().unwrap() = Some(request.options);
        Ok(EngineOutcome::LeftRunning)
    }
}
crac::register_engine!(KeepRunning);
static SEEN_PLAN: Mutex<Vec<String>> = Mutex::new(Vec::new());
static SEEN_OPTIONS: Mutex<Option<CheckpointOptions>> = Mutex::new(None);

struct Unavailable;
impl Engine for Unavailable {
    fn name(&self) -> &'static str {
        "unavailable"
    }
    fn probe(&self, _: &CheckpointOptions) -> Result<Probed, BoxError> {
        Err("criu not found: run scripts/install-criu.sh".into())
    }
    fn checkpoint(&self, _: &Request<'_>) -> Result<EngineOutcome, BoxError> {
        unreachable!("probe refused")
    }
}
crac::register_engine!(Unavailable);

fn simulate() {
    crac::use_engine("simulate").unwrap();
}

#[test]
fn equal_ranks_checkpoint_newest_first_and_restore_in_exact_reverse() {
    let _serial = serial();
    simulate();
    let log = Log::default();
    let (a, b, c) = (
        Recorder::new("a", &log),
        Recorder::new("b", &log),
        Recorder::new("c", &log),
    );
    for r in [&a, &b, &c] {
        crac::register(r);
    }
    let restore = crac::checkpoint_restore().unwrap();
    assert_eq!(restore.outcome(), Outcome::Restored);
    assert_eq!(restore.engine, "simulate");
    assert_eq!(
        log.take(),
        [
            "c:checkpoint",
            "b:checkpoint",
            "a:checkpoint",
            "a:restored",
            "b:restored",
            "c:restored"
        ]
    );
}

#[test]
fn dependents_checkpoint_before_their_dependencies_and_restore_after_them() {
    let _serial = serial();
    simulate();
    let log = Log::default();
    // registered in an order that contradicts the graph: ranks must win
    let app = Recorder::with("app", 2, Behaviour::Ok, &log);
    let pool = Recorder::with("pool", 1, Behaviour::Ok, &log);
    let config = Recorder::with("config", 0, Behaviour::Ok, &log);
    crac::register(&config);
    crac::register(&app);
    crac::register(&pool);
    let plan = crac::plan();
    assert_eq!(plan.names(), ["app", "pool", "config"]);
    assert_eq!(
        plan.entries.iter().map(|e| e.rank).collect::<Vec<_>>(),
        [2, 1, 0]
    );
    crac::checkpoint_restore().unwrap();
    assert_eq!(
        log.take(),
        [
            "app:checkpoint",
            "pool:checkpoint",
            "config:checkpoint",
            "config:restored",
            "pool:restored",
            "app:restored"
        ]
    );
}

#[test]
fn resources_are_held_weakly() {
    let _serial = serial();
    simulate();
    let log = Log::default();
    let kept = Recorder::new("kept", &log);
    let dropped = Recorder::new("dropped", &log);
    crac::register(&kept);
    crac::register(&dropped);
    drop(dropped);
    assert_eq!(crac::plan().names(), ["kept"]);
    crac::checkpoint_restore().unwrap();
    assert_eq!(log.take(), ["kept:checkpoint", "kept:restored"]);
}

#[test]
fn a_refused_checkpoint_notifies_everyone_rolls_everyone_back_and_names_every_failure() {
    let _serial = serial();
    simulate();
    let log = Log::default();
    let a = Recorder::new("a", &log);
    let listener = Recorder::with("listener", 0, Behaviour::FailCheckpoint, &log);
    let b = Recorder::new("b", &log);
    let worker = Recorder::with("worker", 0, Behaviour::PanicCheckpoint, &log);
    let mailer = Recorder::with("mailer", 0, Behaviour::FailRestore, &log);
    for r in [&mailer, &a, &listener, &b, &worker] {
        crac::register(r);
    }
    let err = crac::checkpoint_restore().unwrap_err();
    assert!(matches!(err, Error::CheckpointRefused { .. }), "{err:?}");
    assert_eq!(
        log.take(),
        [
            "worker:checkpoint",
            "b:checkpoint",
            "listener:checkpoint",
            "a:checkpoint",
            "mailer:checkpoint",
            "mailer:rolled-back",
            "a:rolled-back",
            "listener:rolled-back",
            "b:rolled-back",
            "worker:rolled-back",
        ]
    );
    let failed: Vec<_> = err
        .failures()
        .iter()
        .map(|f| (f.resource.as_str(), f.phase))
        .collect();
    assert_eq!(
        failed,
        [
            ("worker", Phase::BeforeCheckpoint),
            ("listener", Phase::BeforeCheckpoint),
            ("mailer", Phase::AfterRestore),
        ]
    );
    assert_eq!(
        err.to_string(),
        "checkpoint refused, no image taken, resources rolled back; 3 failures:\n  \
         - `worker` failed in before_checkpoint: panicked: worker exploded\n  \
         - `listener` failed in before_checkpoint: cannot close listener\n      \
         caused by: socket still busy\n  \
         - `mailer` failed in after_restore: could not reconnect"
    );
    // the process keeps working: the next checkpoint runs normally once the culprit is gone
    drop((listener, worker, mailer));
    crac::checkpoint_restore().unwrap();
    assert_eq!(
        log.take(),
        ["b:checkpoint", "a:checkpoint", "a:restored", "b:restored"]
    );
}

#[test]
fn an_engine_failure_rolls_back_and_carries_the_engine_reason() {
    let _serial = serial();
    crac::use_engine("failing").unwrap();
    let log = Log::default();
    let a = Recorder::new("a", &log);
    crac::register(&a);
    let err = crac::checkpoint_restore().unwrap_err();
    assert!(
        matches!(
            err,
            Error::EngineFailed {
                engine: "failing",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "checkpoint failed in engine `failing`, resources rolled back: disk full while writing pages"
    );
    assert_eq!(log.take(), ["a:checkpoint", "a:rolled-back"]);
}

#[test]
fn a_left_running_checkpoint_says_so_and_engines_receive_the_plan() {
    let _serial = serial();
    crac::use_engine("keep-running").unwrap();
    let log = Log::default();
    let a = Recorder::new("a", &log);
    let b = Recorder::with("b", 1, Behaviour::Ok, &log);
    crac::register(&a);
    crac::register(&b);
    let restore = crac::checkpoint_restore().unwrap();
    assert_eq!(restore.outcome(), Outcome::LeftRunning);
    assert!(!restore.is_restored());
    assert_eq!(restore.checkpointed_for, None);
    assert_eq!(*SEEN_PLAN.lock().unwrap(), ["b", "a"]);
    let options = SEEN_OPTIONS.lock().unwrap().take().unwrap();
    assert_eq!(options, CheckpointOptions::new(Origin::Direct));
    assert!(!options.leave_running);
    assert_eq!(
        log.take(),
        [
            "b:checkpoint",
            "a:checkpoint",
            "a:left-running",
            "b:left-running"
        ]
    );
}

#[test]
fn an_unavailable_engine_is_refused_before_any_hook_runs() {
    let _serial = serial();
    crac::use_engine("unavailable").unwrap();
    let log = Log::default();
    let a = Recorder::new("a", &log);
    crac::register(&a);
    let err = crac::checkpoint_restore().unwrap_err();
    assert!(matches!(
        err,
        Error::Unsupported {
            engine: "unavailable",
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "checkpoint engine `unavailable` is unavailable: criu not found: run scripts/install-criu.sh"
    );
    assert!(log.take().is_empty());
}

#[test]
fn an_unknown_engine_lists_the_available_ones() {
    let _serial = serial();
    let err = crac::use_engine("podman").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown checkpoint engine `podman` (from crac::use_engine); available: criu, failing, keep-running, panicking, simulate, unavailable"
    );
}

#[test]
fn failing_restore_hooks_are_reported_as_a_restore_failure() {
    let _serial = serial();
    simulate();
    let log = Log::default();
    let db = Recorder::with("db", 0, Behaviour::FailRestore, &log);
    crac::register(&db);
    let err = crac::checkpoint_restore().unwrap_err();
    let Error::RestoreFailed { restore, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(restore.is_restored());
    assert_eq!(
        err.to_string(),
        "after restore, 1 failure:\n  - `db` failed in after_restore: could not reconnect"
    );
}

#[test]
fn generations_count_checkpoints_and_restores() {
    let _serial = serial();
    simulate();
    let first = crac::checkpoint_restore().unwrap();
    let second = crac::checkpoint_restore().unwrap();
    assert_eq!(second.generation, first.generation + 1);
    assert_eq!(second.checkpointed_for, Some(std::time::Duration::ZERO));
}

struct Reentrant(Mutex<Option<Error>>);
impl Resource for Reentrant {
    fn before_checkpoint(&self, _: &Checkpoint) -> Result<(), BoxError> {
        *self.0.lock().unwrap() = crac::checkpoint_restore().err();
        Ok(())
    }
    fn after_restore(&self, _: &Restore) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn checkpoint_restore_from_inside_a_hook_is_refused() {
    let _serial = serial();
    simulate();
    let r = Arc::new(Reentrant(Mutex::new(None)));
    crac::register(&r);
    crac::checkpoint_restore().unwrap();
    let inner = r.0.lock().unwrap().take();
    assert!(matches!(inner, Some(Error::Reentrant)), "{inner:?}");
}

#[test]
fn an_error_debug_prints_its_message_as_main_shows_it() {
    // `fn main() -> Result<(), crac::Error>` prints the error with `Debug`
    let error = Error::Reentrant;
    assert_eq!(format!("{error:?}"), error.to_string());
    assert!(format!("{error:?}").starts_with("checkpoint_restore() called from inside"));
}

struct Exclusive {
    busy: AtomicBool,
    overlaps: AtomicUsize,
    calls: AtomicUsize,
}
impl Exclusive {
    fn enter(&self) {
        if self.busy.swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(2));
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.busy.store(false, Ordering::SeqCst);
    }
}
impl Resource for Exclusive {
    fn before_checkpoint(&self, _: &Checkpoint) -> Result<(), BoxError> {
        self.enter();
        Ok(())
    }
    fn after_restore(&self, _: &Restore) -> Result<(), BoxError> {
        self.enter();
        Ok(())
    }
}

#[test]
fn concurrent_requests_are_serialized() {
    let _serial = serial();
    simulate();
    let r = Arc::new(Exclusive {
        busy: AtomicBool::new(false),
        overlaps: AtomicUsize::new(0),
        calls: AtomicUsize::new(0),
    });
    crac::register(&r);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..3 {
                    crac::checkpoint_restore().unwrap();
                }
            });
        }
    });
    assert_eq!(r.calls.load(Ordering::SeqCst), 4 * 3 * 2);
    assert_eq!(r.overlaps.load(Ordering::SeqCst), 0);
}

struct RegistersAnother {
    log: Log,
    created: Mutex<Vec<Arc<Recorder>>>,
}
impl Resource for RegistersAnother {
    fn before_checkpoint(&self, _: &Checkpoint) -> Result<(), BoxError> {
        let late = Recorder::new("late", &self.log);
        crac::register(&late);
        self.created.lock().unwrap().push(late);
        Ok(())
    }
    fn after_restore(&self, _: &Restore) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn a_resource_registered_during_a_checkpoint_joins_the_next_one() {
    let _serial = serial();
    simulate();
    let log = Log::default();
    let r = Arc::new(RegistersAnother {
        log: log.clone(),
        created: Mutex::new(Vec::new()),
    });
    crac::register(&r);
    crac::checkpoint_restore().unwrap();
    assert!(
        log.take().is_empty(),
        "not notified by the checkpoint it was registered in"
    );
    crac::checkpoint_restore().unwrap();
    assert_eq!(log.take(), ["late:checkpoint", "late:restored"]);
}

#[test]
fn nested_contexts_notify_their_members_at_their_position() {
    let _serial = serial();
    simulate();
    let log = Log::default();
    let db = Arc::new(Context::new("db"));
    let pool = Recorder::new("pool", &log);
    let broken = Recorder::with("replica", 0, Behaviour::FailCheckpoint, &log);
    let inner = Arc::new(Context::new("db.cache"));
    let cache = Recorder::new("cache", &log);
    inner.register(&cache);
    db.register(&pool);
    db.register(&inner);
    let before = Recorder::new("before", &log);
    let after = Recorder::new("after", &log);
    crac::register(&before);
    crac::register(&db);
    crac::register(&after);

    let plan = crac::plan();
    let rows: Vec<_> = plan
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.kind, e.depth))
        .collect();
    assert_eq!(
        rows,
        [
            ("after", PlanEntryKind::Resource, 0),
            ("db", PlanEntryKind::Context, 0),
            ("db.cache", PlanEntryKind::Context, 1),
            ("cache", PlanEntryKind::Resource, 2),
            ("pool", PlanEntryKind::Resource, 1),
            ("before", PlanEntryKind::Resource, 0),
        ]
    );
    crac::checkpoint_restore().unwrap();
    assert_eq!(
        log.take(),
        [
            "after:checkpoint",
            "cache:checkpoint",
            "pool:checkpoint",
            "before:checkpoint",
            "before:restored",
            "pool:restored",
            "cache:restored",
            "after:restored",
        ]
    );

    db.register(&broken);
    let err = crac::checkpoint_restore().unwrap_err();
    assert_eq!(
        err.to_string(),
        "checkpoint refused, no image taken, resources rolled back; 1 failure:\n  \
         - `db` failed in before_checkpoint: 1 failure:\n      \
         - `replica` failed in before_checkpoint: cannot close listener\n          \
         caused by: socket still busy"
    );
    assert_eq!(
        log.take(),
        [
            "after:checkpoint",
            "replica:checkpoint",
            "cache:checkpoint",
            "pool:checkpoint",
            "before:checkpoint",
            "before:rolled-back",
            "pool:rolled-back",
            "cache:rolled-back",
            "replica:rolled-back",
            "after:rolled-back",
        ]
    );
}

struct Panicking;
impl Engine for Panicking {
    fn name(&self) -> &'static str {
        "panicking"
    }
    fn checkpoint(&self, _: &Request<'_>) -> Result<EngineOutcome, BoxError> {
        panic!("engine bug")
    }
}
crac::register_engine!(Panicking);

#[test]
fn a_panicking_engine_is_an_engine_failure_and_everyone_rolls_back() {
    let _serial = serial();
    crac::use_engine("panicking").unwrap();
    let log = Log::default();
    let a = Recorder::new("a", &log);
    crac::register(&a);
    let err = crac::checkpoint_restore().unwrap_err();
    assert_eq!(
        err.to_string(),
        "checkpoint failed in engine `panicking`, resources rolled back: panicked: engine bug"
    );
    assert_eq!(log.take(), ["a:checkpoint", "a:rolled-back"]);
}

#[test]
fn a_resource_registered_twice_is_notified_once() {
    let _serial = serial();
    simulate();
    let log = Log::default();
    let a = Recorder::new("a", &log);
    let b = Recorder::new("b", &log);
    crac::register(&a);
    crac::register(&b);
    crac::register(&a);
    assert_eq!(
        crac::plan().names(),
        ["b", "a"],
        "kept at its first registration"
    );
    crac::checkpoint_restore().unwrap();
    assert_eq!(
        log.take(),
        ["b:checkpoint", "a:checkpoint", "a:restored", "b:restored"]
    );
}

#[test]
fn a_context_inside_itself_is_refused_by_name_instead_of_recursing() {
    let _serial = serial();
    simulate();
    let log = Log::default();
    let outer = Arc::new(Context::new("outer"));
    let inner = Arc::new(Context::new("inner"));
    let a = Recorder::new("a", &log);
    inner.register(&a);
    inner.register(&outer);
    outer.register(&inner);
    crac::register(&outer);
    let rows: Vec<_> = crac::plan()
        .entries
        .iter()
        .map(|e| (e.name.clone(), e.depth))
        .collect();
    assert_eq!(
        rows,
        [
            ("outer".to_string(), 0),
            ("inner".to_string(), 1),
            ("outer".to_string(), 2),
            ("a".to_string(), 2)
        ]
    );
    let err = crac::checkpoint_restore().unwrap_err();
    assert!(
        err.to_string().contains(
            "`outer` failed in before_checkpoint: context `outer` is registered inside itself \
             (directly or through nested contexts); register it in one place only"
        ),
        "{err}"
    );
    assert_eq!(log.take(), ["a:checkpoint", "a:rolled-back"]);
}
