//! Publishing: the manifest is completed, sealed with the host's key and written last,
//! everything is synced, and the staging directory is swapped into place in one rename.
//! This runs in the dump's action script, a process CRIU starts and never checkpoints:
//! the key is read (or made, on first use) here only.

use std::io::Write as _;
use std::path::Path;

use crate::image::check_target;
use crate::image::digest;
use crate::image::key::HostKey;
use crate::image::manifest::{FILE_NAME, ImageFile, LOG, Manifest};
use crate::image::segments;
use crate::image::verified_pages;

/// Completes the manifest with what only the finished dump knows, writes it last, and
/// swaps the staging directory into place. The previous image, if any, is left at the
/// staging path for the caller to remove once the new one is safely in place.
pub(crate) fn publish(
    staging: &Path,
    final_dir: &Path,
    mut manifest: Manifest,
) -> std::io::Result<()> {
    check_target(final_dir).map_err(std::io::Error::other)?;
    let names = image_file_names(staging)?;
    // On a real disk, writing the files back (a quarter of a second per GB here) takes
    // longer than hashing them from the page cache: the two run side by side, and
    // both are done before the manifest is written.
    let (files, synced) = std::thread::scope(|s| {
        let synced = s.spawn(|| {
            names
                .iter()
                .try_for_each(|name| std::fs::File::open(staging.join(name))?.sync_all())
        });
        (digests(staging, &names), synced.join())
    });
    synced.unwrap_or_else(|_| Err(std::io::Error::other("syncing the image panicked")))?;
    manifest.files = files?;
    // before the image is in place, so that no collection in between misses its segments
    segments::register_user(final_dir, &manifest.segments)?;
    let key = HostKey::load_or_create().map_err(std::io::Error::other)?;
    let mut file = std::fs::File::create(staging.join(FILE_NAME))?;
    file.write_all(manifest.render(&key).as_bytes())?;
    file.sync_all()?;
    std::fs::File::open(staging)?.sync_all()?;
    if final_dir.exists() {
        crate::sys::fs::exchange(staging, final_dir)?;
    } else {
        std::fs::rename(staging, final_dir)?;
    }
    crate::sys::fs::sync_parent(final_dir)?;
    verified_pages::record(final_dir, &manifest);
    Ok(())
}

/// The image files CRIU wrote into `dir`, sorted.
fn image_file_names(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // CRIU is still writing its log: it is kept beside the image files, not listed
        if name != FILE_NAME && name != LOG && entry.file_type()?.is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn digests(dir: &Path, names: &[String]) -> std::io::Result<Vec<ImageFile>> {
    names
        .iter()
        .map(|name| {
            let path = dir.join(name);
            Ok(ImageFile {
                size: std::fs::metadata(&path)?.len(),
                blake3: digest::of_file(&path)?,
                name: name.clone(),
            })
        })
        .collect()
}
