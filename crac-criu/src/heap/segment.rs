//! One segment: a stretch of the heap's reserved region, mapped from a file of the store
//! (or, when no file can be had, from anonymous memory), and the record the heap keeps of
//! it. Nothing here allocates: it runs under the heap's lock.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::store;

/// What a segment's memory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// An unnamed (`O_TMPFILE`) file mapped shared, through this fd (read-write).
    Shared(RawFd),
    /// Named in the store and mapped private from that name; this read-only fd is kept
    /// until its digest is taken.
    Private(RawFd),
    /// Sealed: named, mapped private, digested; no fd left open.
    Sealed,
}

/// A file segment's record, kept in the heap's static table.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) addr: usize,
    pub(super) len: usize,
    pub(super) state: State,
    /// Its file's name in the store, once it has one.
    pub(super) name: super::text::Text<64>,
    /// BLAKE3 of the file, once sealed.
    pub(super) digest: [u8; 32],
    /// Whether `FS_IMMUTABLE_FL` could be set on the file.
    pub(super) immutable: bool,
}

/// Maps a new unnamed file of `len` bytes from the store at `addr`, shared: the
/// segment's record, or `None` (nothing left behind) if the store or the disk refuse.
pub(super) fn map_file(store_path: &store::Path, addr: usize, len: usize) -> Option<Slot> {
    let dir = store::open(store_path).ok()?;
    let flags = libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated relative path resolved in the open directory `dir`.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c".".as_ptr(), flags, 0o600) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    let size = libc::off_t::try_from(len).ok()?;
    // Every block reserved now: a full disk fails here, not as SIGBUS on a page fault.
    // SAFETY: plain syscalls on our own fd.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size) } != 0 {
        return None;
    }
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let flags = libc::MAP_SHARED | libc::MAP_FIXED;
    // SAFETY: `addr..addr + len` lies in the heap's reservation, unused (the caller's
    // contract): replacing it touches no memory anyone holds.
    let mapped = unsafe { libc::mmap(addr as *mut _, len, prot, flags, file.as_raw_fd(), 0) };
    if mapped == libc::MAP_FAILED {
        return None;
    }
    Some(Slot {
        addr,
        len,
        state: State::Shared(std::os::fd::IntoRawFd::into_raw_fd(file)),
        name: super::text::Text::new(),
        digest: [0; 32],
        immutable: false,
    })
}

/// Maps anonymous private memory at `addr` (the same contract as [`map_file`]): where a
/// file segment cannot be had, the heap goes on in memory CRIU dumps as pages.
pub(super) fn map_anonymous(addr: usize, len: usize) -> bool {
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
    // SAFETY: as for `map_file`.
    let mapped = unsafe { libc::mmap(addr as *mut _, len, prot, flags, -1, 0) };
    mapped != libc::MAP_FAILED
}

/// Returns `addr..addr + len` to the reservation (inaccessible, backed by nothing), for
/// a later segment.
pub(super) fn unreserve(addr: usize, len: usize) {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED;
    // SAFETY: the caller gives up that range: nothing uses it.
    unsafe { libc::mmap(addr as *mut _, len, libc::PROT_NONE, flags, -1, 0) };
}

/// Reserves `len` bytes of address space, inaccessible and backed by nothing: where
/// segments are mapped, so that a pointer is the heap's by a range check.
pub(super) fn reserve(len: usize) -> Option<usize> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    // SAFETY: a fresh mapping the kernel places; no memory of ours is affected.
    let mapped = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_NONE, flags, -1, 0) };
    (mapped != libc::MAP_FAILED).then_some(mapped as usize)
}
