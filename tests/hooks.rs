//! `#[crac::before_checkpoint]` and `#[crac::on_restore]`. Hook functions are part of
//! every checkpoint of this test binary, so this file holds only these.

mod common;

use std::sync::{Arc, LazyLock};

use common::{Log, serial};
use crac::{BoxError, Checkpoint, Checkpointable, PlanEntryKind, Ranked, Restore};

/// `#[crac(secret)]` fields need freed memory scrubbed.
#[global_allocator]
static ALLOC: crac::ScrubbingAlloc = crac::ScrubbingAlloc::new(std::alloc::System);

/// Hook functions have no `self` to hold a log: they share this one.
static LOG: LazyLock<Log> = LazyLock::new(Log::default);

fn log(entry: &str) {
    LOG.push(entry.into());
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
    pub(crate) fn restore_plain() -> Result<(), std::io::Error> {
        super::log("nested restore");
        Ok(())
    }
}

/// Equal ranks (0), names in the opposite order of the paths.
mod by_path {
    #[crac::on_restore(name = "b: hooks::by_path::a_path")]
    pub(crate) fn a_path() {}

    #[crac::on_restore(name = "a: hooks::by_path::b_path")]
    pub(crate) fn b_path() {}
}

/// Generated bindings must not collide with the user's items in scope, and generated
/// items must not need an `allow` that a `forbid` would reject.
mod collisions {
    #![allow(non_upper_case_globals)]
    #![forbid(non_camel_case_types, dead_code)]

    use std::sync::Mutex;

    use crac::{BoxError, Checkpoint, Checkpointable, Restore};

    pub(crate) const event: u32 = 1;
    pub(crate) static hook: u32 = 2;
    pub(crate) const steps: u32 = 3;
    pub(crate) const deps: u32 = 4;

    pub(crate) mod recorded {
        use super::*;

        pub(crate) fn before_checkpoint(log: &Mutex<Vec<String>>, _: &Checkpoint) {
            log.lock().unwrap().push("field before".into());
        }

        pub(crate) fn after_restore(log: &Mutex<Vec<String>>, _: &Restore) {
            log.lock().unwrap().push("field after".into());
        }
    }

    #[derive(Checkpointable)]
    #[crac(depends_on(super::Store))]
    #[crac(before_checkpoint = Self::before, after_restore = Self::after)]
    pub(crate) struct Collide {
        #[crac(with = recorded)]
        pub(crate) log: Mutex<Vec<String>>,
        #[crac(secret, reload = Self::reload)]
        pub(crate) key: Mutex<String>,
    }

    impl Collide {
        fn before(&self, checkpoint: &Checkpoint) {
            assert_eq!(checkpoint.engine, "simulate");
            self.log.lock().unwrap().push("own before".into());
        }
        fn after(&self, _: &Restore) -> Result<(), BoxError> {
            self.log.lock().unwrap().push("own after".into());
            Ok(())
        }
        fn reload(&self) -> Result<String, BoxError> {
            Ok(format!("{}", event + hook + steps + deps))
        }
    }

    #[crac::before_checkpoint(depends_on(Collide))]
    pub(crate) fn flush(checkpoint: &Checkpoint) {
        assert_eq!(checkpoint.engine, "simulate");
    }

    #[crac::on_restore(depends_on(flush))]
    pub(crate) fn reopen() {}
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
    assert_eq!(<collisions::Collide as Ranked>::RANK, 2);
    assert_eq!(<collisions::flush as Ranked>::RANK, 3);
    assert_eq!(<collisions::reopen as Ranked>::RANK, 4);
}

