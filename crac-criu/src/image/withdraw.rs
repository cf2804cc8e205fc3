//! Taking a published image back. CRIU's post-dump step publishes the new image while
//! the process is still frozen; when CRIU then fails and the process runs on, it is told
//! the dump failed, so the image directory must be what it was before the dump.

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// A directory's identity (device and inode), which renames keep: where the staging
/// directory is now tells whether it was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirId {
    dev: u64,
    ino: u64,
}

impl DirId {
    /// The identity of the directory at `path` (the name itself, not a symlink's target).
    pub(crate) fn of(path: &Path) -> io::Result<DirId> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(DirId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// Whether `final_dir` is the staging directory `staging`: the dump published it.
pub(crate) fn is_published(final_dir: &Path, staging: DirId) -> bool {
    DirId::of(final_dir).is_ok_and(|id| id == staging)
}

/// Undoes the publishing of `staging` into `final_dir`: the previous image, which
/// publishing left at the `staging` path, is swapped back in one step; with no previous
/// image, the new one is moved back to `staging`. Either way the new image ends at
/// `staging`, for the caller to remove.
pub(crate) fn withdraw(staging: &Path, final_dir: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(staging).is_ok() {
        crate::sys::fs::exchange(staging, final_dir)?;
    } else {
        std::fs::rename(final_dir, staging)?;
    }
    crate::sys::fs::sync_parent(final_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(dir: &Path, content: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("crac-manifest"), content).unwrap();
    }

    fn manifest(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("crac-manifest")).unwrap()
    }

    #[test]
    fn the_previous_image_is_swapped_back_or_the_new_one_removed() {
        let dir = std::env::temp_dir().join(format!("crac-withdraw-{}", std::process::id()));
        let (staging, final_dir) = (dir.join(".image.tmp-1"), dir.join("image"));
        image(&staging, "new");
        image(&final_dir, "previous");
        let id = DirId::of(&staging).unwrap();
        assert!(!is_published(&final_dir, id));
        crate::sys::fs::exchange(&staging, &final_dir).unwrap();
        assert!(is_published(&final_dir, id));
        withdraw(&staging, &final_dir).unwrap();
        assert_eq!(manifest(&final_dir), "previous");
        assert_eq!(manifest(&staging), "new");

        std::fs::remove_dir_all(&final_dir).unwrap();
        std::fs::rename(&staging, &final_dir).unwrap();
        withdraw(&staging, &final_dir).unwrap();
        assert!(!final_dir.exists(), "there was no previous image");
        assert_eq!(manifest(&staging), "new");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
