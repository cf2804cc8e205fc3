//! The heap segments an image maps (`crac::MappedHeap`, `crate::heap`): files outside the
//! image directory, in the store beside it (`IMAGE.heap`), which CRIU records by path
//! and maps again at every restore instead of copying their pages into the image.
//!
//! A restore checks each one as it checks the page data: present, a regular file of the
//! recorded size (before CRIU runs), and of the recorded digest (beside CRIU, with the
//! page data, so that a record of an earlier check — made when the image was written, or
//! by an earlier restore — vouches for unchanged files).
//!
//! Images share segments: every periodic image of a process lists all the segments its
//! heap maps, and a restored copy checkpointed elsewhere lists those of the image it came
//! from. So a segment is removed only when no image of its store lists it — the store's
//! own image, or one registered as a *user* of the store (`users/`, one file naming each
//! such image) — and no running process maps it (a copy restored from an image since
//! replaced still runs on it, and may checkpoint again).

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::heap::{self, Segment};
use crate::image::digest;
use crate::image::manifest::FILE_NAME;
use crate::sys::fs;

/// The subdirectory of a store naming the images, elsewhere, that list its segments.
const USERS: &str = "users";
/// How a sealed segment's file name ends; nothing else in a store is ever removed.
const SUFFIX: &str = ".heap";

/// Opens `segment` if it is a regular file of the recorded size, or says what is wrong
/// and what to do.
fn open(segment: &Segment) -> Result<std::fs::File, String> {
    let path = segment.path.display();
    let subject = format!("heap segment {path}");
    let opened = fs::open_regular(&segment.path).map_err(|e| match e {
        fs::NotRegular::Io(e) if e.kind() == std::io::ErrorKind::NotFound => format!(
            "{subject} is missing: the image maps part of the process's memory from it; \
             copy it back with the image (the image and its .heap directory travel \
             together, at the same paths), or take a new checkpoint"
        ),
        e => e.of(&subject),
    })?;
    let len = opened
        .metadata()
        .map_err(|e| format!("{subject}: {e}"))?
        .len();
    if len != segment.len {
        return Err(format!(
            "{subject} is {len} bytes, the manifest says {}: it was truncated or replaced; \
             take a new checkpoint",
            segment.len
        ));
    }
    Ok(opened)
}

/// Checks that `segment` is there, of its size (cheap: before CRIU runs).
pub(crate) fn check_size(segment: &Segment) -> Result<(), String> {
    open(segment).map(drop)
}

/// Checks `segment` whole: its size and its digest.
pub(crate) fn check(segment: &Segment) -> Result<(), String> {
    let found = digest::of_read(open(segment)?)
        .map_err(|e| format!("reading heap segment {}: {e}", segment.path.display()))?;
    if found != segment.digest {
        return Err(format!(
            "heap segment {} does not match its digest (blake3 {}…, the manifest says {}…): it \
             was changed after the checkpoint; take a new checkpoint",
            segment.path.display(),
            &found[..12],
            segment.digest.get(..12).unwrap_or(&segment.digest)
        ));
    }
    Ok(())
}

/// Registers the image in `image_dir` as a user of every store but its own that holds
/// segments it lists, so that replacing those stores' images keeps them.
pub(crate) fn register_user(image_dir: &Path, segments: &[Segment]) -> std::io::Result<()> {
    // segments' paths are as the kernel resolved them when the heap began
    let own = canonical(&heap::store_for(image_dir));
    let mut stores: Vec<PathBuf> = segments
        .iter()
        .filter_map(|s| s.path.parent().map(Path::to_path_buf))
        .filter(|store| *store != own)
        .collect();
    stores.sort();
    stores.dedup();
    for store in stores {
        let users = store.join(USERS);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&users)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        let name = blake3::hash(image_dir.as_os_str().as_encoded_bytes()).to_hex();
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(users.join(&name[..32]))?
            .write_all(image_dir.as_os_str().as_encoded_bytes())?;
    }
    Ok(())
}

/// Removes the segments nobody needs any more from the store of `image_dir` and from
/// every store its image lists segments in. Best effort: what cannot be removed stays,
/// and a later checkpoint tries again.
pub(crate) fn collect_garbage(image_dir: &Path) {
    let mut stores = vec![heap::store_for(image_dir)];
    stores.extend(
        listed(image_dir)
            .iter()
            .filter_map(|path| path.parent().map(Path::to_path_buf)),
    );
    stores.sort();
    stores.dedup();
    for store in stores {
        collect_store(&store);
    }
}

/// Removes from `store` each sealed segment that neither an image using the store lists
/// nor a running process maps.
fn collect_store(store: &Path) {
    // Not a store someone else planted (a link in a shared directory, say): only files
    // of a directory a heap would have used are ever removed.
    if !heap::is_trusted_store(store) {
        return;
    }
    // compared with the listed paths, which the heap resolved
    let store = canonical(store);
    let Ok(entries) = std::fs::read_dir(&store) else {
        return;
    };
    let candidates: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(SUFFIX))
        .collect();
    if candidates.is_empty() {
        return;
    }
    let mut kept = listed(&image_of(&store));
    for user in users(&store) {
        kept.extend(listed(&user));
    }
    let unlisted: Vec<PathBuf> = candidates
        .into_iter()
        .filter(|p| !kept.contains(p))
        .collect();
    if unlisted.is_empty() {
        return;
    }
    let mapped = mapped_files();
    for path in unlisted {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !mapped.contains(&(meta.dev(), meta.ino())) {
            let _ = heap::remove_segment(&path);
        }
    }
}

