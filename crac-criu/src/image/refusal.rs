//! Why an image cannot be restored here: what the checks of `directory.rs`,
//! `manifest.rs` and `restorability.rs` refuse with.

use std::path::PathBuf;

/// Why an image cannot be restored here; nothing was touched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageRefusal {
    /// The image cannot be restored here: missing, foreign, for another executable or
    /// CPU, or asking for what was not given.
    #[error("cannot restore {}: {problem}", dir.display())]
    Unrestorable {
        /// The image directory.
        dir: PathBuf,
        /// What is wrong, and what to do.
        problem: String,
    },
    /// The image's contents are not what the dump wrote (a file or the manifest damaged,
    /// edited, added or missing).
    #[error(
        "cannot restore {}: the image was damaged or changed after the dump: {problem}; take a \
         new checkpoint",
        dir.display()
    )]
    Damaged {
        /// The image directory.
        dir: PathBuf,
        /// Which file, and how it differs.
        problem: String,
    },
    /// A PID or TID of the image is taken on this host.
    #[error(
        "PID {id} recorded in the image is in use by `{holder}`: a restore needs the original PID and \
         thread IDs free; stop that process (or restore in a fresh PID namespace)"
    )]
    PidInUse {
        /// The PID or TID.
        id: i32,
        /// The command name of the process holding it.
        holder: String,
    },
}
