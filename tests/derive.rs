//! `#[derive(Checkpointable)]` at runtime: instances are registered in the global context
//! and go through `crac::checkpoint_restore()` with the `simulate` engine.
//!
//! Tests of one file run on parallel threads and share the global registry: each takes
//! `serial()` and drops its resources before releasing it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use common::{Log, serial};
use crac::{BoxError, Checkpoint, Checkpointable, Ranked, Resource, Restore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `#[crac(secret)]` fields need freed memory scrubbed (`tests/unscrubbed_secrets.rs`).
#[global_allocator]
static ALLOC: crac::ScrubbingAlloc = crac::ScrubbingAlloc::new(std::alloc::System);

/// A leaf resource recording its hooks.
#[derive(Checkpointable)]
#[crac(before_checkpoint = Self::before, after_restore = Self::after)]
struct Probe {
    label: &'static str,
    log: Log,
}

impl Probe {
    fn new(label: &'static str, log: &Log) -> Self {
        Probe {
            label,
            log: log.clone(),
        }
    }
    fn before(&self, _: &Checkpoint) {
        self.log.push(format!("{} before", self.label));
    }
    fn after(&self, _: &Restore) -> Result<(), BoxError> {
        self.log.push(format!("{} after", self.label));
        Ok(())
    }
}

#[derive(Checkpointable)]
#[crac(before_checkpoint = Self::before, after_restore = Self::after)]
struct Ordered {
    log: Log,
    #[crac(resource)]
    first: Probe,
    #[crac(resource)]
    second: Arc<Probe>,
    #[crac(resource)]
    third: Option<Mutex<Probe>>,
    #[crac(resource)]
    fourth: RwLock<Probe>,
    #[crac(resource)]
    absent: Option<Arc<Probe>>,
    #[crac(skip)]
    _untouched: Probe,
}

impl Ordered {
    fn before(&self, _: &Checkpoint) -> Result<(), std::io::Error> {
        self.log.push("own before".into());
        Ok(())
    }
    fn after(&self, _: &Restore) {
        self.log.push("own after".into());
    }
}

#[test]
fn own_hooks_wrap_the_fields_in_reverse_order_and_delegation_reaches_through_wrappers() {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
    let log = Log::default();
    let ordered = Arc::new(Ordered {
        log: log.clone(),
        first: Probe::new("first", &log),
        second: Arc::new(Probe::new("second", &log)),
        third: Some(Mutex::new(Probe::new("third", &log))),
        fourth: RwLock::new(Probe::new("fourth", &log)),
        absent: None,
        _untouched: Probe::new("skipped", &log),
    });
    crac::register(&ordered);

    let restore = crac::checkpoint_restore().unwrap();

    assert!(restore.is_restored());
    assert_eq!(
        log.take(),
        [
            "own before",
            "fourth before",
            "third before",
            "second before",
            "first before",
            "first after",
            "second after",
            "third after",
            "fourth after",
            "own after",
        ]
    );
}

mod recorded {
    use super::*;

    pub(crate) fn before_checkpoint(calls: &Mutex<Vec<String>>, event: &Checkpoint) {
        calls
            .lock()
            .unwrap()
            .push(format!("before {}", event.engine));
    }

    pub(crate) fn after_restore(
        calls: &Mutex<Vec<String>>,
        event: &Restore,
    ) -> Result<(), BoxError> {
        calls
            .lock()
            .unwrap()
            .push(format!("after {:?}", event.outcome()));
        Ok(())
    }
}

#[derive(Checkpointable)]
struct Tuple(
    #[crac(with = recorded)] Mutex<Vec<String>>,
    #[crac(skip)] u8,
);

#[test]
fn with_module_gets_the_field_and_the_event() {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
    let tuple = Arc::new(Tuple(Mutex::new(Vec::new()), 0));
    crac::register(&tuple);

    crac::checkpoint_restore().unwrap();

    assert_eq!(
        *tuple.0.lock().unwrap(),
        ["before simulate", "after Restored"]
    );
    assert_eq!(tuple.1, 0, "skipped");
}

#[derive(Checkpointable)]
struct Seeded {
    #[crac(reseed)]
    mutex: Mutex<StdRng>,
    #[crac(reseed)]
    rwlock: RwLock<StdRng>,
}

#[test]
fn reseed_replaces_the_generator_state() {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
    let seeded = Arc::new(Seeded {
        mutex: Mutex::new(StdRng::seed_from_u64(7)),
        rwlock: RwLock::new(StdRng::seed_from_u64(7)),
    });
    crac::register(&seeded);
    let predictable = StdRng::seed_from_u64(7).next_u64();

    crac::checkpoint_restore().unwrap();

    let from_mutex = seeded.mutex.lock().unwrap().next_u64();
    let from_rwlock = seeded.rwlock.write().unwrap().next_u64();
    assert_ne!(from_mutex, predictable);
    assert_ne!(from_rwlock, predictable);
    assert_ne!(
        from_mutex, from_rwlock,
        "each generator gets its own entropy"
    );
}

/// A generator every copy may share, said so: it compiles and is left as it is.
#[derive(Checkpointable)]
struct Replayed {
    #[crac(same_in_every_copy)]
    fixture: Mutex<StdRng>,
}

#[test]
fn a_generator_marked_same_in_every_copy_is_left_alone() {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
    let replayed = Arc::new(Replayed {
        fixture: Mutex::new(StdRng::seed_from_u64(7)),
    });
    crac::register(&replayed);
    let predictable = StdRng::seed_from_u64(7).next_u64();

    crac::checkpoint_restore().unwrap();

    assert_eq!(replayed.fixture.lock().unwrap().next_u64(), predictable);
}

/// Ranked above `Observer`: wiped before `Observer` looks at it at checkpoint, and
/// reloaded after `Observer` at restore.
#[derive(Checkpointable)]
#[crac(depends_on(Observer))]
struct Vault {
    #[crac(secret, reload = Self::load_key)]
    key: Mutex<String>,
    #[crac(secret)]
    token: RwLock<Vec<u8>>,
    loads: AtomicUsize,
}

impl Vault {
    fn load_key(&self) -> Result<String, BoxError> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        Ok("reloaded key".into())
    }
}

