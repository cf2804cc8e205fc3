//! `MappedHeap` as a program's global allocator, without CRIU: the heap's mode, its
//! segment files before and after sealing, and writes racing the seal.
//!
//! The mode is decided at the process's first allocation, from its environment, so each
//! case runs in a child process (this executable again, `harness = false`) started with
//! the environment it needs.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[global_allocator]
static ALLOC: crac_criu::MappedHeap = crac_criu::MappedHeap::new();

/// The image target's variable (crac-criu's `env::CHECKPOINT_TO`).
const CHECKPOINT_TO: &str = concat!("CRAC", "_CHECKPOINT_TO");
/// Which case a child runs.
const CASE: &str = "MAPPED_HEAP_TEST_CASE";

const CASES: &[(&str, fn())] = &[
    (
        "segments_are_unnamed_until_sealed_then_private_and_unchanging",
        sealing,
    ),
    ("writes_racing_the_seal_are_kept", racing_writes),
    (
        "growth_after_a_seal_makes_a_segment_the_next_seal_seals",
        growth_after_seal,
    ),
    (
        "without_an_image_target_the_system_allocator_serves",
        without_target,
    ),
    (
        "a_failed_seal_leaves_the_heap_usable_and_shared",
        failed_seal,
    ),
    ("a_full_disk_makes_the_heap_grow_in_memory", full_disk),
    ("a_planted_symlink_store_is_refused", in_symlink_store),
    ("a_store_others_can_write_is_refused", in_refused_store),
    ("a_store_another_user_owns_is_refused", in_refused_store),
    (
        "a_relative_target_is_resolved_against_the_working_directory",
        relative_target,
    ),
];

fn main() {
    if let Ok(case) = std::env::var(CASE) {
        let run = CASES
            .iter()
            .find(|(name, _)| *name == case)
            .expect("known case")
            .1;
        run();
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = Vec::new();
    for (name, _) in CASES {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let dir = temp_dir(name);
        let mut child = Command::new(std::env::current_exe().unwrap());
        child
            .env(CASE, name)
            .env("TMP_CASE_DIR", &dir)
            .env_remove(CHECKPOINT_TO);
        match *name {
            "without_an_image_target_the_system_allocator_serves" => {}
            "a_planted_symlink_store_is_refused" => {
                let elsewhere = dir.join("elsewhere");
                std::fs::create_dir(&elsewhere).unwrap();
                std::os::unix::fs::symlink(&elsewhere, dir.join("svc.heap")).unwrap();
                child.env(CHECKPOINT_TO, dir.join("svc"));
            }
            "a_store_others_can_write_is_refused" => {
                let store = dir.join("svc.heap");
                std::fs::create_dir(&store).unwrap();
                std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o777)).unwrap();
                child.env(CHECKPOINT_TO, dir.join("svc"));
            }
            "a_store_another_user_owns_is_refused" => {
                let store = dir.join("svc.heap");
                std::fs::create_dir(&store).unwrap();
                std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o700)).unwrap();
                // Only root can give a directory away.
                if std::os::unix::fs::chown(&store, Some(65534), None).is_err() {
                    println!("test {name} ... ignored (needs root)");
                    remove_store(&dir);
                    continue;
                }
                child.env(CHECKPOINT_TO, dir.join("svc"));
            }
            "a_full_disk_makes_the_heap_grow_in_memory" => {
                // A 100 MiB file system of its own, in a mount namespace of its own: room
                // for the first segment (64 MiB), not the second (128 MiB).
                let program = child.get_program().to_owned();
                let mut wrapped = Command::new("unshare");
                wrapped
                    .args([
                        "-m",
                        "sh",
                        "-c",
                        r#"mount -t tmpfs -o size=100m tmpfs "$0" && exec "$@""#,
                    ])
                    .arg(&dir)
                    .arg(program)
                    .env(CASE, name)
                    .env("TMP_CASE_DIR", &dir)
                    .env(CHECKPOINT_TO, dir.join("svc"));
                // SAFETY: geteuid cannot fail.
                if unsafe { libc::geteuid() } != 0 {
                    println!("test {name} ... ignored (needs root)");
                    continue;
                }
                child = wrapped;
            }
            "a_relative_target_is_resolved_against_the_working_directory" => {
                child.current_dir(&dir).env(CHECKPOINT_TO, "svc/");
            }
            _ => {
                child.env(CHECKPOINT_TO, dir.join("svc"));
            }
        }
        let status = child.status().unwrap();
        println!(
            "test {name} ... {}",
            if status.success() { "ok" } else { "FAILED" }
        );
        if !status.success() {
            failed.push(*name);
        }
        remove_store(&dir);
    }
    assert!(failed.is_empty(), "failed: {failed:?}");
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mapped-heap-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes a case's directory, clearing the immutable flag sealed segments may carry.
fn remove_store(dir: &Path) {
    let _ = Command::new("chattr").arg("-R").arg("-i").arg(dir).output();
    let _ = std::fs::remove_dir_all(dir);
}

