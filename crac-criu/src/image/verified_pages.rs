//! A record of page data found intact, so that restores of an unchanged image do not
//! hash it again: at 268 MB hashing costs a core about 36 ms per restore, and eight
//! copies started at once on two cores would spend most of their start on it.
//!
//! Once a restore has found an image's page files intact — or publishing has written
//! the image, computing those digests from the files ([`record`]) — an empty file is
//! created in a tmpfs directory only its user can write (root's [`RECORDS`]; an ordinary
//! user's in their `$XDG_RUNTIME_DIR`, [`USER_RECORDS`]), named after a digest of what
//! was checked:
//! each page file's name, size and digest as the manifest records them, and its device,
//! inode, size, modification and change times as `stat` reports them. Any change made
//! through the file system (a write, a truncate, a replaced file, even one whose
//! modification time is put back with `utimensat`: its change time still moves) gives
//! another name, and the next restore hashes again. What a record cannot see is a change
//! that bypasses the file system — media decay, writes to the block device — after the
//! first check; `--verify-pages always` hashes regardless (see docs/images.md). The
//! records live on a tmpfs, so a reboot (which can reuse inode numbers) forgets them.
//!
//! Restores of the same files started together take turns on a lock per record: the
//! first hashes while the others wait, then find its record; a first restorer that fails
//! or is killed leaves no record, and the next one hashes.

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::image::{self, ImageRefusal, manifest::Manifest};
use crate::sys::fs::open_regular;
use crate::sys::privileges;

/// Where records are kept: beside CRIU's kernel-feature cache, in the directory
/// `scripts/install-criu.sh` makes a tmpfs only root can write.
const RECORDS: &str = "/run/crac-criu/verified-pages";
/// An ordinary user's (rootless mode), in `$XDG_RUNTIME_DIR`: where CRIU keeps its
/// kernel-feature cache unprivileged, a tmpfs of the user's own on systemd hosts.
const USER_RECORDS: &str = "crac-verified-pages";
/// A record is removed this long after the check that made it: its image is likely gone,
/// and a check now and then also catches what a record cannot see.
const KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// When the page data is hashed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VerifyPages {
    /// Unless an earlier restore found these very files intact (the default).
    #[default]
    Cached,
    /// At every restore.
    Always,
}

/// How the page data was found intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Intact {
    /// Hashed now.
    Hashed,
    /// Hashed by an earlier restore, the files unchanged since.
    Recorded,
}

/// Checks the page data of the image in `dir` (see [`image::verify_pages`]), or finds a
/// record that these unchanged files were checked before.
pub(crate) fn verify(
    dir: &Path,
    manifest: &Manifest,
    mode: VerifyPages,
) -> Result<Intact, ImageRefusal> {
    let hash = || image::verify_pages(dir, manifest);
    // Without a trustworthy directory or a key (a file that cannot be stat'ed, which
    // the check then reports), records are not used.
    let records = records_path().and_then(|path| records_dir(&path));
    let (Some(records), Some(key)) = (records, key(dir, manifest)) else {
        return hash().map(|()| Intact::Hashed);
    };
    let unchanged = || self::key(dir, manifest).as_deref() == Some(key.as_str());
    take_turn(&records, &key, mode, hash, unchanged)
}

/// Records the page data and heap segments of the image just published (or unpacked) in
/// `dir` as found intact: publishing has just computed the digests the manifest holds
/// from these very files (the page files now, the segments when the heap was sealed),
/// unpacking has just checked every byte it wrote against them, so the first
/// restore of a new image need not hash them again. Best effort: without a trustworthy
/// records directory (not root, say) the first restore hashes, as before.
pub(crate) fn record(dir: &Path, manifest: &Manifest) {
    let records = records_path().and_then(|path| records_dir(&path));
    if let (Some(records), Some(key)) = (records, key(dir, manifest)) {
        remove_old(&records);
        let _ = open_lock(&records.join(key));
    }
}

/// The record `key` in `records` if there is one (unless `mode` is `Always`); otherwise,
/// under its lock, `hash`, and a record if it succeeded and the files are still
/// `unchanged` (a hash may predate a change made while it ran).
fn take_turn<E>(
    records: &Path,
    key: &str,
    mode: VerifyPages,
    hash: impl FnOnce() -> Result<(), E>,
    unchanged: impl FnOnce() -> bool,
) -> Result<Intact, E> {
    let record = records.join(key);
    if mode == VerifyPages::Cached && is_record(&record) {
        return Ok(Intact::Recorded);
    }
    let lock_path = records.join(format!("{key}.lock"));
    let Ok(lock) = open_lock(&lock_path) else {
        return hash().map(|()| Intact::Hashed);
    };
    // Waits while another restore of the same files hashes them.
    let _ = lock.lock();
    if mode == VerifyPages::Cached && is_record(&record) {
        return Ok(Intact::Recorded);
    }
    hash()?;
    if unchanged() {
        remove_old(records);
        let _ = open_lock(&record);
    }
    Ok(Intact::Hashed)
}

