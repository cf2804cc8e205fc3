//! `#[crac(reopen)]` in-process, with an engine that looks at the process's fds where
//! CRIU would dump it and can change the files meanwhile: the file is closed for the
//! image (only the claimed placeholder is open), then reopened by path with its flags
//! and at its offset — after a restore, on rollback, at a path given at restore time —
//! and a file that is gone fails the restore naming it. The same with real CRIU:
//! `crac-cli/tests/e2e/fields.rs`.
#![cfg(target_os = "linux")]

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use common::serial;
use crac::engine::{Engine, EngineOutcome, Request};
use crac::{Checkpoint, Checkpointable, Error};

/// What the engine saw of the fds when the image would have been taken.
#[derive(Debug, Default)]
struct AtImage {
    /// The targets of every open fd.
    targets: Vec<PathBuf>,
    /// Every claimed fd's owner.
    claims: Vec<String>,
}

type During = Box<dyn FnOnce() + Send>;

/// Records the fds, runs the test's `DURING` (changing files as between a checkpoint
/// and a restore), and reports a restore passing `ENV`.
struct Inspecting;
static AT_IMAGE: Mutex<Option<AtImage>> = Mutex::new(None);
static DURING: Mutex<Option<During>> = Mutex::new(None);
static ENV: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

impl Engine for Inspecting {
    fn name(&self) -> &'static str {
        "inspecting"
    }
    fn checkpoint(&self, _: &Request<'_>) -> Result<EngineOutcome, crac::BoxError> {
        let targets = std::fs::read_dir("/proc/self/fd")?
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .collect();
        let claims = crac::claimed_fds()
            .into_iter()
            .map(|(_, owner)| owner)
            .collect();
        *lock(&AT_IMAGE) = Some(AtImage { targets, claims });
        if let Some(during) = lock(&DURING).take() {
            during();
        }
        Ok(EngineOutcome::Restored {
            checkpointed_for: None,
            args: Vec::new(),
            env: lock(&ENV).clone(),
            restore_began: None,
            monotonic_time_kept: None,
        })
    }
}
crac::register_engine!(Inspecting);

#[derive(Checkpointable)]
#[crac(name = "journal")]
struct Journal {
    #[crac(reopen)]
    log: Mutex<File>,
}

#[derive(Checkpointable)]
#[crac(name = "store")]
struct Store {
    #[crac(reopen(path_env = "STORE_PATH", create))]
    data: RwLock<Option<File>>,
}

/// A fresh scratch directory for one test, removed when the test passes (kept to look
/// at when it fails).
fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("crac-reopen-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn checkpoint(
    during: impl FnOnce() + Send + 'static,
    env: &[(&str, &Path)],
) -> Result<AtImage, Error> {
    crac::use_engine("inspecting").unwrap();
    *lock(&DURING) = Some(Box::new(during));
    *lock(&ENV) = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.display().to_string()))
        .collect();
    let result = crac::checkpoint_restore();
    let seen = lock(&AT_IMAGE).take();
    result.map(|_| seen.expect("the engine ran"))
}

/// A test that failed holding a lock does not fail the others.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn journal(file: File) -> Arc<Journal> {
    let journal = Arc::new(Journal {
        log: Mutex::new(file),
    });
    crac::register(&journal);
    journal
}

#[test]
fn a_file_is_closed_for_the_image_and_reopened_at_its_offset() {
    let _serial = serial();
    let dir = scratch("offset");
    let path = dir.join("app.log");
    let journal = journal(File::create(&path).unwrap());
    journal.log.lock().unwrap().write_all(b"before\n").unwrap();

    let seen = checkpoint(|| {}, &[]).unwrap();
    assert!(
        !seen.targets.contains(&path),
        "no fd on {} in the image: {seen:?}",
        path.display()
    );
    assert!(
        seen.claims
            .contains(&format!("journal.log: placeholder for {}", path.display())),
        "the placeholder is claimed: {seen:?}"
    );

    let mut log = journal.log.lock().unwrap();
    assert_eq!(log.stream_position().unwrap(), 7, "at the recorded offset");
    log.write_all(b"after\n").unwrap();
    assert_eq!(read(&path), "before\nafter\n");
    assert!(
        crac::claimed_fds().is_empty(),
        "the claim ends with the reopen"
    );
}

#[test]
fn an_append_mode_file_stays_append_and_a_read_only_file_stays_read_only() {
    let _serial = serial();
    let dir = scratch("append");
    let path = dir.join("app.log");
    let journal = journal(
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .unwrap(),
    );
    journal.log.lock().unwrap().write_all(b"before\n").unwrap();
    let input = dir.join("input");
    std::fs::write(&input, "0123456789").unwrap();
    let reader = Arc::new(Store {
        data: RwLock::new(Some(File::open(&input).unwrap())),
    });
    crac::register(&reader);
    reader
        .data
        .write()
        .unwrap()
        .as_mut()
        .unwrap()
        .read_exact(&mut [0; 4])
        .unwrap();

    // another process appends while this one is in the image
    let appended = path.clone();
    checkpoint(
        move || {
            let mut other = OpenOptions::new().append(true).open(appended).unwrap();
            other.write_all(b"other\n").unwrap();
        },
        &[],
    )
    .unwrap();

    journal.log.lock().unwrap().write_all(b"after\n").unwrap();
    assert_eq!(
        read(&path),
        "before\nother\nafter\n",
        "appended, not written at 7"
    );
    let mut data = reader.data.write().unwrap();
    let file = data.as_mut().unwrap();
    let mut rest = String::new();
    file.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "456789", "read on from the offset");
    assert!(file.write_all(b"x").is_err(), "still read-only");
}

