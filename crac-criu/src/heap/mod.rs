//! STUB (replaced by the `heap` branch at merge): the interface the image code uses.

use std::path::{Path, PathBuf};

/// One sealed segment: a file the heap maps privately from now on, never written again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
    pub(crate) digest: String,
}

/// Why sealing failed.
#[derive(Debug, thiserror::Error)]
#[error("sealing heap segment {path}: {source}")]
pub(crate) struct SealError {
    path: PathBuf,
    source: std::io::Error,
}

/// The store of the images checkpointed to `image_dir`.
pub(crate) fn store_for(image_dir: &Path) -> PathBuf {
    let mut name = image_dir.as_os_str().to_owned();
    name.push(".heap");
    PathBuf::from(name)
}

#[allow(dead_code)]
/// This process's store, if its heap is file-backed.
pub(crate) fn store() -> Option<PathBuf> {
    None
}

/// Seals every segment.
pub(crate) fn seal() -> Result<Vec<Segment>, SealError> {
    Ok(Vec::new())
}
