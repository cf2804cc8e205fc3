//! The image directory: written to a temporary sibling and published by an atomic
//! rename only once complete, so a failed or crashed dump never leaves something that
//! looks restorable and never destroys the previous good image. Mode 0700: an image
//! holds the process's memory.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::image::digest;
use crate::image::host::{cpu_flags, sha256};
use crate::image::manifest::{ExeStat, FILE_NAME, ImageFile, LOG, Manifest};
use crate::image::refusal::ImageRefusal;
use crate::image::segments;
use crate::sys::fs;

/// A path beside the image directory: `<name><suffix>`, or `.<name><suffix>` if hidden.
pub(crate) fn sibling(dir: &Path, suffix: &str, hidden: bool) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let dot = if hidden { "." } else { "" };
    dir.with_file_name(format!("{dot}{name}{suffix}"))
}

/// Refuses an image directory that publishing cannot replace, or must not: publishing
/// renames a new directory over it and deletes the old one, so it must be absent, empty,
/// or a previous image — and a real directory, not a symbolic link (the rename would
/// replace the link, not what it points to) nor a mount point (which no rename can
/// replace).
pub(crate) fn check_target(final_dir: &Path) -> Result<(), Error> {
    let refuse = |problem: &str| {
        Err(Error::ImageTarget {
            dir: final_dir.to_path_buf(),
            problem: problem.to_string(),
        })
    };
    if let Ok(link) = std::fs::read_link(final_dir) {
        let target = final_dir.parent().unwrap_or(Path::new("/")).join(&link);
        let state = if target.exists() {
            ""
        } else {
            ", which does not exist"
        };
        return refuse(&format!(
            "is a symbolic link to {}{state}; a checkpoint replaces the image directory by a \
             rename, which would replace the link itself: point it at the real directory",
            link.display()
        ));
    }
    // mountinfo has paths without symlinks
    let real = final_dir
        .parent()
        .and_then(|p| Some(p.canonicalize().ok()?.join(final_dir.file_name()?)));
    if real.is_some_and(|real| crate::sys::procfs::is_mount_point(&real)) {
        let parent = final_dir.parent().unwrap_or(Path::new("/"));
        return refuse(&format!(
            "is a mount point; a checkpoint replaces the image directory by a rename, which \
             cannot replace a mount point: mount the volume one level up (at {}) and keep \
             the image in a directory inside it",
            parent.display()
        ));
    }
    match std::fs::read_dir(final_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => refuse("is not a directory"),
        Err(e) => refuse(&e.to_string()),
        Ok(mut entries) => {
            if entries.next().is_none() || final_dir.join(FILE_NAME).is_file() {
                Ok(())
            } else {
                refuse("holds files but no crac image")
            }
        }
    }
}

/// Whether `dir` holds an image published at or after `since` (its manifest is written
/// last, so its time is the image's).
pub(crate) fn published_since(dir: &Path, since: std::time::SystemTime) -> bool {
    std::fs::metadata(dir.join(FILE_NAME))
        .and_then(|m| m.modified())
        .is_ok_and(|modified| modified >= since)
}

/// How much of an image's contents [`validate`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contents {
    /// Every file, page data included.
    All,
    /// Every file but the page data, and the heap segments' sizes but not their digests:
    /// the caller checks those with [`verify_pages`] while CRIU reads them.
    AllButPages,
}

/// Files CRIU adds to a published image (its statistics) and the dump's log: expected,
/// never restored from, so not listed in the manifest.
const UNLISTED: [&str; 3] = [LOG, "stats-dump", "stats-restore"];

