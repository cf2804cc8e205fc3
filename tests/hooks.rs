//! `#[crac::before_checkpoint]` and `#[crac::on_restore]`. Hook functions are part of
//! every checkpoint of this test binary, so this file holds only these.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crac::{BoxError, Checkpoint, Checkpointable, Kind, Ranked, Restore};

static LOCK: Mutex<()> = Mutex::new(());
static LOG: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

fn serial() -> MutexGuard<'static, ()> {
    let guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    crac::use_engine("simulate").expect("the simulate engine is compiled in");
    LOG.lock().unwrap().clear();
    guard
}

fn log(entry: &'static str) {
    LOG.lock().unwrap().push(entry);
}

#[crac::before_checkpoint]
fn plain() {
    log("plain");
}

#[derive(Checkpointable)]
#[crac(depends_on(plain))]
#[crac(before_checkpoint = Self::before, after_restore = Self::after)]
struct Store;

impl Store {
    fn before(&self, _: &Checkpoint) {
        log("Store before");
    }
    fn after(&self, _: &Restore) {
        log("Store after");
    }
}

#[crac::before_checkpoint(depends_on(plain, Store))]
fn with_event(event: &Checkpoint) -> Result<(), BoxError> {
    assert_eq!(event.engine, "simulate");
    log("with_event");
    Ok(())
}

mod nested {
    #[crac::on_restore(name = "nested restore")]
    pub fn restore_plain() -> Result<(), std::io::Error> {
        super::log("nested restore");
        Ok(())
    }
}

#[crac::on_restore(depends_on(nested::restore_plain, Store))]
fn restore_event(event: &crac::Restore) {
    assert!(event.is_restored());
    log("restore_event");
}

#[test]
fn ranks_follow_depends_on_across_hooks_and_types() {
    assert_eq!(<plain as Ranked>::RANK, 0);
    assert_eq!(<nested::restore_plain as Ranked>::RANK, 0);
    assert_eq!(<Store as Ranked>::RANK, 1);
    assert_eq!(<with_event as Ranked>::RANK, 2);
    assert_eq!(<restore_event as Ranked>::RANK, 2);
}

#[test]
fn the_plan_lists_hooks_with_their_names_ranks_and_kinds() {
    let _serial = serial();
    let store = Arc::new(Store);
    crac::register(&store);

    let plan = crac::plan();

    let entries: Vec<_> = plan
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.rank, e.kind, e.depth))
        .collect();
    assert_eq!(
        entries,
        [
            // Equal ranks: registered resources, then hooks by descending name.
            ("hooks::with_event", 2, Kind::BeforeCheckpoint, 0),
            ("hooks::restore_event", 2, Kind::OnRestore, 0),
            ("hooks::Store", 1, Kind::Resource, 0),
            ("nested restore", 0, Kind::OnRestore, 0),
            ("hooks::plain", 0, Kind::BeforeCheckpoint, 0),
        ]
    );
}

#[test]
fn hooks_run_in_dependency_order_each_in_its_phase() {
    let _serial = serial();
    let store = Arc::new(Store);
    crac::register(&store);

    crac::checkpoint_restore().unwrap();

    assert_eq!(
        *LOG.lock().unwrap(),
        [
            "with_event",
            "Store before",
            "plain",
            "nested restore",
            "Store after",
            "restore_event",
        ]
    );
}
