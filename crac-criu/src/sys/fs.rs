//! File-system calls std does not have.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Swaps two paths in one atomic step (`renameat2` with `RENAME_EXCHANGE`): at every
/// moment each name refers to a complete directory. A raw call because nix offers
/// `renameat2` on glibc targets only, and this crate builds for musl too.
pub(crate) fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    let cstr = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (a, b) = (cstr(a)?, cstr(b)?);
    // SAFETY: two valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Renames `from` to `to` unless `to` exists (`renameat2` with `RENAME_NOREPLACE`): no
/// check-then-rename race can replace a file that appeared meanwhile.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let cstr = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (from, to) = (cstr(from)?, cstr(to)?);
    // SAFETY: two valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An exclusive `flock` on the directory `path` (opened read-only: no file is made, a
/// read-only volume will do), held until dropped; waits while another process holds it.
pub(crate) fn lock_exclusive(path: &Path) -> io::Result<nix::fcntl::Flock<std::fs::File>> {
    let file = std::fs::File::open(path)?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno.into())
}

/// Makes a rename of `path` durable: syncs the directory that holds it.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) => std::fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// Why [`open_regular`] refused a path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotRegular {
    /// It is something else than a regular file, which reading could block on (a
    /// FIFO), never finish (a device such as `/dev/zero`) or find elsewhere (a link).
    #[error("is {0}, not a regular file")]
    Kind(&'static str),
    /// It could not be opened or stat'ed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl NotRegular {
    /// The refusal said of `subject` (`image file pages-1.img`).
    pub(crate) fn of(&self, subject: &str) -> String {
        match self {
            NotRegular::Kind(_) => format!("{subject} {self}"),
            NotRegular::Io(e) => format!("{subject}: {e}"),
        }
    }
}

impl From<NotRegular> for io::Error {
    fn from(e: NotRegular) -> io::Error {
        match e {
            NotRegular::Io(e) => e,
            kind => io::Error::other(kind.to_string()),
        }
    }
}

/// What [`open_regular`] says a symbolic link is.
pub(crate) const SYMBOLIC_LINK: &str = "a symbolic link";

/// Opens `path` for reading only if it is a regular file, never waiting: not through a
/// symbolic link (`O_NOFOLLOW`), and with `O_NONBLOCK` so that opening a FIFO returns
/// at once instead of waiting for a writer. What it is is then asked of the open fd
/// (`fstat`), so it cannot be swapped between a check and the open. A FIFO, device,
/// socket, directory or link is refused, named.
pub(crate) fn open_regular(path: &Path) -> Result<std::fs::File, NotRegular> {
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // ELOOP is what O_NOFOLLOW fails with on a link
            Some(libc::ELOOP) => NotRegular::Kind(SYMBOLIC_LINK),
            _ => NotRegular::Io(e),
        })?;
    let kind = file.metadata()?.file_type();
    let what = if kind.is_file() {
        None
    } else if kind.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    };
    if let Some(what) = what {
        return Err(NotRegular::Kind(what));
    }
    // a regular file never blocks a read; the flag is cleared all the same, so that the
    // file behaves as any other for whoever reads it
    let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(file)
}

/// Whether `dir` is on a tmpfs (gone at reboot, never on a disk).
pub(crate) fn is_tmpfs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_opened_and_the_rest_is_named() {
        let dir = std::env::temp_dir().join(format!("crac-open-regular-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("file"), b"bytes").unwrap();
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();
        std::os::unix::fs::symlink(dir.join("file"), dir.join("link")).unwrap();
        let refusal = |name: &str| open_regular(&dir.join(name)).unwrap_err().to_string();
        assert_eq!(
            std::io::read_to_string(open_regular(&dir.join("file")).unwrap()).unwrap(),
            "bytes"
        );
        // at once, without a writer
        assert_eq!(
            refusal("fifo"),
            "is a FIFO (named pipe), not a regular file"
        );
        assert_eq!(refusal("zero"), "is a symbolic link, not a regular file");
        assert_eq!(refusal("link"), "is a symbolic link, not a regular file");
        assert_eq!(refusal("."), "is a directory, not a regular file");
        assert_eq!(
            open_regular(Path::new("/dev/null"))
                .unwrap_err()
                .to_string(),
            "is a character device, not a regular file"
        );
        assert!(refusal("missing").contains("No such file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