fn case_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("TMP_CASE_DIR").unwrap())
}

fn store_entries(store: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
}

/// The mappings of /proc/self/maps whose path starts with `prefix`: (start, end, perms, path).
fn mappings(prefix: &Path) -> Vec<(usize, usize, String, String)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields.get(5..)?.join(" ");
            if !path.starts_with(prefix.to_str().unwrap()) {
                return None;
            }
            let (start, end) = fields[0].split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            Some((start, end, fields[1].to_string(), path))
        })
        .collect()
}

/// Whether the file cannot be opened for writing, even by root (`FS_IMMUTABLE_FL`).
fn immutable(path: &Path) -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let refused = std::fs::OpenOptions::new().write(true).open(path).is_err();
    !root || refused
}

fn digest(path: &Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap())
        .to_hex()
        .to_string()
}

/// Warm state over more than one segment: a map of strings and a large vector.
struct Warm {
    map: HashMap<u64, String>,
    numbers: Vec<u64>,
}

impl Warm {
    fn build() -> Warm {
        let map = (0..200_000u64)
            .map(|i| (i, format!("value number {i}")))
            .collect();
        let numbers = (0..12_000_000u64).map(|i| i * 7).collect();
        Warm { map, numbers }
    }

    fn check(&self) {
        assert_eq!(self.map.len(), 200_000);
        for i in (0..200_000u64).step_by(997) {
            assert_eq!(self.map[&i], format!("value number {i}"));
        }
        assert!(
            self.numbers
                .iter()
                .enumerate()
                .all(|(i, n)| *n == i as u64 * 7)
        );
    }
}

fn sealing() {
    let store = case_dir().join("svc.heap");
    let warm = Warm::build();
    assert_eq!(
        crac_criu::__store_for_tests().as_deref(),
        Some(store.as_path())
    );
    assert!(
        store_entries(&store).is_empty(),
        "unsealed segments are unnamed"
    );
    let shared = mappings(&store);
    assert!(shared.len() >= 2, "more than one segment: {shared:?}");
    assert!(
        shared
            .iter()
            .all(|(_, _, perms, path)| perms == "rw-s" && path.ends_with("(deleted)"))
    );

    let sealed = crac_criu::__seal_for_tests().unwrap();
    assert_eq!(sealed.len(), shared.len());
    assert_eq!(store_entries(&store).len(), sealed.len());
    let private = mappings(&store);
    for ((path, len, digest_hex), (start, end, perms, mapped)) in sealed.iter().zip(&private) {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o400,
            "{}",
            path.display()
        );
        assert_eq!(meta.len(), *len);
        assert_eq!(digest(path), *digest_hex);
        assert_eq!(perms, "rw-p");
        assert_eq!(Path::new(mapped), path);
        assert_eq!((end - start) as u64, *len);
    }
    // Remapped in place; the last segment's unused end given back (to the reservation,
    // and by the file).
    for (i, ((start, end, _, _), (was_start, was_end, _, _))) in
        private.iter().zip(&shared).enumerate()
    {
        assert_eq!(start, was_start, "remapped in place");
        if i + 1 < shared.len() {
            assert_eq!(end, was_end, "only the last segment is trimmed");
        } else {
            assert!(end <= was_end);
        }
    }
    assert!(
        immutable(&sealed[0].0),
        "sealed files are immutable (root, on ext4)"
    );
    warm.check();

    // Writes after the seal go to private pages: the files do not change.
    let mut warm = warm;
    for n in &mut warm.numbers {
        *n = u64::MAX;
    }
    warm.map.clear();
    for (path, _, digest_hex) in &sealed {
        assert_eq!(
            digest(path),
            *digest_hex,
            "{} changed after its seal",
            path.display()
        );
        assert!(std::fs::metadata(path).unwrap().ino() > 0);
    }
    // Sealing again changes nothing and lists the same segments.
    assert_eq!(crac_criu::__seal_for_tests().unwrap(), sealed);
}

fn racing_writes() {
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|t| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut numbers = vec![0u64; 4_000_000];
                let mut strings = Vec::new();
                let mut passes = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for n in numbers.iter_mut() {
                        *n += 1;
                    }
                    passes += 1;
                    strings.push(format!("thread {t} pass {passes}"));
                }
                assert!(numbers.iter().all(|n| *n == passes), "a write was lost");
                for (i, s) in strings.iter().enumerate() {
                    assert_eq!(*s, format!("thread {t} pass {}", i + 1));
                }
                passes
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let sealed = crac_criu::__seal_for_tests().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        assert!(writer.join().unwrap() > 1);
    }
    for (path, _, digest_hex) in &sealed {
        assert_eq!(digest(path), *digest_hex);
    }
}

