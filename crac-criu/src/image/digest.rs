//! Content integrity: a BLAKE3 digest of every image file, recorded in the manifest, and
//! one of the manifest itself, so that a flipped byte anywhere is refused by name instead
//! of restoring a process whose memory is silently wrong.
//!
//! BLAKE3 rather than SHA-256: it hashes at several GB/s on one core (about 36 ms for the
//! 268 MB benchmark image, against 135 ms for SHA-256), and being cryptographic, the
//! manifest's seal (`seal.rs`, keyed with the host's key) covering these digests
//! authenticates the whole image.
//!
//! The page data (`pages-*.img`, nearly all of an image) is what a restore spends its time
//! reading; a restore checks it beside CRIU instead of before it (see `launcher/page_check.rs`).

use std::io::Read as _;
use std::path::Path;

use crate::sys::fs::open_regular;

/// The digest of `bytes`, as the manifest writes it (lowercase hex).
#[cfg(test)]
pub(crate) fn of_bytes(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// The digest of a regular file's contents (see [`open_regular`]).
pub(crate) fn of_file(path: &Path) -> std::io::Result<String> {
    of_read(open_regular(path)?)
}

/// The digest of what `file` holds from where it is.
pub(crate) fn of_read(mut file: std::fs::File) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    // Large reads let BLAKE3 hash many chunks at once with SIMD; no larger than the file,
    // as an image may list thousands of small files (zeroing 1 MiB for each cost more
    // than hashing them).
    let len = file.metadata().map_or(0, |m| m.len());
    let mut buffer = vec![0; usize::try_from(len).map_or(1 << 20, |n| n.clamp(4096, 1 << 20))];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buffer[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Whether an image file holds memory pages: the bulk of an image, read by CRIU while it
/// restores, so its check can run alongside.
pub(crate) fn is_page_data(name: &str) -> bool {
    name.starts_with("pages-") && name.ends_with(".img")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_digest_is_the_digest_of_its_bytes() {
        let dir = std::env::temp_dir().join(format!("crac-image-digest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(of_file(&path).unwrap(), of_bytes(&bytes));
        assert_ne!(of_bytes(&bytes), of_bytes(&bytes[1..]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn page_data_is_told_by_name() {
        assert!(is_page_data("pages-1.img"));
        assert!(!is_page_data("pagemap-1301.img"));
        assert!(!is_page_data("core-1.img"));
    }
}
