//! Sealing: at a checkpoint, every segment still shared with its file is given a name in
//! the store and mapped private from that name in place, then fsynced, digested and made
//! read-only (immutable where the file system and privileges allow).
//!
//! Other threads may be writing meanwhile. The replacement of a shared mapping by a
//! private one of the same file is one `mmap(MAP_FIXED)`: a write lands either in the
//! file before it (and the private mapping reads it from the page cache) or in a private
//! copy-on-write page after it (which CRIU dumps as an ordinary page). No write is lost,
//! and the file stops changing at that instant, before it is digested.
//!
//! The mapping is made from the file's *name*: a mapping of the `O_TMPFILE` fd would keep
//! a "(deleted)" path, which CRIU would copy into the image as a ghost file.

use std::fmt::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, PoisonError};

use super::segment::{Slot, State};
use super::state::{self, MAX_FILE_SEGMENTS};
use super::text::Text;
use super::{SealError, Segment, store};

/// One seal at a time (the heap's lock is released while files are digested).
static SEALING: Mutex<()> = Mutex::new(());

/// See [`super::seal`].
pub(super) fn seal() -> Result<Vec<Segment>, SealError> {
    let _one = SEALING.lock().unwrap_or_else(PoisonError::into_inner);
    let result = name_and_remap().and_then(|()| digest_remapped());
    let mut heap = state::lock();
    let segments = &mut heap.talc.source;
    // A failed checkpoint goes on with its heap as it was: file segments may grow again.
    segments.files_paused = result.is_ok();
    let slots = segments.slots;
    let store = segments.store;
    drop(heap);
    result?;
    Ok(slots
        .iter()
        .flatten()
        .filter(|slot| slot.state == State::Sealed)
        .map(|slot| Segment {
            path: path_of(&store, slot),
            len: slot.len as u64,
            digest: blake3::Hash::from_bytes(slot.digest).to_hex().to_string(),
        })
        .collect())
}

/// See [`super::resume`].
pub(super) fn resume() {
    state::lock().talc.source.files_paused = false;
}

fn path_of(store: &store::Path, slot: &Slot) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = std::path::Path::new(std::ffi::OsStr::from_bytes(store.as_bytes()));
    dir.join(std::ffi::OsStr::from_bytes(slot.name.as_bytes()))
}

/// Under the heap's lock (no segment is created meanwhile, and nothing here allocates):
/// names every shared segment and maps it private. Growth stays paused afterwards, so
/// that no new shared segment appears before the dump.
fn name_and_remap() -> Result<(), SealError> {
    let mut heap = state::lock();
    heap.trim_last_segment();
    let segments = &mut heap.talc.source;
    segments.files_paused = true;
    let store = segments.store;
    let mut failed = None;
    for slot in segments.slots.iter_mut().flatten() {
        if let State::Shared(fd) = slot.state
            && let Err((what, errno)) = remap(&store, slot, fd)
        {
            failed = Some((*slot, what, errno));
            break;
        }
    }
    // The error's message is made once the lock is released: it allocates.
    drop(heap);
    match failed {
        Some((slot, what, errno)) => Err(SealError::new(&store, &slot, what, errno)),
        None => Ok(()),
    }
}

