//! The cache of unpacked images that `crac restore FILE` restores from: a packed file is
//! unpacked (checked, as `crac unpack` does) once per host into `ROOT/KEY/image`, where
//! KEY is its header's digest (BLAKE3 of its header, sealed manifest and entry table,
//! which holds every entry's digest: the same packed image, wherever it was copied, has
//! the same key). Later restores, concurrent ones included, use that one copy; the
//! restore checks it as it checks any image directory.
//!
//! ROOT is `CRAC_IMAGE_CACHE`, else `/var/cache/crac/images` for root and
//! `$XDG_CACHE_HOME/crac/images` (or `~/.cache/crac/images`) for anyone else: made mode
//! 0700, and refused if another user owns it or can write it. Its size is bounded by
//! `CRAC_IMAGE_CACHE_BYTES` (default [`DEFAULT_BOUND`]): after an unpack, the entries
//! used least recently are removed until the rest fit (never the one just used, nor one
//! in use). One lock (`flock` on ROOT) orders the look-up, the unpack and the eviction.
//!
//! An entry is in use while a restore holds its lease: a shared `flock` on the entry's
//! directory, taken under ROOT's lock when the entry is looked up, held until the restore
//! ends (CRIU reads the image while it restores, a lazy restore's page server as long as
//! the process runs). Eviction takes an exclusive `flock` on an entry without waiting and
//! skips the entry if a lease holds it, so no restore ever loses its image.
//!
//! Heap segments are not in the cache: CRIU maps them at the absolute paths recorded at
//! checkpoint, so they are placed there (`place.rs`) and stay when an entry is evicted
//! (another image may map them).

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::env::{IMAGE_CACHE, IMAGE_CACHE_BYTES};
use crate::image::pack::format;
use crate::image::pack::input::{self, AGE_MAGIC, Input};
use crate::sys::fs::{lock_exclusive, open_regular};

/// The cache's bound when `CRAC_IMAGE_CACHE_BYTES` is unset: 16 GB.
pub(crate) const DEFAULT_BOUND: u64 = 16_000_000_000;
/// What each entry's directory holds the image in.
const IMAGE: &str = "image";

/// Whether `path` is a packed image (a regular file that starts as one), not a directory.
/// An encrypted one (age) is taken for one too: decrypting it tells.
pub(crate) fn is_packed(path: &Path) -> bool {
    use std::io::Read as _;
    let mut start = Vec::new();
    open_regular(path)
        .ok()
        .and_then(|f| f.take(AGE_MAGIC.len() as u64).read_to_end(&mut start).ok())
        .is_some_and(|_| start.starts_with(format::MAGIC) || start == AGE_MAGIC)
}

/// An image of the cache, ready to restore, and kept from eviction while this lives.
#[derive(Debug)]
pub(crate) struct Cached {
    /// Its directory.
    pub(crate) dir: PathBuf,
    /// Whether this call unpacked it (false: an earlier one had).
    pub(crate) unpacked: bool,
    /// The shared lock on its entry that keeps eviction away.
    pub(crate) lease: Lease,
}

/// A shared `flock` on a cache entry's directory: eviction skips the entry while one is
/// held (released when dropped, or when the process ends however it ends).
#[derive(Debug)]
pub(crate) struct Lease {
    _lock: Flock<std::fs::File>,
}

impl Lease {
    /// Takes a lease on the entry `entry`; called under the cache's lock, which an
    /// eviction holds too, so that none can come between the look-up and the lease.
    fn take(entry: &Path) -> Result<Lease, String> {
        let dir =
            std::fs::File::open(entry).map_err(|e| format!("opening {}: {e}", entry.display()))?;
        // Not waiting: crac's own exclusive lock (eviction) is taken under the cache's
        // lock, held here; another's would hang every restore from this cache.
        Flock::lock(dir, FlockArg::LockSharedNonblock)
            .map(|lock| Lease { _lock: lock })
            .map_err(|(_, e)| {
                format!(
                    "locking {}: {e} (another process holds it exclusively: find it with \
                     `fuser -v {0}`)",
                    entry.display()
                )
            })
    }
}

/// The cached image of the packed file `file`, unpacked first if the cache has none (an
/// encrypted one decrypted with `CRAC_PACK_IDENTITY`'s identities).
pub(crate) fn image_of(file: &Path) -> Result<Cached, String> {
    let key = key_of(file)?;
    let root = root()?;
    let bound = bound()?;
    let _lock = lock_exclusive(&root).map_err(|e| format!("locking {}: {e}", root.display()))?;
    let entry = root.join(&key);
    let dir = entry.join(IMAGE);
    if dir.join(crate::image::manifest::FILE_NAME).is_file() {
        // its modification time orders the eviction: least recently used first
        let _ = nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &entry,
            &nix::sys::time::TimeSpec::UTIME_NOW,
            &nix::sys::time::TimeSpec::UTIME_NOW,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        );
        return Ok(Cached {
            dir,
            unpacked: false,
            lease: Lease::take(&entry)?,
        });
    }
    // an entry a crash cut short
    let _ = std::fs::remove_dir_all(&entry);
    make_private_dir(&entry)?;
    if let Err(e) = super::unpack(file, None, Some(&key), &dir) {
        let _ = std::fs::remove_dir_all(&entry);
        return Err(e);
    }
    let lease = Lease::take(&entry)?;
    evict(&root, &key, bound);
    Ok(Cached {
        dir,
        unpacked: true,
        lease,
    })
}

