//! The image directory: written to a temporary sibling and published by an atomic
//! rename only once complete, so a failed or crashed dump never leaves something that
//! looks restorable and never destroys the previous good image. Mode 0700: an image
//! holds the process's memory.

use std::ffi::CString;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::Error;
use crate::manifest::{ExeStat, FILE_NAME, Manifest};

/// Where a dump in progress writes: `.<name>.tmp-<pid>-<random>` beside the final
/// directory (copies restored from one image all have the same PID).
pub fn staging_dir(final_dir: &Path, pid: i32) -> PathBuf {
    let unique = crac_core::instance_id() as u32;
    sibling(final_dir, &format!(".tmp-{pid}-{unique:08x}"))
}

/// Where CRIU's log of a failed dump is kept: `<name>.dump-failed.log` beside it.
pub fn failed_log(final_dir: &Path) -> PathBuf {
    sibling(final_dir, ".dump-failed.log")
}

fn sibling(final_dir: &Path, suffix: &str) -> PathBuf {
    let name = final_dir
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let dot = if suffix.starts_with(".tmp") { "." } else { "" };
    final_dir.with_file_name(format!("{dot}{name}{suffix}"))
}

/// Refuses an image directory that holds something else: publishing swaps it away and
/// deletes it, so it must be absent, empty, or a previous image.
pub fn check_target(final_dir: &Path) -> Result<(), Error> {
    let refuse = |problem: &str| {
        Err(Error::Config(format!(
            "the image directory {} (CRAC_CHECKPOINT_TO, crac run --image) {problem}; a \
             checkpoint replaces that directory, so point it at a directory of its own",
            final_dir.display()
        )))
    };
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
pub fn published_since(dir: &Path, since: std::time::SystemTime) -> bool {
    std::fs::metadata(dir.join(FILE_NAME))
        .and_then(|m| m.modified())
        .is_ok_and(|modified| modified >= since)
}

/// Creates an empty private staging directory, removing leftovers of a crashed dump.
pub fn create_staging(final_dir: &Path, pid: i32) -> Result<PathBuf, Error> {
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

/// Completes the manifest with what only the finished dump knows, writes it last, and
/// swaps the staging directory into place. The previous image, if any, is left at the
/// staging path for the caller to remove once the new one is safely in place.
pub fn publish(staging: &Path, final_dir: &Path, mut manifest: Manifest) -> std::io::Result<()> {
    check_target(final_dir).map_err(std::io::Error::other)?;
    manifest.files = image_files(staging)?;
    let mut file = std::fs::File::create(staging.join(FILE_NAME))?;
    file.write_all(manifest.render().as_bytes())?;
    file.sync_all()?;
    for (name, _) in &manifest.files {
        std::fs::File::open(staging.join(name))?.sync_all()?;
    }
    std::fs::File::open(staging)?.sync_all()?;
    if final_dir.exists() {
        exchange(staging, final_dir)?;
    } else {
        std::fs::rename(staging, final_dir)?;
    }
    if let Some(parent) = final_dir.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn image_files(dir: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // CRIU is still writing its log: it is kept beside the image files, not listed
        if name != FILE_NAME && name != crate::helper::LOG && entry.file_type()?.is_file() {
            files.push((name, entry.metadata()?.len()));
        }
    }
    files.sort();
    Ok(files)
}

fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let cstr = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (a, b) = (cstr(a)?, cstr(b)?);
    // SAFETY: two valid NUL-terminated paths.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// SHA-256 of a file, hex.
pub fn sha256(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// `uname -r`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_default()
}

/// The CPU feature flags of this host.
pub fn cpu_flags() -> Vec<String> {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, flags)| flags.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// Checks that `dir` holds a complete image that can be restored on this host by this
/// executable; nothing is touched. Returns its manifest.
pub fn validate(dir: &Path) -> Result<Manifest, Error> {
    let refuse = |problem: String| Error::Image {
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
    for (name, size) in &manifest.files {
        match std::fs::metadata(dir.join(name)) {
            Ok(m) if m.len() == *size => {}
            Ok(m) => {
                return Err(refuse(format!(
                    "image file {name} is {} bytes, the manifest says {size}: the image is truncated \
                     or corrupt; take a new checkpoint",
                    m.len()
                )));
            }
            Err(e) => {
                return Err(refuse(format!(
                    "image file {name}: {e}; the image is incomplete"
                )));
            }
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