/// The record's name for the page files and heap segments a manifest lists, as they are
/// now in `dir`; `None` if one is not a regular file (the check then refuses it by name)
/// or cannot be stat'ed.
fn key(dir: &Path, manifest: &Manifest) -> Option<String> {
    let pages = manifest
        .files
        .iter()
        .filter(|f| image::is_page_data(&f.name))
        .map(|f| (dir.join(&f.name), f.size, &f.blake3));
    let segments = manifest
        .segments
        .iter()
        .map(|s| (s.path.clone(), s.len, &s.digest));
    let mut text = String::new();
    for (path, size, digest) in pages.chain(segments) {
        let m = open_regular(&path).ok()?.metadata().ok()?;
        text += &format!(
            "{} {size} {digest} {} {} {} {}.{:09} {}.{:09}\n",
            path.display(),
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        );
    }
    Some(blake3::hash(text.as_bytes()).to_hex().to_string())
}

/// `path` is a record: a regular file (not a link someone slipped in).
fn is_record(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

/// Opens (creating) a lock or record, this user's alone, never through a link.
fn open_lock(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Where this user's records are: root's [`RECORDS`]; an ordinary user's, also inside
/// the user namespace of rootless mode (where they look like root), in
/// `$XDG_RUNTIME_DIR`; `None` without one.
fn records_path() -> Option<PathBuf> {
    let rootless = !nix::unistd::geteuid().is_root() || privileges::unmapped_owner().is_some();
    if rootless {
        Some(PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR")?).join(USER_RECORDS))
    } else {
        Some(PathBuf::from(RECORDS))
    }
}

/// `records`, created if missing, if a record there can be trusted: on a tmpfs (gone at
/// reboot), owned by this user and writable by them only, as is its parent.
fn records_dir(records: &Path) -> Option<PathBuf> {
    let parent = records.parent()?;
    if !own_only(parent) || !crate::sys::fs::is_tmpfs(parent) {
        return None;
    }
    let _ = std::fs::DirBuilder::new().mode(0o700).create(records);
    own_only(records).then(|| records.to_path_buf())
}

/// A real directory (not a link), owned by this process's user, that nobody else can
/// write.
fn own_only(dir: &Path) -> bool {
    let me = nix::unistd::geteuid().as_raw();
    std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.file_type().is_dir() && m.uid() == me && m.mode() & 0o022 == 0)
}

/// Removes records and locks not renewed for [`KEPT`] (a lock still held then only lets
/// a newcomer hash beside its holder).
fn remove_old(records: &Path) {
    let now = SystemTime::now();
    for entry in std::fs::read_dir(records).into_iter().flatten().flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|at| now.duration_since(at).is_ok_and(|age| age > KEPT));
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with_pages(name: &str) -> (PathBuf, Vec<crate::image::manifest::ImageFile>) {
        let dir = std::env::temp_dir().join(format!("crac-verified-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("pages-1.img"), b"pages").unwrap();
        std::fs::write(dir.join("core-1.img"), b"core").unwrap();
        let files = ["pages-1.img", "core-1.img"]
            .map(|name| crate::image::manifest::ImageFile {
                name: name.into(),
                size: 5,
                blake3: "ab".into(),
            })
            .into();
        (dir, files)
    }

    #[test]
    fn the_key_changes_with_any_change_to_a_page_file_and_only_then() {
        let (dir, files) = image_with_pages("key");
        let pages = dir.join("pages-1.img");
        let first = key(&dir, &Manifest::listing(files.clone(), vec![])).unwrap();
        assert_eq!(
            key(&dir, &Manifest::listing(files.clone(), vec![])).unwrap(),
            first,
            "nothing changed"
        );
        std::fs::write(dir.join("core-1.img"), b"other").unwrap();
        assert_eq!(
            key(&dir, &Manifest::listing(files.clone(), vec![])).unwrap(),
            first,
            "not page data"
        );

        // the same size, the modification time put back: the change time still moves
        let mtime = std::fs::metadata(&pages).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&pages, b"PAGES").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&pages)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(
            std::fs::metadata(&pages).unwrap().modified().unwrap(),
            mtime
        );
        let flipped = key(&dir, &Manifest::listing(files.clone(), vec![])).unwrap();
        assert_ne!(flipped, first);

        // a replaced file (another inode), same bytes
        std::fs::write(dir.join("new"), b"PAGES").unwrap();
        std::fs::rename(dir.join("new"), &pages).unwrap();
        let replaced = key(&dir, &Manifest::listing(files.clone(), vec![])).unwrap();
        assert_ne!(replaced, flipped);

        // another digest recorded for the same file
        let mut other = files.clone();
        other[0].blake3 = "cd".into();
        assert_ne!(
            key(&dir, &Manifest::listing(other, vec![])).unwrap(),
            replaced
        );

        // a heap segment outside the directory counts as a page file does
        let segment = crate::heap::Segment {
            path: dir.join("seg-1.heap"),
            len: 3,
            digest: "ef".into(),
        };
        std::fs::write(&segment.path, b"seg").unwrap();
        let with_segment = || {
            key(
                &dir,
                &Manifest::listing(files.clone(), vec![segment.clone()]),
            )
        };
        let listed = with_segment().unwrap();
        assert_ne!(listed, replaced);
        std::fs::write(&segment.path, b"SEG").unwrap();
        assert_ne!(with_segment().unwrap(), listed);
        std::fs::remove_file(&segment.path).unwrap();
        assert_eq!(with_segment(), None, "a missing segment: no key");

        std::fs::remove_file(&pages).unwrap();
        assert_eq!(
            key(&dir, &Manifest::listing(files.clone(), vec![])),
            None,
            "a missing file: no key"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn restores_take_turns_and_only_a_successful_unchanged_check_is_recorded() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (records, _) = image_with_pages("turns");
        let hashed = AtomicUsize::new(0);
        let ok = || -> Result<(), ()> {
            hashed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        let turn = |key, mode, hash: &dyn Fn() -> Result<(), ()>, unchanged| {
            take_turn(&records, key, mode, hash, || unchanged)
        };
        // a failed check, or one of files changed meanwhile, leaves no record
        assert_eq!(turn("a", VerifyPages::Cached, &|| Err(()), true), Err(()));
        assert_eq!(
            turn("a", VerifyPages::Cached, &ok, false),
            Ok(Intact::Hashed)
        );
        assert_eq!(
            turn("a", VerifyPages::Cached, &ok, true),
            Ok(Intact::Hashed)
        );
        assert_eq!(
            turn("a", VerifyPages::Cached, &ok, true),
            Ok(Intact::Recorded)
        );
        assert_eq!(
            turn("a", VerifyPages::Always, &ok, true),
            Ok(Intact::Hashed)
        );
        assert_eq!(
            turn("b", VerifyPages::Cached, &ok, true),
            Ok(Intact::Hashed)
        );
        assert_eq!(hashed.load(Ordering::SeqCst), 4);

        // eight at once: one hashes, the others wait for it and find its record
        let slow = || -> Result<(), ()> {
            std::thread::sleep(Duration::from_millis(100));
            hashed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        let outcomes: Vec<_> = std::thread::scope(|s| {
            let all: Vec<_> = (0..8)
                .map(|_| s.spawn(|| turn("c", VerifyPages::Cached, &slow, true)))
                .collect();
            all.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(hashed.load(Ordering::SeqCst), 5, "{outcomes:?}");
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == Ok(Intact::Recorded))
                .count(),
            7
        );
        std::fs::remove_dir_all(records).unwrap();
    }

    #[test]
    fn records_are_kept_only_where_nobody_else_can_write() {
        use std::os::unix::fs::PermissionsExt as _;
        let (dir, _) = image_with_pages("trust");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(records_dir(&dir.join("records")), None, "writable by all");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&dir, dir.join("link")).unwrap();
        assert!(!own_only(&dir.join("link")), "a link to a good directory");
        if !crate::sys::fs::is_tmpfs(&dir) {
            assert_eq!(records_dir(&dir.join("records")), None, "not a tmpfs");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn another_users_private_tmpfs_directory_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt as _;
        let shm = Path::new("/dev/shm");
        if !crate::sys::fs::is_tmpfs(shm) {
            return;
        }
        let dir = shm.join(format!("crac-verified-owner-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            records_dir(&dir.join("records")),
            Some(dir.join("records")),
            "this user's own, private, on a tmpfs"
        );
        // As root (the test runner here): the same directory given to another user.
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&dir, Some(54321), None).unwrap();
            assert_eq!(records_dir(&dir.join("records")), None, "another user's");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