#[test]
fn the_plan_lists_hooks_with_their_names_ranks_and_kinds() {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
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
            ("hooks::collisions::reopen", 4, PlanEntryKind::OnRestore, 0),
            (
                "hooks::collisions::flush",
                3,
                PlanEntryKind::BeforeCheckpoint,
                0
            ),
            // Equal ranks: registered resources, then hooks by descending full path.
            ("hooks::with_event", 2, PlanEntryKind::BeforeCheckpoint, 0),
            ("hooks::restore_event", 2, PlanEntryKind::OnRestore, 0),
            ("hooks::Store", 1, PlanEntryKind::Resource, 0),
            ("hooks::plain", 0, PlanEntryKind::BeforeCheckpoint, 0),
            ("nested restore", 0, PlanEntryKind::OnRestore, 0),
            ("a: hooks::by_path::b_path", 0, PlanEntryKind::OnRestore, 0),
            ("b: hooks::by_path::a_path", 0, PlanEntryKind::OnRestore, 0),
        ]
    );
}

#[test]
fn hooks_of_equal_rank_are_ordered_by_full_path_not_by_name() {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();

    let plan = crac::plan();

    // Hooks count as registered in the order of their paths: `hooks::by_path::a_path`,
    // `hooks::by_path::b_path`, `hooks::nested::restore_plain`, `hooks::plain`; at equal
    // rank, checkpoint order is the reverse. By name it would be `nested restore`,
    // `hooks::plain`, `b: ...`, `a: ...`.
    let rank_zero: Vec<_> = plan
        .entries
        .iter()
        .filter(|e| e.rank == 0)
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        rank_zero,
        [
            "hooks::plain",
            "nested restore",
            "a: hooks::by_path::b_path",
            "b: hooks::by_path::a_path",
        ]
    );
}

#[test]
fn generated_bindings_do_not_collide_with_items_in_scope() {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
    let collide = Arc::new(collisions::Collide {
        log: std::sync::Mutex::new(Vec::new()),
        key: std::sync::Mutex::new("key".into()),
    });
    crac::register(&collide);

    crac::checkpoint_restore().unwrap();

    assert_eq!(
        *collide.log.lock().unwrap(),
        ["own before", "field before", "field after", "own after"]
    );
    assert_eq!(*collide.key.lock().unwrap(), "10");
}

#[test]
fn hooks_run_in_dependency_order_each_in_its_phase() {
    let _serial = serial();
    crac::use_engine("simulate").unwrap();
    let store = Arc::new(Store);
    crac::register(&store);
    LOG.take(); // drops what earlier checkpoints of this binary logged

    crac::checkpoint_restore().unwrap();

    assert_eq!(
        LOG.take(),
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

/// The line of this file that contains `needle`, counted from 1.
fn line_of(needle: &str) -> u32 {
    let at = include_str!("hooks.rs")
        .lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} is in this file"));
    u32::try_from(at).unwrap() + 1
}

#[test]
fn the_plan_says_where_every_participant_comes_from() {
    let _serial = serial();
    let store = Arc::new(Store);
    let group = Arc::new(crac::Context::new("group"));
    crac::register(&group); // group registered here
    group.register(&store); // store registered here
    let plan = crac::plan();
    let at = |name: &str| {
        let entry = plan.entries.iter().find(|e| e.name == name).unwrap();
        (entry.location.file(), entry.location.line())
    };

    // hook functions: where they are written (the line of their name)
    assert_eq!(at("hooks::plain"), (file!(), line_of("fn plain()")));
    assert_eq!(
        at("nested restore"),
        (file!(), line_of("fn restore_plain()"))
    );
    // registered resources and contexts: the `register` call
    assert_eq!(at("group"), (file!(), line_of("// group registered here")));
    assert_eq!(
        at("hooks::Store"),
        (file!(), line_of("// store registered here"))
    );

    let text = plan.to_string();
    let store_line = format!(
        "  hooks::Store ({}:{}) [rank 1, resource]\n",
        file!(),
        line_of("// store registered here")
    );
    assert!(text.contains(&store_line), "{text}");
    assert!(
        text.contains(&format!(
            "hooks::plain ({}:{}) [rank 0",
            file!(),
            line_of("fn plain()")
        )),
        "{text}"
    );
}
