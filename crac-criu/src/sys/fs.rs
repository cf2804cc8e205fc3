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
