//! `#[crac(reopen)]`: a file closed before the checkpoint and opened again after it, by
//! path, with the flags and at the offset it had (OpenJDK CRaC's `reopen` file policy).
//!
//! Before the checkpoint, what the kernel knows of the fd is recorded — its path from
//! `/proc/self/fd`, its offset and flags from `/proc/self/fdinfo` — and the file is
//! swapped for a placeholder: `/dev/null` opened read-only, claimed so that the
//! open-resource check lets it into the image. After the restore, on rollback and
//! after a left-running checkpoint, the path is opened again and swapped back in. The
//! records wait here, keyed by the placeholder's fd number, which nothing else can hold
//! while the placeholder is open.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use crate::claims::{FdClaim, claim_fd};
use crate::error::BoxError;
use crate::event::{Outcome, Restore};

/// A field marked `#[crac(reopen)]`: a [`File`] that crac can take out and put back
/// through `&self`.
///
/// Implemented for `Mutex<File>`, `RwLock<File>`, `Mutex<Option<File>>` and
/// `RwLock<Option<File>>` (`None` is left alone).
///
/// ```
/// use std::fs::File;
/// use std::sync::Mutex;
///
/// #[derive(crac::Checkpointable)]
/// struct Journal {
///     #[crac(reopen)]                              // same path, flags and offset
///     log: Mutex<File>,
///     #[crac(reopen(path_env = "DATA", create))]   // `crac restore IMAGE --env DATA=...`
///     data: Mutex<Option<File>>,
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used with `#[crac(reopen)]`",
    label = "not a file crac can reopen",
    note = "use `Mutex<File>`, `RwLock<File>`, `Mutex<Option<File>>` or `RwLock<Option<File>>` \
            (`std::fs::File`), or implement `crac::field::Reopen`"
)]
pub trait Reopen {
    /// Calls `f` with exclusive access to the file, if there is one.
    fn with_file(
        &self,
        f: &mut dyn FnMut(&mut File) -> Result<(), BoxError>,
    ) -> Result<(), BoxError>;
}