fn growth_after_seal() {
    let store = case_dir().join("svc.heap");
    let warm = Warm::build();
    let first = crac_criu::__seal_for_tests().unwrap();
    let unnamed = |m: Vec<(usize, usize, String, String)>| {
        m.into_iter()
            .filter(|(_, _, perms, _)| perms == "rw-s")
            .count()
    };
    // Until the checkpoint ends, growth makes no file.
    let paused: Vec<u64> = vec![3; 40_000_000];
    assert_eq!(
        unnamed(mappings(&store)),
        0,
        "no file segment while a checkpoint is under way"
    );
    crac_criu::__resume_for_tests();
    let grown: Vec<u64> = vec![5; 40_000_000];
    assert_eq!(unnamed(mappings(&store)), 1, "one new, unsealed segment");
    assert_eq!(
        store_entries(&store).len(),
        first.len(),
        "the new segment is unnamed"
    );
    let second = crac_criu::__seal_for_tests().unwrap();
    assert_eq!(second.len(), first.len() + 1);
    assert_eq!(
        second[..first.len()],
        first[..],
        "earlier segments are listed as they were"
    );
    let (path, len, digest_hex) = &second[first.len()];
    assert_eq!(digest(path), *digest_hex);
    assert_eq!(std::fs::metadata(path).unwrap().len(), *len);
    warm.check();
    assert!(paused.iter().all(|n| *n == 3) && grown.iter().all(|n| *n == 5));
}

fn failed_seal() {
    let dir = case_dir();
    let store = dir.join("svc.heap");
    let warm = Warm::build();
    let shared = mappings(&store);
    // The store gone (moved away), nothing can be named in it.
    let moved = dir.join("moved.heap");
    std::fs::rename(&store, &moved).unwrap();
    let error = crac_criu::__seal_for_tests().unwrap_err();
    assert!(
        error.starts_with(&format!(
            "sealing heap segment {}/(unnamed segment at 0x",
            store.display()
        )) && error.ends_with("opening its store: No such file or directory (os error 2)"),
        "{error}"
    );
    std::fs::rename(&moved, &store).unwrap();
    warm.check();
    let still = mappings(&store);
    assert_eq!(still.len(), shared.len());
    assert!(
        still
            .iter()
            .all(|(_, _, perms, path)| perms == "rw-s" && path.ends_with("(deleted)"))
    );
    // The heap grows in files again at once (no checkpoint is under way).
    let more: Vec<u64> = vec![9; 40_000_000];
    assert_eq!(mappings(&store).len(), shared.len() + 1);
    let sealed = crac_criu::__seal_for_tests().unwrap();
    assert_eq!(sealed.len(), shared.len() + 1);
    warm.check();
    assert!(more.iter().all(|n| *n == 9));
}

fn full_disk() {
    let store = case_dir().join("svc.heap");
    let warm = Warm::build();
    warm.check();
    let files = mappings(&store);
    assert_eq!(files.len(), 1, "only the first segment fits: {files:?}");
    let sealed = crac_criu::__seal_for_tests().unwrap();
    assert_eq!(sealed.len(), 1);
    assert_eq!(digest(&sealed[0].0), sealed[0].2);
    warm.check();
}

fn without_target() {
    let warm = Warm::build();
    warm.check();
    assert_eq!(crac_criu::__store_for_tests(), None);
    assert_eq!(crac_criu::__seal_for_tests().unwrap(), Vec::new());
    assert!(
        std::fs::read_dir(case_dir()).unwrap().next().is_none(),
        "no store made"
    );
}

fn in_symlink_store() {
    let warm = Warm::build();
    warm.check();
    assert_eq!(crac_criu::__store_for_tests(), None);
    assert_eq!(crac_criu::__seal_for_tests().unwrap(), Vec::new());
    let elsewhere = case_dir().join("elsewhere");
    assert!(
        store_entries(&elsewhere).is_empty(),
        "nothing written through the link"
    );
}

fn in_refused_store() {
    let warm = Warm::build();
    warm.check();
    assert_eq!(crac_criu::__store_for_tests(), None);
    assert_eq!(crac_criu::__seal_for_tests().unwrap(), Vec::new());
    assert!(store_entries(&case_dir().join("svc.heap")).is_empty());
}

fn relative_target() {
    let store = case_dir().join("svc.heap");
    assert_eq!(
        crac_criu::__store_for_tests().as_deref(),
        Some(store.as_path())
    );
    let meta = std::fs::symlink_metadata(&store).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
}