/// `path` with every link resolved, or as it is if it cannot be.
fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// The image directory whose store `store` is: `IMAGE.heap` → `IMAGE`.
fn image_of(store: &Path) -> PathBuf {
    let name = store.as_os_str().to_string_lossy();
    PathBuf::from(name.strip_suffix(SUFFIX).unwrap_or(&name))
}

/// The images registered as users of `store`.
fn users(store: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(store.join(USERS)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let file = fs::open_regular(&e.path()).ok()?;
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::Read::take(file, 4096), &mut text).ok()?;
            Some(PathBuf::from(text))
        })
        .collect()
}

/// The segments the image in `dir` lists, read without checking its seal: a forged
/// manifest could only keep files longer, never have one removed.
fn listed(dir: &Path) -> Vec<PathBuf> {
    let Ok(file) = fs::open_regular(&dir.join(FILE_NAME)) else {
        return Vec::new();
    };
    let mut text = String::new();
    let limit = crate::image::manifest::MAX_BYTES;
    if std::io::Read::read_to_string(&mut std::io::Read::take(file, limit), &mut text).is_err() {
        return Vec::new();
    }
    text.lines()
        .filter_map(|line| line.strip_prefix("segment "))
        .filter_map(|value| value.splitn(3, ' ').nth(2))
        .map(PathBuf::from)
        .collect()
}

/// The files some process maps, as (device, inode), from every `/proc/PID/maps` this
/// process can read (all of them as root; as another user, that user's processes — the
/// only ones that can map its store).
fn mapped_files() -> std::collections::HashSet<(u64, u64)> {
    let mut found = std::collections::HashSet::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(maps) = std::fs::read_to_string(entry.path().join("maps")) else {
            continue;
        };
        found.extend(maps.lines().filter_map(mapped_file));
    }
    found
}

/// A `/proc/PID/maps` line's file, as (device, inode), if it maps one.
fn mapped_file(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_ascii_whitespace().skip(3);
    let (major, minor) = fields.next()?.split_once(':')?;
    let inode: u64 = fields.next()?.parse().ok()?;
    if inode == 0 {
        return None;
    }
    let (major, minor) = (
        u32::from_str_radix(major, 16).ok()?,
        u32::from_str_radix(minor, 16).ok()?,
    );
    Some((libc::makedev(major, minor), inode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> (PathBuf, PathBuf) {
        let base =
            std::env::temp_dir().join(format!("crac-segments-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let image = base.join("svc");
        let store = heap::store_for(&image);
        std::fs::create_dir_all(&image).unwrap();
        std::fs::create_dir_all(&store).unwrap();
        (base, image)
    }

    fn manifest_listing(dir: &Path, segments: &[&Path]) {
        let lines: String = segments
            .iter()
            .map(|p| format!("segment 4096 {} {}\n", "ab".repeat(32), p.display()))
            .collect();
        std::fs::write(dir.join(FILE_NAME), format!("format crac-image 3\n{lines}")).unwrap();
    }

    #[test]
    fn a_maps_line_names_its_file() {
        let line = "7f00-7f10 rw-p 00000000 fd:01 1234 /var/lib/crac/svc.heap/seg-1.heap";
        assert_eq!(mapped_file(line), Some((libc::makedev(0xfd, 1), 1234)));
        assert_eq!(mapped_file("7f00-7f10 rw-p 00000000 00:00 0 "), None);
        assert_eq!(mapped_file("garbage"), None);
    }

    #[test]
    fn unlisted_unmapped_segments_are_removed_and_only_those() {
        let (base, image) = store("gc");
        let store = heap::store_for(&image);
        let [listed_here, used_elsewhere, mapped, garbage] =
            ["a", "b", "c", "d"].map(|n| store.join(format!("seg-{n}.heap")));
        for path in [&listed_here, &used_elsewhere, &mapped, &garbage] {
            std::fs::write(path, b"x").unwrap();
        }
        std::fs::write(store.join("notes.txt"), b"not a segment").unwrap();
        manifest_listing(&image, &[&listed_here]);
        // another image, restored from this one and checkpointed elsewhere, uses `b`
        let other = base.join("other");
        std::fs::create_dir_all(&other).unwrap();
        manifest_listing(&other, &[&used_elsewhere]);
        let segments = [Segment {
            path: used_elsewhere.clone(),
            len: 1,
            digest: String::new(),
        }];
        register_user(&other, &segments).unwrap();
        // this test process maps `c`
        let file = std::fs::File::open(&mapped).unwrap();
        // SAFETY: a fresh read-only private mapping of one page of a file we own.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                1,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        assert_ne!(at, libc::MAP_FAILED);

        // named through a link: the listed (resolved) paths are still recognized
        let link = base.with_extension("link");
        std::os::unix::fs::symlink(&base, &link).unwrap();
        collect_garbage(&link.join("svc"));
        std::fs::remove_file(&link).unwrap();
        assert!(listed_here.exists() && used_elsewhere.exists() && mapped.exists());
        assert!(!garbage.exists());
        assert!(store.join("notes.txt").exists());

        // SAFETY: the mapping made above, unused since.
        unsafe { libc::munmap(at, 1) };
        collect_garbage(&image);
        assert!(!mapped.exists(), "no longer mapped");

        // a store planted as a link to another directory: nothing there is removed
        let elsewhere = base.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("victim.heap"), b"x").unwrap();
        let planted = base.join("planted");
        std::os::unix::fs::symlink(&elsewhere, heap::store_for(&planted)).unwrap();
        collect_garbage(&planted);
        assert!(elsewhere.join("victim.heap").exists());
        std::fs::remove_dir_all(base).unwrap();
    }
}
