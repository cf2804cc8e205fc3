//! `crac pack` and `crac unpack`: an image as one file (`image/pack/`), to copy to
//! another directory or host, where the same image key must be installed (`crac key`).

use std::path::{Path, PathBuf};

use crate::image::pack;
use crate::launcher::error::LaunchError;

/// What `crac pack` or `crac unpack` moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackReport {
    /// Bytes of the image: its files and heap segments.
    pub image_bytes: u64,
    /// Bytes of the packed file.
    pub packed_bytes: u64,
}

pub use crate::image::pack::LEVEL;

/// `crac pack DIR -o FILE`: packs the image in `dir`, which must be intact and sealed with
/// this host's key, into `out`, compressed at zstd's `level`, and encrypted with age to
/// the public keys in the file `encrypt_to` if given.
pub fn pack(
    dir: &Path,
    out: &Path,
    level: i32,
    encrypt_to: Option<&Path>,
) -> Result<PackReport, LaunchError> {
    let packed = match encrypt_to {
        None => pack::pack(dir, out, level),
        #[cfg(feature = "encrypt")]
        Some(recipients) => pack::pack_encrypted(dir, out, level, recipients),
        #[cfg(not(feature = "encrypt"))]
        Some(_) => Err("this crac was built without the `encrypt` feature".into()),
    };
    let packed = packed.map_err(|problem| LaunchError::Packing {
        action: "pack",
        path: dir.into(),
        problem,
    })?;
    Ok(PackReport {
        image_bytes: packed.image_bytes,
        packed_bytes: packed.packed_bytes,
    })
}

/// `crac unpack FILE -o DIR`: unpacks `file` to `dir` and its heap segments to the paths
/// its manifest records, once all of it is found intact and sealed with this host's key;
/// an encrypted `file` is decrypted with the age identities in `identity` (else
/// `CRAC_PACK_IDENTITY`'s).
pub fn unpack(file: &Path, dir: &Path, identity: Option<&Path>) -> Result<PackReport, LaunchError> {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| PathBuf::from(dir));
    let image_bytes =
        pack::unpack(file, identity, None, &absolute).map_err(|problem| LaunchError::Packing {
            action: "unpack",
            path: file.into(),
            problem,
        })?;
    let packed_bytes = std::fs::metadata(file).map_or(0, |m| m.len());
    Ok(PackReport {
        image_bytes,
        packed_bytes,
    })
}

/// `331 MB of image in 171 MB (0.52×)`.
impl std::fmt::Display for PackReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |bytes: u64| bytes as f64 / 1e6;
        write!(
            f,
            "{:.1} MB of image in {:.1} MB ({:.2}×)",
            mb(self.image_bytes),
            mb(self.packed_bytes),
            self.packed_bytes as f64 / self.image_bytes.max(1) as f64
        )
    }
}

/// Whether `path` is a packed image (`crac pack`'s, encrypted or not) rather than an image
/// directory.
pub fn is_packed(path: &Path) -> bool {
    pack::cache::is_packed(path)
}

/// The image `crac restore PATH` restores, kept from the image cache's eviction while
/// this lives: hold it until the restore ends.
#[derive(Debug)]
pub struct ImageToRestore {
    dir: PathBuf,
    _lease: Option<pack::cache::Lease>,
}

impl ImageToRestore {
    /// The image directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What `crac restore PATH` restores: PATH itself if it is an image directory; if it is a
/// packed image, its copy in the image cache (`image/pack/cache.rs`), unpacked and
/// checked first if the cache has none, and leased: no eviction removes it while the
/// returned value lives.
pub fn image_dir(path: &Path) -> Result<ImageToRestore, LaunchError> {
    if !pack::cache::is_packed(path) {
        return Ok(ImageToRestore {
            dir: path.into(),
            _lease: None,
        });
    }
    let cached = pack::cache::image_of(path).map_err(|problem| LaunchError::Packing {
        action: "restore",
        path: path.into(),
        problem,
    })?;
    if cached.unpacked {
        eprintln!(
            "crac: unpacked {} into the image cache ({})",
            path.display(),
            cached.dir.display()
        );
    }
    Ok(ImageToRestore {
        dir: cached.dir,
        _lease: Some(cached.lease),
    })
}