/// The key of a packed file: its header's digest, once the header reads whole.
fn key_of(file: &Path) -> Result<String, String> {
    let Input { mut reader, len } = input::open(file, None)?;
    let head = format::read_head(&mut reader, len)?;
    Ok(head.key())
}

/// The cache's directory, made if missing, refused if anyone else could write into it.
fn root() -> Result<PathBuf, String> {
    let root = match std::env::var_os(IMAGE_CACHE).filter(|p| !p.is_empty()) {
        Some(path) => std::path::absolute(PathBuf::from(path)).map_err(|e| e.to_string())?,
        None if nix::unistd::geteuid().is_root() => PathBuf::from("/var/cache/crac/images"),
        None => std::env::var_os("XDG_CACHE_HOME")
            .filter(|p| Path::new(p).is_absolute())
            .map(PathBuf::from)
            .or_else(|| Some(Path::new(&std::env::var_os("HOME")?).join(".cache")))
            .ok_or(format!(
                "HOME is not set: set {IMAGE_CACHE} to the image cache's directory"
            ))?
            .join("crac/images"),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&root)
        .map_err(|e| format!("making the image cache {}: {e}", root.display()))?;
    let meta = std::fs::symlink_metadata(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "the image cache {} is not a directory of yours that only you can open (mode 0700): \
             anyone who can write into it could swap the images restored from it; fix it or \
             set {IMAGE_CACHE}",
            root.display()
        ));
    }
    Ok(root)
}

/// `CRAC_IMAGE_CACHE_BYTES`, or the default.
fn bound() -> Result<u64, String> {
    match std::env::var(IMAGE_CACHE_BYTES) {
        Ok(text) if !text.is_empty() => text
            .parse()
            .map_err(|_| format!("{IMAGE_CACHE_BYTES}: {text:?} is not a number of bytes")),
        _ => Ok(DEFAULT_BOUND),
    }
}

fn make_private_dir(path: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| format!("making {}: {e}", path.display()))
}

/// Removes the least recently used entries but `kept` and those in use (a [`Lease`]
/// holds them) until the cache holds at most `bound` bytes. Best effort: an entry that
/// cannot be measured, locked or removed stays.
fn evict(root: &Path, kept: &str, bound: u64) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut sized: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let meta = std::fs::symlink_metadata(e.path()).ok()?;
            meta.is_dir().then(|| {
                let time = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                (time, bytes_in(&e.path().join(IMAGE)), e.path())
            })
        })
        .collect();
    let mut total: u64 = sized.iter().map(|(_, bytes, _)| bytes).sum();
    sized.sort();
    for (_, bytes, path) in sized {
        if total <= bound {
            break;
        }
        if path.file_name().is_some_and(|n| n == kept) {
            continue;
        }
        // held while it is removed: no lease can be taken meanwhile (that needs the
        // cache's lock, which the caller holds), this only finds out whether one is held
        let Some(_unused) = std::fs::File::open(&path)
            .ok()
            .and_then(|dir| Flock::lock(dir, FlockArg::LockExclusiveNonblock).ok())
        else {
            continue;
        };
        if std::fs::remove_dir_all(&path).is_ok() {
            total -= bytes;
        }
    }
}

/// Bytes of the files directly in `dir`.
fn bytes_in(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter_map(|e| std::fs::symlink_metadata(e.path()).ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_removes_the_least_recently_used_but_the_kept_one() {
        let root = std::env::temp_dir().join(format!("crac-cache-evict-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            let image = root.join(name).join(IMAGE);
            std::fs::create_dir_all(&image).unwrap();
            std::fs::write(image.join("pages-1.img"), vec![0; 1000]).unwrap();
            let time = nix::sys::time::TimeSpec::new(1_000_000 + i as i64, 0);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &root.join(name),
                &time,
                &time,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .unwrap();
        }
        // room for two: the oldest goes, though the kept one is older still
        evict(&root, "old", 2000);
        assert!(root.join("old").exists() && !root.join("mid").exists());
        assert!(root.join("new").exists());
        evict(&root, "new", 1000);
        assert!(!root.join("old").exists() && root.join("new").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn eviction_skips_an_entry_a_restore_holds_a_lease_on() {
        let root = std::env::temp_dir().join(format!("crac-cache-busy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for name in ["busy", "idle"] {
            let image = root.join(name).join(IMAGE);
            std::fs::create_dir_all(&image).unwrap();
            std::fs::write(image.join("pages-1.img"), vec![0; 1000]).unwrap();
        }
        let lease = Lease::take(&root.join("busy")).unwrap();
        // a lease held by another open file (another process's restore) counts the same
        evict(&root, "none", 0);
        assert!(root.join("busy/image/pages-1.img").exists());
        assert!(!root.join("idle").exists());
        drop(lease);
        evict(&root, "none", 0);
        assert!(!root.join("busy").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
