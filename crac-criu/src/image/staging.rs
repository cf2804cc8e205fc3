//! Where a dump in progress writes: a private sibling of the image directory, named so
//! that copies restored from one image (which share a PID) never collide.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::image::sibling;

/// The process's description of its image, made into the manifest after the dump.
pub(crate) const DESCRIPTION: &str = "crac-description";

/// Where a dump in progress writes: `.<name>.tmp-<pid>-<random>` beside the final
/// directory (copies restored from one image all have the same PID).
fn staging_dir(final_dir: &Path, pid: i32) -> PathBuf {
    let unique = crac_core::instance_id() as u32;
    sibling(final_dir, &format!(".tmp-{pid}-{unique:08x}"), true)
}

/// Where CRIU's log of a failed dump is kept: `<name>.dump-failed.log` beside it.
pub(crate) fn failed_log(final_dir: &Path) -> PathBuf {
    sibling(final_dir, ".dump-failed.log", false)
}

/// A staging directory untouched this long belongs to a dump that crashed: a dump takes
/// seconds, and copies restored from one image (same PID, other namespaces) may be
/// dumping into their own staging directories beside it right now.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the staging directories of `final_dir` that crashed dumps left behind.
fn remove_abandoned(final_dir: &Path) {
    let prefix = sibling(final_dir, ".tmp-", true);
    let (Some(parent), Some(prefix)) = (final_dir.parent(), prefix.file_name()) else {
        return;
    };
    let prefix = prefix.to_string_lossy().into_owned();
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let abandoned = entry.file_name().to_string_lossy().starts_with(&prefix)
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().is_ok_and(|age| age > ABANDONED_AFTER));
        if abandoned {
            // Best effort: one that cannot be removed now is tried at the next dump.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Creates an empty private staging directory, removing leftovers of crashed dumps.
pub(crate) fn create_staging(final_dir: &Path, pid: i32) -> Result<PathBuf, Error> {
    let parent = final_dir.parent().unwrap_or(Path::new("/"));
    // not group-writable whatever the umask: a restore refuses what others could change
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)
        .map_err(|source| Error::File {
            action: "creating the image's parent directory",
            path: parent.to_path_buf(),
            source,
        })?;
    remove_abandoned(final_dir);
    let staging = staging_dir(final_dir, pid);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|source| Error::File {
            action: "removing a stale staging directory",
            path: staging.clone(),
            source,
        })?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|source| Error::File {
            action: "creating the staging directory",
            path: staging.clone(),
            source,
        })?;
    Ok(staging)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_left_by_a_crashed_dump_is_removed_and_a_recent_one_kept() {
        let dir = std::env::temp_dir().join(format!("crac-staging-{}", std::process::id()));
        let image = dir.join("image");
        std::fs::create_dir_all(&dir).unwrap();
        let old = dir.join(".image.tmp-2-0badf00d");
        let recent = dir.join(".image.tmp-2-00c0ffee");
        let other = dir.join(".other.tmp-2-0badf00d");
        for d in [&old, &recent, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        let hours_ago = std::time::SystemTime::now() - 2 * ABANDONED_AFTER;
        for d in [&old, &other] {
            std::fs::File::open(d)
                .unwrap()
                .set_modified(hours_ago)
                .unwrap();
        }
        let staging = create_staging(&image, 2).unwrap();
        assert!(!old.exists(), "abandoned: removed");
        assert!(recent.exists(), "a dump may be running: kept");
        assert!(other.exists(), "another image's: kept");
        assert!(staging.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
