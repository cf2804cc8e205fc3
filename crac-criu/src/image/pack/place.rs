//! Placing a checked, unpacked image: its heap segments at the absolute paths its manifest
//! records (CRIU maps them there at restore, so no other path will do), then its
//! directory at the target, each by a rename that never replaces a file. A segment path
//! that already holds the very same file (same size and digest: another copy of this
//! image, or the host that took it) is left as it is; one that holds anything else is
//! refused before anything is placed. Segments placed are read-only (0400) and, where
//! the file system and the process's capabilities allow, immutable (`FS_IMMUTABLE_FL`),
//! as on the host that sealed them: mapped by every copy restored from them, they must
//! never change.

use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::heap::{self, Segment};
use crate::image::pack::chunks;
use crate::image::pack::read::Staged;
use crate::image::segments;
use crate::sys::fs::{rename_noreplace, sync_parent};

/// Places `staged` at `dir` and its segments at their recorded paths; on failure, removes
/// what it placed.
pub(crate) fn place(staged: &Staged, dir: &Path) -> Result<(), String> {
    check_target(dir)?;
    let (mut to_place, mut present) = (Vec::new(), Vec::new());
    for (segment, unpacked) in staged.manifest.segments.iter().zip(&staged.segments) {
        check_segment_path(&segment.path)?;
        match (std::fs::symlink_metadata(&segment.path), unpacked) {
            (Err(e), Some(unpacked)) if e.kind() == std::io::ErrorKind::NotFound => {
                to_place.push((unpacked.as_path(), &segment.path));
            }
            (Err(e), None) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "heap segment {} was removed while the image was unpacked; run the \
                     command again",
                    segment.path.display()
                ));
            }
            _ => present.push(segment),
        }
    }
    check_present(&present)?;
    let mut placed: Vec<&Path> = Vec::new();
    let result = (|| {
        for (unpacked, path) in &to_place {
            place_segment(unpacked, path)?;
            placed.push(path);
        }
        if dir.is_dir() {
            // an empty directory (`check_target`), which a rename will not replace
            std::fs::remove_dir(dir).map_err(|e| format!("replacing {}: {e}", dir.display()))?;
        }
        rename_noreplace(&staged.image, dir)
            .and_then(|()| sync_parent(dir))
            .map_err(|e| format!("renaming the unpacked image to {}: {e}", dir.display()))
    })();
    if let Err(e) = result {
        for path in placed {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    for path in placed {
        // best effort: the mode, 0400, is then their only protection, as when sealed
        if let Ok(file) = crate::sys::fs::open_regular(path) {
            heap::make_immutable(&file);
        }
    }
    // segments kept in another image's store must outlive that image's replacement
    let _ = segments::register_user(dir, &staged.manifest.segments);
    Ok(())
}

/// Checks the segments already at their paths, whole (size and digest), on every core:
/// each must be the very file the manifest records.
fn check_present(present: &[&Segment]) -> Result<(), String> {
    let next = AtomicUsize::new(0);
    let mut failures: Vec<(usize, String)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..chunks::workers().min(present.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut failed = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(segment) = present.get(i) else {
                            return failed;
                        };
                        if let Err(problem) = segments::check(segment) {
                            failed.push((i, another_file(segment, &problem)));
                        }
                    }
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| {
                t.join().unwrap_or_else(|_| {
                    vec![(
                        usize::MAX,
                        "checking a heap segment failed (panicked)".into(),
                    )]
                })
            })
            .collect()
    });
    failures.sort();
    failures.into_iter().next().map_or(Ok(()), |(_, e)| Err(e))
}

fn another_file(segment: &Segment, problem: &str) -> String {
    format!(
        "the image's heap segment must be at {0}, which holds another file ({problem}); \
         unpacking replaces no file: remove {0} if no image needs it",
        segment.path.display()
    )
}

/// Refuses a segment path that is not a heap store's (`IMAGE.heap/NAME.heap`, as the heap
/// names them): even a manifest sealed with the key places files nowhere else, such as a
/// directory some daemon reads its configuration from.
fn check_segment_path(path: &Path) -> Result<(), String> {
    let heap =
        |p: Option<&std::ffi::OsStr>| p.is_some_and(|n| n.to_string_lossy().ends_with(".heap"));
    if heap(path.file_name()) && heap(path.parent().and_then(Path::file_name)) {
        return Ok(());
    }
    Err(format!(
        "its manifest places a heap segment at {}, which is not in a heap store \
         (IMAGE.heap/NAME.heap): unpacking places files nowhere else",
        path.display()
    ))
}

/// Refuses a target that is not absent or an empty directory.
fn check_target(dir: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
        Ok(meta)
            if meta.is_dir() && std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none()) =>
        {
            Ok(())
        }
        Ok(_) => Err(format!(
            "{} exists: unpacking makes the image directory and replaces nothing; remove it or \
             unpack elsewhere",
            dir.display()
        )),
    }
}

/// Moves one unpacked segment to `path`, read-only as sealed segments are: a rename, or
/// a copy to a private file beside `path` and a rename when it is on another file system.
fn place_segment(unpacked: &Path, path: &Path) -> Result<(), String> {
    let name = path.display();
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(|e| format!("making {}: {e}", parent.display()))?;
    let readonly = std::fs::Permissions::from_mode(0o400);
    std::fs::set_permissions(unpacked, readonly.clone())
        .map_err(|e| format!("placing heap segment {name}: {e}"))?;
    match rename_noreplace(unpacked, path) {
        Ok(()) => return sync_parent(path).map_err(|e| format!("placing {name}: {e}")),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
        Err(e) => return Err(format!("placing heap segment {name}: {e}")),
    }
    let temp: PathBuf =
        crate::image::sibling(path, &format!(".unpacking-{}", std::process::id()), true);
    let copied = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)?;
        std::io::copy(&mut std::fs::File::open(unpacked)?, &mut out)?;
        out.sync_all()?;
        rename_noreplace(&temp, path)?;
        sync_parent(path)
    })();
    copied.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        format!("placing heap segment {name}: {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_in_place_are_checked_whole_and_the_first_other_file_named() {
        let dir = std::env::temp_dir().join(format!("pack-place-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let segment = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            Segment {
                path,
                len: bytes.len() as u64,
                digest: blake3::hash(bytes).to_hex().to_string(),
            }
        };
        let good: Vec<Segment> = (0..5)
            .map(|i| segment(&format!("{i}.heap"), &vec![i; 1000 + usize::from(i)]))
            .collect();
        assert_eq!(check_present(&good.iter().collect::<Vec<_>>()), Ok(()));
        assert_eq!(check_present(&[]), Ok(()));
        // the same sizes, other bytes
        for i in [3, 1] {
            std::fs::write(&good[i].path, vec![9; 1000 + i]).unwrap();
        }
        let err = check_present(&good.iter().collect::<Vec<_>>()).unwrap_err();
        assert!(
            err.contains(&format!("must be at {}", good[1].path.display())),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn segments_are_placed_only_in_heap_stores() {
        assert!(check_segment_path(Path::new("/var/lib/crac/svc.heap/seg-1.heap")).is_ok());
        for path in [
            "/etc/cron.d/job",
            "/etc/cron.d/x.heap",
            "/srv/svc.heap/notes",
            "/x.heap",
        ] {
            let err = check_segment_path(Path::new(path)).unwrap_err();
            assert!(err.contains(path), "{err}");
        }
    }
}