#[derive(Checkpointable)]
#[crac(before_checkpoint = Self::look)]
struct Observer {
    vault: Arc<Vault>,
    seen: Mutex<Vec<(String, Vec<u8>)>>,
}

impl Observer {
    fn look(&self, _: &Checkpoint) {
        let key = self.vault.key.lock().unwrap().clone();
        let token = self.vault.token.read().unwrap().clone();
        self.seen.lock().unwrap().push((key, token));
    }
}

#[test]
fn secrets_are_wiped_before_checkpoint_and_reloaded_after_restore() {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
    assert_eq!(<Observer as Ranked>::RANK, 0);
    assert_eq!(<Vault as Ranked>::RANK, 1);
    let vault = Arc::new(Vault {
        key: Mutex::new("secret key".into()),
        token: RwLock::new(b"token".to_vec()),
        loads: AtomicUsize::new(0),
    });
    let observer = Arc::new(Observer {
        vault: vault.clone(),
        seen: Mutex::new(Vec::new()),
    });
    crac::register(&observer);
    crac::register(&vault);
    assert_eq!(vault.rank(), 1);

    crac::checkpoint_restore().unwrap();

    assert_eq!(
        *observer.seen.lock().unwrap(),
        [(String::new(), Vec::new())]
    );
    assert_eq!(*vault.key.lock().unwrap(), "reloaded key");
    assert!(
        vault.token.read().unwrap().is_empty(),
        "no reload: stays wiped"
    );
    assert_eq!(vault.loads.load(Ordering::Relaxed), 1);
}

#[derive(Checkpointable)]
#[crac(name = "custom name")]
struct Named;

#[derive(Checkpointable)]
struct Unnamed;

#[test]
fn name_overrides_the_type_name() {
    assert_eq!(Named.name(), "custom name");
    assert_eq!(Unnamed.name(), std::any::type_name::<Unnamed>());
}