/// Checks that `dir` holds a complete, undamaged image that can be restored on this host
/// by this executable; nothing is touched. Returns its manifest.
pub(crate) fn validate(dir: &Path, contents: Contents) -> Result<Manifest, ImageRefusal> {
    let refuse = |problem: String| ImageRefusal::Unrestorable {
        dir: dir.into(),
        problem,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(refuse("not a directory".into()));
    }
    if !dir.is_dir() {
        return Err(refuse(
            "no such directory; take a checkpoint first (CRAC_CHECKPOINT_TO)".into(),
        ));
    }
    let manifest = Manifest::read(dir)?;
    let damaged = |problem: String| ImageRefusal::Damaged {
        dir: dir.into(),
        problem,
    };
    check_no_stray_files(dir, &manifest).map_err(damaged)?;
    for file in &manifest.files {
        if contents == Contents::All || !digest::is_page_data(&file.name) {
            check_file(dir, file).map_err(damaged)?;
        } else {
            check_size(dir, file).map_err(damaged)?;
        }
    }
    for segment in &manifest.segments {
        if contents == Contents::All {
            segments::check(segment).map_err(damaged)?;
        } else {
            segments::check_size(segment).map_err(damaged)?;
        }
    }
    check_executable(&manifest).map_err(refuse)?;
    let here = cpu_flags();
    let missing: Vec<&str> = manifest
        .cpu_flags
        .iter()
        .filter(|f| !here.contains(f))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() && !here.is_empty() {
        return Err(refuse(format!(
            "this CPU lacks features the checkpointed process may use: {}; restore on a host with \
             the same CPU features",
            missing.join(" ")
        )));
    }
    Ok(manifest)
}

/// Checks the page data and the heap segments' digests, which [`Contents::AllButPages`]
/// left out.
pub(crate) fn verify_pages(dir: &Path, manifest: &Manifest) -> Result<(), ImageRefusal> {
    manifest
        .files
        .iter()
        .filter(|f| digest::is_page_data(&f.name))
        .try_for_each(|f| check_file(dir, f))
        .and_then(|()| manifest.segments.iter().try_for_each(segments::check))
        .map_err(|problem| ImageRefusal::Damaged {
            dir: dir.into(),
            problem,
        })
}

/// A file nobody listed could be an edit (CRIU reads whatever its image directory holds).
fn check_no_stray_files(dir: &Path, manifest: &Manifest) -> Result<(), String> {
    let listed: std::collections::HashSet<&str> =
        manifest.files.iter().map(|f| f.name.as_str()).collect();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("listing it: {e}"))?;
    for entry in entries {
        let name = entry
            .map_err(|e| format!("listing it: {e}"))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        let expected = name == FILE_NAME
            || UNLISTED.contains(&name.as_str())
            || listed.contains(name.as_str());
        if !expected {
            return Err(format!(
                "it holds {name}, which its manifest does not list (remove {name} if it is \
                 yours)"
            ));
        }
    }
    Ok(())
}

/// Opens an image file if it is a regular file of the size the manifest records:
/// anything else (a FIFO, a device, a link) is refused by name before a byte is read,
/// so that a hostile image can neither block the restore nor make it read elsewhere.
fn open_listed(dir: &Path, file: &ImageFile) -> Result<std::fs::File, String> {
    let name = &file.name;
    let subject = format!("image file {name}");
    let opened = fs::open_regular(&dir.join(name)).map_err(|e| e.of(&subject))?;
    let len = opened
        .metadata()
        .map_err(|e| format!("{subject}: {e}"))?
        .len();
    if len != file.size {
        return Err(format!(
            "{subject} is {len} bytes, the manifest says {}",
            file.size
        ));
    }
    Ok(opened)
}

fn check_size(dir: &Path, file: &ImageFile) -> Result<(), String> {
    open_listed(dir, file).map(drop)
}

fn check_file(dir: &Path, file: &ImageFile) -> Result<(), String> {
    let name = &file.name;
    let opened = open_listed(dir, file)?;
    let found = digest::of_read(opened).map_err(|e| format!("reading {name}: {e}"))?;
    if found != file.blake3 {
        return Err(format!(
            "image file {name} does not match its digest (blake3 {}…, the manifest says {}…)",
            &found[..12],
            file.blake3.get(..12).unwrap_or(&file.blake3)
        ));
    }
    Ok(())
}

fn check_executable(m: &Manifest) -> Result<(), String> {
    let exe = &m.executable;
    let stat = ExeStat::of(exe).map_err(|e| {
        format!(
            "the checkpointed executable {} is not available: {e}",
            exe.display()
        )
    })?;
    if stat == m.executable_stat {
        return Ok(());
    }
    let hash = sha256(exe).map_err(|e| format!("reading {}: {e}", exe.display()))?;
    if hash == m.executable_sha256 {
        return Ok(());
    }
    Err(format!(
        "{} is not the executable that was checkpointed (sha256 {}…, image expects {}…): restore \
         needs the exact binary; rebuild the image with the new binary",
        exe.display(),
        &hash[..12],
        m.executable_sha256
            .get(..12)
            .unwrap_or(&m.executable_sha256)
    ))
}