#[test]
fn the_file_at_the_path_at_restore_is_the_one_reopened() {
    let _serial = serial();
    let dir = scratch("replaced");
    let path = dir.join("app.log");
    let journal = journal(File::create(&path).unwrap());
    journal.log.lock().unwrap().write_all(b"old\n").unwrap();

    let replaced = path.clone();
    checkpoint(
        move || {
            let fresh = replaced.with_extension("new");
            std::fs::write(&fresh, "new file\n").unwrap();
            std::fs::rename(&fresh, &replaced).unwrap();
        },
        &[],
    )
    .unwrap();
    journal.log.lock().unwrap().write_all(b"more\n").unwrap();
    assert_eq!(
        read(&path),
        "new more\n",
        "the new file, written at offset 4"
    );
}

#[test]
fn a_missing_file_fails_the_restore_naming_its_path_and_create_makes_a_new_one() {
    let _serial = serial();
    let dir = scratch("missing");
    let path = dir.join("app.log");
    let journal = journal(File::create(&path).unwrap());
    journal.log.lock().unwrap().write_all(b"before\n").unwrap();
    let stored = dir.join("store");
    let store = Arc::new(Store {
        data: RwLock::new(Some(File::create(&stored).unwrap())),
    });
    crac::register(&store);
    store
        .data
        .write()
        .unwrap()
        .as_mut()
        .unwrap()
        .write_all(b"data")
        .unwrap();

    let (gone, also_gone) = (path.clone(), stored.clone());
    let error = checkpoint(
        move || {
            std::fs::remove_file(gone).unwrap();
            std::fs::remove_file(also_gone).unwrap();
        },
        &[],
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "`journal.log` failed in after_restore: reopening {} (open at checkpoint at offset \
             7): No such file or directory (os error 2); put it back, or write \
             `reopen(create)` to create a missing file",
            path.display()
        )),
        "{message}"
    );
    assert_eq!(error.failures().len(), 1, "{message}");
    assert!(
        journal.log.lock().unwrap().write_all(b"lost").is_err(),
        "the placeholder stays, and refuses writes"
    );
    // `create` made a new, empty file, written from its start
    let mut data = store.data.write().unwrap();
    data.as_mut().unwrap().write_all(b"new").unwrap();
    assert_eq!(read(&stored), "new");
}

#[test]
fn path_env_moves_the_file_and_a_rollback_reopens_it_where_it_was() {
    let _serial = serial();
    let dir = scratch("moved");
    let (first, second) = (dir.join("first"), dir.join("second"));
    std::fs::write(&second, "0123456789").unwrap();
    let store = Arc::new(Store {
        data: RwLock::new(Some(File::create(&first).unwrap())),
    });
    crac::register(&store);
    let write = |bytes: &[u8]| {
        store
            .data
            .write()
            .unwrap()
            .as_mut()
            .unwrap()
            .write_all(bytes)
            .unwrap()
    };
    write(b"ab");

    let refuse = Arc::new(Refuse);
    crac::register(&refuse);
    let error = checkpoint(|| {}, &[("STORE_PATH", &second)]).unwrap_err();
    assert!(matches!(error, Error::CheckpointRefused { .. }), "{error}");
    write(b"cd");
    assert_eq!(
        read(&first),
        "abcd",
        "rolled back: the same file, at its offset"
    );
    drop(refuse);

    checkpoint(|| {}, &[("STORE_PATH", &second)]).unwrap();
    write(b"XY");
    assert_eq!(
        read(&second),
        "0123XY6789",
        "the restore-time path, at the offset"
    );
    assert_eq!(read(&first), "abcd");
}

#[test]
fn a_file_that_cannot_be_reopened_by_path_refuses_the_checkpoint() {
    let _serial = serial();
    let dir = scratch("deleted");
    let path = dir.join("app.log");
    let journal = journal(File::create(&path).unwrap());
    std::fs::remove_file(&path).unwrap();
    let error = checkpoint(|| {}, &[]).unwrap_err();
    assert!(
        error.to_string().contains(&format!(
            "`journal.log` failed in before_checkpoint: {} was deleted while open: it cannot \
             be reopened by path",
            path.display()
        )),
        "{error}"
    );
    assert!(
        journal.log.lock().unwrap().write_all(b"kept").is_ok(),
        "the file was left open"
    );
}

#[derive(Checkpointable)]
#[crac(before_checkpoint = Self::refuse)]
struct Refuse;

impl Refuse {
    fn refuse(&self, _: &Checkpoint) -> Result<(), crac::BoxError> {
        Err("not now".into())
    }
}

#[test]
fn a_file_its_owner_replaced_during_the_checkpoint_is_left_alone_and_its_claim_ends() {
    let _serial = serial();
    let dir = scratch("replaced-by-owner");
    let journal = journal(File::create(dir.join("first.log")).unwrap());
    let owner = Arc::clone(&journal);
    let second = dir.join("second.log");
    let opened = second.clone();
    checkpoint(
        move || *owner.log.lock().unwrap() = File::create(opened).unwrap(),
        &[],
    )
    .unwrap();
    journal.log.lock().unwrap().write_all(b"mine").unwrap();
    assert_eq!(read(&second), "mine", "the owner's file stays");

    let seen = checkpoint(|| {}, &[]).unwrap();
    let placeholders: Vec<_> = seen
        .claims
        .iter()
        .filter(|owner| owner.starts_with("journal.log"))
        .collect();
    assert_eq!(
        placeholders,
        [&format!(
            "journal.log: placeholder for {}",
            second.display()
        )],
        "only the live placeholder is claimed"
    );
}
