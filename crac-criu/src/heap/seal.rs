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
use super::store::errno;
use super::text::Text;
use super::{SealFailure, Segment, store};

/// One seal at a time (the heap's lock is released while files are digested).
static SEALING: Mutex<()> = Mutex::new(());

/// See [`super::seal`].
pub(super) fn seal() -> Result<Vec<Segment>, SealFailure> {
    let _one = SEALING.lock().unwrap_or_else(PoisonError::into_inner);
    // The hashing buffers are allocated before the heap's end is trimmed, so that the
    // seal does not make the heap grow while it is paused.
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, HASHING_THREADS);
    let mut buffers: Vec<Vec<u8>> = (0..threads).map(|_| vec![0; 1 << 20]).collect();
    let result = name_and_remap().and_then(|()| digest_remapped(&mut buffers));
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
fn name_and_remap() -> Result<(), SealFailure> {
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
    // The names must outlive a crash: the image will refer to them.
    if let Ok(dir) = store::open(&store) {
        // SAFETY: `dir` is open.
        unsafe { libc::fsync(dir.as_raw_fd()) };
    }
    // The error's message is made once the lock is released: it allocates.
    drop(heap);
    match failed {
        Some((slot, what, errno)) => Err(SealFailure::new(&store, &slot, what, errno)),
        None => Ok(()),
    }
}

/// Names the shared segment `slot` (its read-write fd `fd`) and maps it private.
fn remap(store: &store::Path, slot: &mut Slot, fd: RawFd) -> Result<(), (&'static str, i32)> {
    let dir = store::open(store).map_err(|errno| ("opening its store", errno))?;
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

/// Without the heap's lock (the other threads allocate on meanwhile): digests, fsyncs
/// and protects every segment mapped private but not sealed yet, then records it sealed.
///
/// The files are written back (fsync) while they are hashed, on up to
/// [`HASHING_THREADS`] threads, a segment each at a time: segments double in size, so the
/// largest is about as large as all the others together and two threads share the work
/// evenly.
fn digest_remapped(buffers: &mut [Vec<u8>]) -> Result<(), SealFailure> {
    let heap = state::lock();
    let store = heap.talc.source.store;
    let mut pending = [None; MAX_FILE_SEGMENTS];
    for (i, slot) in heap.talc.source.slots.iter().enumerate() {
        if let Some(slot) = slot.filter(|s| matches!(s.state, State::Private(_))) {
            pending[i] = Some((i, slot));
        }
    }
    // Collected once the lock is released: a Vec allocates.
    drop(heap);
    let mut pending: Vec<(usize, Slot, RawFd)> = pending
        .into_iter()
        .flatten()
        .filter_map(|(i, slot)| match slot.state {
            State::Private(fd) => Some((i, slot, fd)),
            _ => None,
        })
        .collect();
    pending.sort_by_key(|(_, slot, _)| std::cmp::Reverse(slot.len));
    let (digests, synced) = hash_and_sync(&pending, buffers);
    for (((i, slot, fd), digest), synced) in pending.iter().zip(digests).zip(synced) {
        let failed = |(what, errno)| SealFailure::new(&store, slot, what, errno);
        let digest = digest.map_err(failed)?;
        synced.map_err(failed)?;
        let immutable = make_immutable(*fd);
        let mut heap = state::lock();
        if let Some(kept) = heap.talc.source.slots[*i].as_mut() {
            kept.digest = digest;
            kept.immutable = immutable;
            kept.state = State::Sealed;
        }
        drop(heap);
        // SAFETY: the read-only fd the slot held, no longer recorded anywhere.
        unsafe { libc::close(*fd) };
    }
    Ok(())
}

/// Threads hashing segment files at a seal, at most.
const HASHING_THREADS: usize = 4;

/// What failed (for the error's message) and its errno.
type Failure = (&'static str, i32);
/// A file's BLAKE3 digest, or why it could not be had.
type Digested = Result<[u8; 32], Failure>;

/// The BLAKE3 digest of each file of `pending` (largest first), hashed in parallel, a
/// thread for each buffer; and the outcome of its fsync, on a thread of its own meanwhile.
fn hash_and_sync(
    pending: &[(usize, Slot, RawFd)],
    buffers: &mut [Vec<u8>],
) -> (Vec<Digested>, Vec<Result<(), Failure>>) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = Mutex::new(vec![Err(("hashing", libc::EIO)); pending.len()]);
    std::thread::scope(|scope| {
        let syncing = scope.spawn(|| {
            pending
                .iter()
                .map(|(_, _, fd)| {
                    // SAFETY: the slot's open fd.
                    let synced = unsafe { libc::fsync(*fd) } == 0;
                    synced
                        .then_some(())
                        .ok_or_else(|| ("syncing it to disk", errno()))
                })
                .collect()
        });
        let hashing: Vec<_> = buffers
            .iter_mut()
            .take(pending.len())
            .map(|buffer| {
                let (next, results) = (&next, &results);
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((_, _, fd)) = pending.get(i) else {
                            break;
                        };
                        let digest = hash_file(*fd, buffer);
                        results.lock().unwrap_or_else(PoisonError::into_inner)[i] = digest;
                    }
                })
            })
            .collect();
        // A hashing thread that panicked leaves its segments' `Err`s in place.
        for thread in hashing {
            let _ = thread.join();
        }
        let synced = syncing
            .join()
            .unwrap_or_else(|_| vec![Err(("syncing it to disk", libc::EIO)); pending.len()]);
        (
            std::mem::take(&mut *results.lock().unwrap_or_else(PoisonError::into_inner)),
            synced,
        )
    })
}

/// The digest of the file `fd` is open on (the file, not the private mapping of it).
fn hash_file(fd: RawFd, buffer: &mut [u8]) -> Digested {
    // SAFETY: the slot's open fd, duplicated so that the File closes only its copy.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if copy < 0 {
        return Err(("duplicating its fd", errno()));
    }
    // SAFETY: `copy` was just made and nothing else owns it.
    let file = unsafe { std::fs::File::from_raw_fd(copy) };
    let mut hasher = blake3::Hasher::new();
    let mut offset = 0u64;
    loop {
        let n = std::os::unix::fs::FileExt::read_at(&file, buffer, offset).map_err(|e| {
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
    Ok(*hasher.finalize().as_bytes())
}

/// Sets `FS_IMMUTABLE_FL`: false where the file system has no such flag or the process
/// lacks `CAP_LINUX_IMMUTABLE` (the file's mode 0400 is then its only protection).
pub(super) fn make_immutable(fd: RawFd) -> bool {
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int-sized value into `flags`.
    if unsafe { libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) } != 0 {
        return false;
    }
    flags |= libc::c_long::from(FS_IMMUTABLE_FL);
    // SAFETY: FS_IOC_SETFLAGS reads the value `flags` holds.
    unsafe { libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags) == 0 }
}

/// Clears `FS_IMMUTABLE_FL` if it is set, so that the file can be removed.
pub(super) fn clear_immutable(fd: RawFd) -> std::io::Result<()> {
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int-sized value into `flags`.
    if unsafe { libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) } != 0 {
        // No flags on this file system: nothing to clear.
        return Ok(());
    }
    if flags & libc::c_long::from(FS_IMMUTABLE_FL) == 0 {
        return Ok(());
    }
    flags &= !libc::c_long::from(FS_IMMUTABLE_FL);
    // SAFETY: FS_IOC_SETFLAGS reads the value `flags` holds.
    if unsafe { libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `linux/fs.h`.
const FS_IMMUTABLE_FL: i32 = 0x10;
