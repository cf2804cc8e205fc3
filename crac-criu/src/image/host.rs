//! What an image records of the host and the executable, to refuse a restore that
//! cannot work.

use std::path::Path;

use sha2::{Digest, Sha256};

/// SHA-256 of a file, hex. It must be a regular file (the path may go through links: a
/// manifest's executable names a file outside the image, which a deployment may link):
/// a FIFO or a device named in a hostile manifest would block or never end.
pub(crate) fn sha256(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut file = crate::sys::fs::open_regular(&path.canonicalize()?)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// `uname -r`.
pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_default()
}

/// The CPU feature flags of this host.
pub(crate) fn cpu_flags() -> Vec<String> {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, flags)| flags.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}
