//! Where a dump in progress writes: a private sibling of the image directory, named so
//! that copies restored from one image (which share a PID) never collide.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::image::sibling;

/// The manifest as the process knows it, completed by the helper after the dump.
pub(crate) const DRAFT: &str = "crac-manifest.draft";
/// CRIU's log of the dump, kept in the image directory but not listed as part of it.
pub(crate) const LOG: &str = "dump.log";

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

/// Creates an empty private staging directory, removing leftovers of a crashed dump.
pub(crate) fn create_staging(final_dir: &Path, pid: i32) -> Result<PathBuf, Error> {
    let parent = final_dir.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent)
        .map_err(|e| Error::Io("creating the image's parent directory", e))?;
    let staging = staging_dir(final_dir, pid);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .map_err(|e| Error::Io("removing a stale staging directory", e))?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| Error::Io("creating the staging directory", e))?;
    Ok(staging)
}