impl Reopen for Mutex<File> {
    fn with_file(
        &self,
        f: &mut dyn FnMut(&mut File) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        f(&mut self.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Reopen for RwLock<File> {
    fn with_file(
        &self,
        f: &mut dyn FnMut(&mut File) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        f(&mut self.write().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Reopen for Mutex<Option<File>> {
    fn with_file(
        &self,
        f: &mut dyn FnMut(&mut File) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        let mut guard = self.lock().unwrap_or_else(PoisonError::into_inner);
        guard.as_mut().map_or(Ok(()), f)
    }
}

impl Reopen for RwLock<Option<File>> {
    fn with_file(
        &self,
        f: &mut dyn FnMut(&mut File) -> Result<(), BoxError>,
    ) -> Result<(), BoxError> {
        let mut guard = self.write().unwrap_or_else(PoisonError::into_inner);
        guard.as_mut().map_or(Ok(()), f)
    }
}

/// The options of `#[crac(reopen(...))]`.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct ReopenOptions {
    /// A restore-time variable naming the path to open instead.
    pub path_env: Option<&'static str>,
    /// Create the file when it is missing.
    pub create: bool,
}

/// What the kernel knew of a file at checkpoint.
struct Record {
    path: PathBuf,
    offset: u64,
    /// `f_flags`: the access mode, `O_APPEND`, `O_NONBLOCK`, `O_SYNC`... (the kernel
    /// keeps no `O_CREAT`, `O_EXCL` or `O_TRUNC`, so opening with them again creates
    /// and truncates nothing).
    flags: i32,
    /// On the placeholder, until the file is back.
    _claim: FdClaim,
}

static DETACHED: Mutex<Vec<(RawFd, Record)>> = Mutex::new(Vec::new());

fn detached() -> MutexGuard<'static, Vec<(RawFd, Record)>> {
    DETACHED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Drops the records whose placeholder is gone (its owner put another file in the field
/// and the fd number may have been reused): their claims must not cover a stranger.
fn forget_stale(detached: &mut Vec<(RawFd, Record)>) {
    detached.retain(|(fd, _)| {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .is_ok_and(|target| target == Path::new("/dev/null"))
    });
}

/// The field, for both steps: the one bound is reported once for a field that is no
/// file (the two identical errors are merged).
#[doc(hidden)]
pub fn as_reopen<F: Reopen>(field: &F) -> &dyn Reopen {
    field
}

/// The `before_checkpoint` step of a `reopen` field of the resource `owner`: records
/// the file, closes it, and leaves the claimed placeholder in its place.
#[doc(hidden)]
pub fn detach_file(field: &dyn Reopen, owner: &str, field_name: &str) -> Result<(), BoxError> {
    field.with_file(&mut |file| {
        let (path, offset, flags) = describe(file)?;
        let placeholder = File::open("/dev/null").map_err(|e| format!("opening /dev/null: {e}"))?;
        let claim = claim_fd(
            &placeholder,
            format!("{owner}.{field_name}: placeholder for {}", path.display()),
        );
        drop(std::mem::replace(file, placeholder));
        let fd = file.as_raw_fd();
        let mut detached = detached();
        // A record already under this number is stale: the new placeholder holds it.
        detached.retain(|(key, _)| *key != fd);
        forget_stale(&mut detached);
        detached.push((
            fd,
            Record {
                path,
                offset,
                flags,
                _claim: claim,
            },
        ));
        Ok(())
    })
}

/// The `after_restore` step: opens the recorded file again in place of the placeholder.
/// A field that was not detached (its checkpoint step failed, or it held `None`), or
/// whose placeholder its owner replaced meanwhile, is left alone. After a failure the placeholder stays, unclaimed: the error says what
/// to do.
#[doc(hidden)]
pub fn reopen_file(
    field: &dyn Reopen,
    options: ReopenOptions,
    event: &Restore,
) -> Result<(), BoxError> {
    field.with_file(&mut |file| {
        let fd = file.as_raw_fd();
        let record = {
            let mut detached = detached();
            let Some(at) = detached.iter().position(|(key, _)| *key == fd) else {
                return Ok(());
            };
            detached.swap_remove(at).1
        };
        // Only a restore passes variables; a rollback reopens where the file was.
        let moved = options
            .path_env
            .filter(|_| event.outcome == Outcome::Restored)
            .and_then(|name| event.env.iter().rev().find(|(key, _)| key == name))
            .map(|(_, path)| PathBuf::from(path));
        *file = open(moved.as_deref().unwrap_or(&record.path), &record, options)?;
        Ok(())
    })
}

/// The file's path, offset and flags, as the kernel has them.
fn describe(file: &File) -> Result<(PathBuf, u64, i32), BoxError> {
    let fd = file.as_raw_fd();
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map_err(|e| format!("reading /proc/self/fd/{fd}: {e}"))?;
    if !target.is_absolute() {
        return Err(format!(
            "fd {fd} is {}, not a file opened by path: it cannot be reopened; release it in a \
             hook instead",
            target.display()
        )
        .into());
    }
    let unlinked = file
        .metadata()
        .map_err(|e| format!("inspecting {}: {e}", target.display()))?
        .nlink()
        == 0;
    if unlinked {
        let target = target.to_string_lossy();
        let path = target.strip_suffix(" (deleted)").unwrap_or(&target);
        return Err(format!("{path} was deleted while open: it cannot be reopened by path").into());
    }
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .map_err(|e| format!("reading /proc/self/fdinfo/{fd}: {e}"))?;
    let field = |name: &str, radix: u32| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|value| u64::from_str_radix(value.trim(), radix).ok())
            .ok_or_else(|| format!("no `{name}` in /proc/self/fdinfo/{fd}: {info:?}"))
    };
    let offset = field("pos", 10)?;
    let flags = i32::try_from(field("flags", 8)?).map_err(|e| format!("fd {fd}'s flags: {e}"))?;
    Ok((target, offset, flags))
}

/// Opens `path` as the recorded file was opened, at its offset; a file it had to create
/// starts at 0.
fn open(path: &Path, record: &Record, options: ReopenOptions) -> Result<File, BoxError> {
    let failed = |what: &str, error: std::io::Error| -> BoxError {
        let hint = if error.kind() == std::io::ErrorKind::NotFound && !options.create {
            "; put it back, or write `reopen(create)` to create a missing file"
        } else {
            ""
        };
        format!(
            "{what} {} (open at checkpoint at offset {}): {error}{hint}",
            path.display(),
            record.offset
        )
        .into()
    };
    // The access mode is the flags' low two bits on every Linux architecture; std
    // masks them out of `custom_flags`, which passes the rest (`O_APPEND` included).
    let access = record.flags & 0b11;
    let reopen = || {
        OpenOptions::new()
            .read(access != 1)
            .write(access != 0)
            .custom_flags(record.flags)
            .open(path)
    };
    let (mut file, offset) = match reopen() {
        Ok(file) => (file, record.offset),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && options.create => {
            // Appending creates the file and truncates nothing if another process just did.
            OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .map_err(|e| failed("creating", e))?;
            (reopen().map_err(|e| failed("reopening", e))?, 0)
        }
        Err(e) => return Err(failed("reopening", e)),
    };
    if offset > 0 {
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| failed("seeking in", e))?;
    }
    Ok(file)
}