/// Names the shared segment `slot` (its read-write fd `fd`) and maps it private.
fn remap(store: &store::Path, slot: &mut Slot, fd: RawFd) -> Result<(), (&'static str, i32)> {
    let dir = store::open(store).ok_or(("opening the store safely", libc::EPERM))?;
    let name = unique_name(slot.addr);
    let mut proc_fd = Text::<32>::new();
    let _ = write!(proc_fd, "/proc/self/fd/{fd}");
    let dir_fd = dir.as_raw_fd();
    // SAFETY: NUL-terminated paths; `dir` is open.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_fd.as_c_str().as_ptr(),
            dir_fd,
            name.as_c_str().as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if linked != 0 {
        return Err(("naming", errno()));
    }
    let unlink = || {
        // SAFETY: the name just linked, in the open store.
        unsafe { libc::unlinkat(dir_fd, name.as_c_str().as_ptr(), 0) };
    };
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated name in the open store.
    let read_only = unsafe { libc::openat(dir_fd, name.as_c_str().as_ptr(), flags) };
    if read_only < 0 {
        let error = errno();
        unlink();
        return Err(("opening by its name", error));
    }
    // SAFETY: `read_only` was just opened and nothing else owns it.
    let read_only = unsafe { OwnedFd::from_raw_fd(read_only) };
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let map = libc::MAP_PRIVATE | libc::MAP_FIXED;
    // SAFETY: the segment's own range, mapped now from the same file with the same
    // contents: every pointer into it stays valid and sees the same bytes.
    let mapped = unsafe {
        libc::mmap(
            slot.addr as *mut _,
            slot.len,
            prot,
            map,
            read_only.as_raw_fd(),
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        let error = errno();
        unlink();
        return Err(("mapping it private", error));
    }
    // SAFETY: our own fd, no longer mapped shared.
    unsafe { libc::fchmod(fd, 0o400) };
    // SAFETY: as above; the slot forgets it below.
    unsafe { libc::close(fd) };
    // The name must outlive a crash: the image will refer to it.
    // SAFETY: `dir` is open.
    unsafe { libc::fsync(dir_fd) };
    slot.name = name;
    slot.state = State::Private(std::os::fd::IntoRawFd::into_raw_fd(read_only));
    Ok(())
}

/// `seg-<pid>-<address>-<random>.heap`: restored copies of one image share the PID and
/// the addresses, the random part keeps their names apart.
fn unique_name(addr: usize) -> Text<64> {
    let mut random = [0u8; 8];
    // SAFETY: an 8-byte writable buffer. A short or failed read leaves zeros in part of
    // it, and linkat then refuses a name that exists.
    unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
    let mut name = Text::new();
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    let _ = write!(
        name,
        "seg-{pid}-{addr:x}-{:016x}.heap",
        u64::from_ne_bytes(random)
    );
    name
}

/// Without the heap's lock (the other threads allocate on meanwhile): fsyncs, digests
/// and protects every segment mapped private but not sealed yet, then records it sealed.
fn digest_remapped() -> Result<(), SealError> {
    let heap = state::lock();
    let store = heap.talc.source.store;
    let pending: [Option<(usize, Slot)>; MAX_FILE_SEGMENTS] = {
        let mut pending = [None; MAX_FILE_SEGMENTS];
        for (i, slot) in heap.talc.source.slots.iter().enumerate() {
            if let Some(slot) = slot.filter(|s| matches!(s.state, State::Private(_))) {
                pending[i] = Some((i, slot));
            }
        }
        pending
    };
    drop(heap);
    for (i, slot) in pending.iter().flatten() {
        let State::Private(fd) = slot.state else {
            continue;
        };
        let (digest, immutable) =
            finish(fd).map_err(|(what, errno)| SealError::new(&store, slot, what, errno))?;
        let mut heap = state::lock();
        if let Some(kept) = heap.talc.source.slots[*i].as_mut() {
            kept.digest = digest;
            kept.immutable = immutable;
            kept.state = State::Sealed;
        }
        drop(heap);
        // SAFETY: the read-only fd the slot held, no longer recorded anywhere.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// fsync, digest (of the file, not the mapping) and `FS_IMMUTABLE_FL` where permitted.
fn finish(fd: RawFd) -> Result<([u8; 32], bool), (&'static str, i32)> {
    // SAFETY: the slot's open fd.
    if unsafe { libc::fsync(fd) } != 0 {
        return Err(("syncing it to disk", errno()));
    }
    // SAFETY: the slot's open fd, duplicated so that the File closes only its copy.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if copy < 0 {
        return Err(("duplicating its fd", errno()));
    }
    // SAFETY: `copy` was just made and nothing else owns it.
    let file = unsafe { std::fs::File::from_raw_fd(copy) };
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = std::os::unix::fs::FileExt::read_at(&file, &mut buffer, offset).map_err(|e| {
            (
                "reading it to digest",
                e.raw_os_error().unwrap_or(libc::EIO),
            )
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        offset += n as u64;
    }
    Ok((*hasher.finalize().as_bytes(), make_immutable(fd)))
}

/// Sets `FS_IMMUTABLE_FL`: false where the file system has no such flag or the process
/// lacks `CAP_LINUX_IMMUTABLE` (the file's mode 0400 is then its only protection).
fn make_immutable(fd: RawFd) -> bool {
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int-sized value into `flags`.
    if unsafe { libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) } != 0 {
        return false;
    }
    flags |= libc::c_long::from(FS_IMMUTABLE_FL);
    // SAFETY: FS_IOC_SETFLAGS reads the value `flags` holds.
    unsafe { libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags) == 0 }
}

/// `linux/fs.h`.
const FS_IMMUTABLE_FL: i32 = 0x10;

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}
