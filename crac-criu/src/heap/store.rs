//! The store: the directory a file-backed heap keeps its segments in, `<image_dir>.heap`,
//! found and checked without allocating (the first allocation decides the heap's mode).
//!
//! The store must not be plantable by someone else on the host: a symlink, something
//! other than a directory, a directory another user owns or that others can write is
//! refused, and the heap then stays in system mode. It is opened afresh (and checked
//! again) each time a segment is created or sealed, so that no fd of the heap's stays
//! open for the checkpoint's open-fd check to find.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::text::Text;
use crate::env;

/// Room for a path; longer store paths leave the heap in system mode.
pub(super) const PATH_MAX: usize = libc::PATH_MAX as usize;
pub(super) type Path = Text<PATH_MAX>;

/// What the store's name adds to the image directory's.
pub(super) const SUFFIX: &str = ".heap";

const CHECKPOINT_TO: [u8; env::CHECKPOINT_TO.len() + 1] =
    super::text::nul_terminated(env::CHECKPOINT_TO);
const DUMP_HELPER: [u8; env::DUMP_HELPER.len() + 1] = super::text::nul_terminated(env::DUMP_HELPER);
const SWITCH: [u8; env::MAPPED_HEAP.len() + 1] = super::text::nul_terminated(env::MAPPED_HEAP);
const SCRIPT_ACTION: [u8; crate::role::SCRIPT_ACTION_ENV.len() + 1] =
    super::text::nul_terminated(crate::role::SCRIPT_ACTION_ENV);

/// The store this process's heap should live in: `CRAC_CHECKPOINT_TO` with `.heap`
/// appended, made absolute against the working directory. `None` when the process is
/// not started for a checkpoint, is told not to (`CRAC_MAPPED_HEAP=off`), or plays one of
/// crac's helper roles (the dump helper and CRIU's action script are copies of the binary
/// that must never create heap files).
pub(super) fn wanted() -> Option<Path> {
    let helper = getenv(&DUMP_HELPER).is_some() || getenv(&SCRIPT_ACTION).is_some();
    let off = getenv(&SWITCH).is_some_and(|v| v.to_bytes() == b"off");
    let target = getenv(&CHECKPOINT_TO)?.to_bytes();
    if helper || off || target.is_empty() {
        return None;
    }
    let mut path = Path::new();
    if target[0] != b'/' {
        let mut cwd = [0u8; PATH_MAX];
        // SAFETY: `cwd` is writable for its length; getcwd NUL-terminates what it writes.
        let got = unsafe { libc::getcwd(cwd.as_mut_ptr().cast(), cwd.len()) };
        if got.is_null() {
            return None;
        }
        let cwd = CStr::from_bytes_until_nul(&cwd).ok()?.to_bytes();
        if !path.push(cwd) || (cwd != b"/" && !path.push(b"/")) {
            return None;
        }
    }
    if !path.push(target) {
        return None;
    }
    // `/x/svc/` names the image `/x/svc`: its store is `/x/svc.heap`, not `/x/svc/.heap`.
    while path.len() > 1 && path.as_bytes().ends_with(b"/") {
        path.truncate(path.len() - 1);
    }
    (path.as_bytes() != b"/" && path.push(SUFFIX.as_bytes())).then_some(path)
}

fn getenv(name: &[u8]) -> Option<&'static CStr> {
    let name = CStr::from_bytes_with_nul(name).ok()?;
    // SAFETY: a NUL-terminated name. The value stays valid: the process leaves its
    // environment alone before `main` and while a checkpoint runs (docs/uniqueness.md).
    let value = unsafe { libc::getenv(name.as_ptr()) };
    // SAFETY: getenv returns null or a NUL-terminated string.
    (!value.is_null()).then(|| unsafe { CStr::from_ptr(value) })
}

/// Creates the store (mode 0700, and its missing parents 0755, as the image's staging
/// does) if it does not exist, and opens it; `None` if it is not safe to use.
pub(super) fn create(path: &Path) -> Option<OwnedFd> {
    let bytes = path.as_bytes();
    for (i, _) in bytes
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, b)| **b == b'/')
    {
        let parent = Path::from_bytes(&bytes[..i])?;
        // SAFETY: a NUL-terminated path. EEXIST and the like are found by the open below.
        unsafe { libc::mkdir(parent.as_c_str().as_ptr(), 0o755) };
    }
    // SAFETY: a NUL-terminated path.
    unsafe { libc::mkdir(path.as_c_str().as_ptr(), 0o700) };
    open(path).ok()
}

/// Opens the store, refusing a symlink, a non-directory, a directory another user owns
/// or that the group or others can write; the errno of a failure (`EPERM` for a store
/// refused).
pub(super) fn open(path: &Path) -> Result<OwnedFd, i32> {
    let flags = libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_RDONLY | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated path; the fd returned, if any, is ours.
    let fd = unsafe { libc::open(path.as_c_str().as_ptr(), flags) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    let dir = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is open and `stat` writable.
    if unsafe { libc::fstat(dir.as_raw_fd(), &mut stat) } != 0 {
        return Err(errno());
    }
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    let safe = stat.st_mode & libc::S_IFMT == libc::S_IFDIR
        && stat.st_uid == me
        && stat.st_mode & 0o022 == 0;
    if safe { Ok(dir) } else { Err(libc::EPERM) }
}

/// The errno of the last failed call (no allocation: `io::Error` from a raw code is
/// just an integer).
pub(super) fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The path `dir` is open at as the kernel names it (what CRIU records of a file in it);
/// `None` if /proc cannot tell.
pub(super) fn canonical(dir: &OwnedFd) -> Option<Path> {
    let mut link = Text::<32>::new();
    std::fmt::Write::write_fmt(&mut link, format_args!("/proc/self/fd/{}", dir.as_raw_fd()))
        .ok()?;
    let mut buffer = [0u8; PATH_MAX];
    // SAFETY: a NUL-terminated path and a writable buffer of the length given.
    let len = unsafe {
        libc::readlink(
            link.as_c_str().as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|&n| n > 0 && n < PATH_MAX)?;
    (buffer[0] == b'/')
        .then(|| Path::from_bytes(&buffer[..len]))
        .flatten()
}