/// Bounds the field options need (`T: Resource` for `resource`) are written on the type.
#[derive(Checkpointable)]
#[crac(depends_on(Probe))]
struct Inner<T: Resource>(#[crac(resource)] T);

#[derive(Checkpointable)]
#[crac(name = "generic", depends_on(Inner<T>, Tuple))]
struct Generic<T, const N: usize>
where
    T: Resource,
{
    #[crac(resource)]
    inner: Inner<T>,
    _array: [u8; N],
}

#[test]
fn generic_types_and_dependency_ranks() {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
    assert_eq!(<Probe as Ranked>::RANK, 0);
    assert_eq!(<Tuple as Ranked>::RANK, 0);
    assert_eq!(<Inner<Probe> as Ranked>::RANK, 1);
    assert_eq!(<Generic<Probe, 3> as Ranked>::RANK, 2);

    let log = Log::default();
    let generic = Arc::new(Generic {
        inner: Inner(Probe::new("inner", &log)),
        _array: [0; 3],
    });
    assert_eq!(generic.rank(), 2);
    crac::register(&generic);

    crac::checkpoint_restore().unwrap();

    assert_eq!(log.take(), ["inner before", "inner after"]);
}

mod failing {
    use super::*;

    pub(crate) fn before_checkpoint(reason: &&'static str, _: &Checkpoint) -> Result<(), BoxError> {
        Err((*reason).into())
    }

    pub(crate) fn after_restore(_: &&'static str, _: &Restore) {}
}

#[derive(Checkpointable)]
#[crac(name = "flaky", before_checkpoint = Self::refuse)]
struct Flaky {
    #[crac(with = failing)]
    a: &'static str,
    #[crac(resource)]
    fine: Probe,
    #[crac(with = failing)]
    r#b: &'static str,
}

impl Flaky {
    fn refuse(&self, _: &Checkpoint) -> Result<(), String> {
        Err("own refusal".into())
    }
}

#[test]
fn every_step_runs_and_failures_name_type_and_field() {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
    let log = Log::default();
    let flaky = Arc::new(Flaky {
        a: "a is not ready",
        fine: Probe::new("fine", &log),
        b: "b is not ready",
    });
    crac::register(&flaky);

    let error = crac::checkpoint_restore().unwrap_err();

    assert_eq!(
        error.to_string(),
        "checkpoint refused, no image taken, resources rolled back; 1 failure:
  - `flaky` failed in before_checkpoint: 3 failures:
      - `flaky` failed in before_checkpoint: own refusal
      - `flaky.b` failed in before_checkpoint: b is not ready
      - `flaky.a` failed in before_checkpoint: a is not ready"
    );
    // The field between the failing ones was still notified, then rolled back.
    assert_eq!(log.take(), ["fine before", "fine after"]);
}

#[derive(Checkpointable)]
#[crac(after_restore = Self::fail)]
struct Alone;

impl Alone {
    fn fail(&self, _: &Restore) -> Result<(), std::fmt::Error> {
        Err(std::fmt::Error)
    }
}

#[derive(Checkpointable)]
#[crac(name = "pair")]
struct Pair(
    #[crac(secret, reload = Self::unavailable)] Mutex<String>,
    #[crac(with = failing)] &'static str,
);

impl Pair {
    fn unavailable(&self) -> Result<String, &'static str> {
        Err("vault unreachable")
    }
}

#[test]
fn a_single_own_failure_is_reported_as_is_and_tuple_fields_by_index() {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
    let alone = Arc::new(Alone);
    crac::register(&alone);

    let error = crac::checkpoint_restore().unwrap_err();

    assert_eq!(
        error.to_string(),
        "after restore, 1 failure:
  - `derive::Alone` failed in after_restore: an error occurred when formatting an argument"
    );
    drop(alone);

    let pair = Arc::new(Pair(Mutex::new("key".into()), "refused"));
    crac::register(&pair);

    let error = crac::checkpoint_restore().unwrap_err();

    assert_eq!(
        error.to_string(),
        "checkpoint refused, no image taken, resources rolled back; 2 failures:
  - `pair` failed in before_checkpoint: 1 failure:
      - `pair.1` failed in before_checkpoint: refused
  - `pair` failed in after_restore: 1 failure:
      - `pair.0` failed in after_restore: vault unreachable"
    );
}

/// What `Pool` needs of its connection: `Send`, not `Sync`.
trait Reopen: Send {
    fn reopen(&self);
}

impl Reopen for std::cell::Cell<u32> {
    fn reopen(&self) {
        self.set(self.get() + 1);
    }
}

/// `Sync` for any `C: Send`, through the `Mutex`: the impl is bounded on the type, not
/// on each parameter.
#[derive(Checkpointable)]
#[crac(after_restore = Self::reopen)]
struct Pool<C: Reopen> {
    conn: Mutex<C>,
}

impl<C: Reopen> Pool<C> {
    fn reopen(&self, _: &Restore) {
        self.conn.lock().unwrap().reopen();
    }
}

#[test]
fn a_generic_type_needs_only_itself_to_be_send_and_sync() {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
    let pool = Arc::new(Pool {
        conn: Mutex::new(std::cell::Cell::new(0_u32)),
    });
    crac::register(&pool);

    crac::checkpoint_restore().unwrap();

    assert_eq!(pool.conn.lock().unwrap().get(), 1);
}

#[derive(Checkpointable)]
struct Dynamic {
    #[crac(resource)]
    inner: Arc<dyn Resource>,
    #[crac(resource)]
    wrapped: Mutex<Option<Arc<dyn Resource>>>,
}

#[test]
fn resource_delegates_to_trait_objects() {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
    let log = Log::default();
    let dynamic = Arc::new(Dynamic {
        inner: Arc::new(Probe::new("inner", &log)),
        wrapped: Mutex::new(Some(Arc::new(Probe::new("wrapped", &log)))),
    });
    crac::register(&dynamic);

    crac::checkpoint_restore().unwrap();

    assert_eq!(
        log.take(),
        [
            "wrapped before",
            "inner before",
            "inner after",
            "wrapped after"
        ]
    );
}
