//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): not an API.

use std::path::Path;

use crate::image::manifest::{Manifest, plain_name};

/// Parses `bytes` as a manifest, its seal left unchecked (so that the fuzzer reaches the
/// rules of the entries, not only the digest): the image file names it accepted, or why
/// it refused. Panics if it accepted a name that is not a plain one.
pub fn parse_manifest(bytes: &[u8]) -> Result<Vec<String>, String> {
    let path = Path::new("crac-manifest");
    let text = Manifest::text(path, bytes).map_err(|e| e.to_string())?;
    let manifest = Manifest::parse_entries(path, &text).map_err(|e| e.to_string())?;
    let names: Vec<String> = manifest.files.into_iter().map(|f| f.name).collect();
    for name in &names {
        assert!(plain_name(name).is_ok(), "accepted the file name {name:?}");
    }
    Ok(names)
}

/// Reads `bytes` as a packed image, its seal left unchecked, and unpacks every entry into
/// nothing: the bytes unpacked, or why it refused. Panics if it accepted an entry its
/// manifest does not list, or left bytes unread.
pub fn unpack(bytes: &[u8]) -> Result<u64, String> {
    crate::image::pack::check_for_fuzzing(bytes)
}
