//! `MappedHeap`: a global allocator whose memory, in a process started for a checkpoint,
//! lives in files ("segments") of a store beside the image, so that a restore maps the
//! warmed heap instead of copying it, and every restored copy shares the same pages.
//!
//! - **Mode**, decided at the first allocation (before `main`, without allocating):
//!   *mapped* if `CRAC_CHECKPOINT_TO` is set and not empty, the process plays none of
//!   crac's helper roles, and the store (`<image_dir>.heap`, [`store_for`]) can be opened
//!   safely (`store.rs`); *system* otherwise, where every call forwards to
//!   [`std::alloc::System`] after one atomic load and a branch.
//! - **Address space**: one region of [`state::REGION_LEN`] is reserved (inaccessible,
//!   backed by nothing) and segments are mapped into it one after the other, so a block
//!   is the heap's by a range check: blocks from before the decision, or from the system
//!   allocator when the region is full, go back to the system allocator.
//! - **Segments** (`segment.rs`) are unnamed `O_TMPFILE` files, `fallocate`d whole (a full
//!   disk fails the segment, never a page fault) and mapped shared while the process
//!   warms up: a process that dies before a checkpoint leaves nothing on disk. They grow
//!   geometrically, 64 MiB doubling to 1 GiB, always large enough for the request. When no
//!   file can be had (disk full, store gone, table full, or a checkpoint under way) the
//!   heap grows in anonymous memory instead, which CRIU dumps as pages.
//! - **Sealing** (`seal.rs`), at a checkpoint: each segment still shared is named in the
//!   store, mapped private from that name in place, fsynced, digested, made 0400 and
//!   immutable where permitted. A sealed file is never written again: later writes go to
//!   private copy-on-write pages, which CRIU dumps; later growth goes to new segments,
//!   sealed at the next checkpoint.
//! - **Engine**: [talc](https://docs.rs/talc) manages the memory the segments give it
//!   (one heap, claimed on the first segment and extended over each next one), behind a
//!   `std::sync::Mutex` (futex-based: a thread preempted while holding it makes the
//!   others sleep, not spin). Chosen over rlsf (TLSF pools: comparable speed, but no
//!   growth hook, so growth would be hand-written around it) and mimalloc's arenas
//!   (thread-local heaps, faster under contention, but mimalloc takes memory from the OS
//!   for itself beside the arenas we give it, which would then be dumped as pages, and
//!   needs a C build): talc's `Source::acquire` is exactly the "map the next segment"
//!   hook. `cargo bench -p crac-criu --bench mapped_heap` compares it with the system
//!   allocator.

mod seal;
mod segment;
mod state;
mod store;
mod text;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use state::{MAPPED, MODE, REGION, REGION_LEN, SYSTEM, UNDECIDED_OR_DECIDING};

/// One sealed segment: a file the heap maps privately from now on, never written again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Absolute, as CRIU will record it.
    pub(crate) path: PathBuf,
    /// The file's size in bytes.
    pub(crate) len: u64,
    /// BLAKE3 of the file's contents, lowercase hex (as `crate::image::digest` writes).
    pub(crate) digest: String,
}

/// A seal that failed: the segment's file and what failed. The heap stays usable.
#[derive(Debug, thiserror::Error)]
#[error("sealing heap segment {path}: {what}: {source}")]
pub(crate) struct SealFailure {
    /// The segment's file (or, for a segment not named yet, the store and its address).
    pub(crate) path: PathBuf,
    what: &'static str,
    source: std::io::Error,
}

impl SealFailure {
    fn new(store: &store::Path, slot: &segment::Slot, what: &'static str, errno: i32) -> Self {
        use std::os::unix::ffi::OsStrExt as _;
        let dir = Path::new(std::ffi::OsStr::from_bytes(store.as_bytes()));
        let path = if slot.name.len() > 0 {
            dir.join(std::ffi::OsStr::from_bytes(slot.name.as_bytes()))
        } else {
            dir.join(format!("(unnamed segment at {:#x})", slot.addr))
        };
        SealFailure {
            path,
            what,
            source: std::io::Error::from_raw_os_error(errno),
        }
    }
}

/// The directory segments of images checkpointed to `image_dir` live in: a sibling,
/// `<image_dir>.heap` (e.g. /var/lib/crac/svc -> /var/lib/crac/svc.heap), so that
/// publishing an image (renaming its staging directory into place) does not move the
/// files CRIU recorded.
pub(crate) fn store_for(image_dir: &Path) -> PathBuf {
    let mut name = image_dir.as_os_str().to_owned();
    name.push(store::SUFFIX);
    PathBuf::from(name)
}

/// Whether `dir` is a store a heap may keep segments in: a real directory (not a link)
/// of this process's user that nobody else can write. What the heap checks before it
/// makes or names a segment there, and what must hold before a segment there is removed.
pub(crate) fn is_trusted_store(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    store::Path::from_bytes(dir.as_os_str().as_bytes())
        .is_some_and(|path| store::open(&path).is_ok())
}

/// Where this process's heap lives, if its heap is file-backed (`None`: system
/// allocator mode, or `MappedHeap` not the global allocator).
pub(crate) fn store() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    if MODE.load(Ordering::Acquire) != MAPPED {
        return None;
    }
    let store = state::lock().talc.source.store;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(store.as_bytes())))
}

/// Seals every segment not sealed yet and returns every sealed segment the heap maps
/// (earlier seals too). On error the heap stays fully usable (segments not sealed stay
/// shared) and the error names the segment file and what failed.
///
/// From a successful seal until [`resume`], the heap grows in anonymous memory: no new
/// segment file (nor its open fd) appears between the seal and the dump.
pub(crate) fn seal() -> Result<Vec<Segment>, SealFailure> {
    if MODE.load(Ordering::Acquire) != MAPPED {
        return Ok(Vec::new());
    }
    seal::seal()
}

/// Ends the checkpoint a [`seal`] began (whatever its outcome, in the process left
/// running and in every restored copy): the heap grows in new segment files again.
pub(crate) fn resume() {
    if MODE.load(Ordering::Acquire) == MAPPED {
        seal::resume();
    }
}

/// Removes a segment file that no image uses any more (the images' garbage collection):
/// its immutable flag, set at its seal where permitted, is cleared first. The file is
/// opened without following a link, and only a regular file is touched.
/// Makes the segment file `file` immutable as sealing does (`FS_IMMUTABLE_FL`): false
/// where the file system has no such flag or the process lacks `CAP_LINUX_IMMUTABLE`.
pub(crate) fn make_immutable(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd as _;
    seal::make_immutable(file.as_raw_fd())
}

#[allow(
    dead_code,
    reason = "the images' garbage collection (integration) uses it"
)]
pub(crate) fn remove_segment(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file: not a heap segment",
            path.display()
        )));
    }
    seal::clear_immutable(file.as_raw_fd())?;
    drop(file);
    std::fs::remove_file(path)
}

/// A global allocator for state that restored copies map from files instead of reading
/// into memory: in a process started to take an image (`CRAC_CHECKPOINT_TO` set), the
/// heap lives in segment files beside the image; in any other process, it is the system
/// allocator.
///
/// ```
/// #[global_allocator]
/// static ALLOC: crac::MappedHeap = crac::MappedHeap::new();
/// # fn main() { let v = vec![1u8; 1 << 20]; assert_eq!(v.iter().map(|b| *b as usize).sum::<usize>(), 1 << 20); }
/// ```
///
/// With secrets, under the scrubbing allocator (freed blocks are zeroed before they reach
/// the heap, so the segment files hold no freed secret):
///
/// ```
/// #[global_allocator]
/// static ALLOC: crac::ScrubbingAlloc<crac::MappedHeap> =
///     crac::ScrubbingAlloc::new(crac::MappedHeap::new());
/// # fn main() { drop(String::from("secret")); }
/// ```
///
/// **When it maps.** At the first allocation (before `main`) the heap decides once: if
/// `CRAC_CHECKPOINT_TO` is set and not empty (and the process is not one of crac's own
/// helpers), the heap's memory comes from files of the *store*, the directory
/// `<image_dir>.heap` beside the image (created 0700; a symlink, a directory another user
/// owns or others can write is refused). While the process warms up, the files are
/// unnamed (`O_TMPFILE`) and mapped shared: a process that dies before a checkpoint
/// leaves nothing behind. At a checkpoint they are *sealed*: named in the store, mapped
/// private in place, made read-only and immutable where the file system allows, and
/// recorded in the image with their digests. CRIU then leaves their pages out of the
/// image, and a restore maps the files again: it reads nothing up front, and copies
/// restored at once share the page cache. Writes after the seal go to private pages
/// (dumped as usual); the files never change. Without `CRAC_CHECKPOINT_TO`, or if the
/// store cannot be used, every call forwards to [`std::alloc::System`].
///
/// **Costs.** In system mode, one atomic load and a branch per call. In mapped mode,
/// [talc](https://docs.rs/talc) behind one lock: a small allocation and its free take
/// about twice the system allocator's time (18–22 ns against 9–10 ns on a 2-vCPU VM), a
/// batch of mixed sizes less than half of it; there are no per-thread caches, so many
/// threads allocating at once contend. While the process warms up, the segments are
/// reserved whole on disk (64 MiB, then doubling to 1 GiB) and written back by the kernel
/// like any file; a seal gives back the unused end of the last one, then fsyncs and
/// hashes the files (about 0.5 s per GB on two cores). A restore reads nothing up front:
/// pages come from the files as they are touched. `cargo bench -p crac-criu --bench
/// mapped_heap` measures the allocator.
///
/// **Fork.** A child created by `fork()` without `exec` shares the segments not sealed
/// yet with its parent: writes of either are seen by the other. Do not let both go on
/// using the heap after a fork before the first checkpoint (`std::process::Command`,
/// `posix_spawn` and fork-then-exec are unaffected; a parent that exits right after
/// forking, as a daemon does, is fine too).
///
/// One heap per process: every `MappedHeap` value is a handle on it.
#[derive(Debug, Default, Clone, Copy)]
pub struct MappedHeap {
    _handle: (),
}

impl MappedHeap {
    /// A handle on the process's mapped heap, for `#[global_allocator]`.
    pub const fn new() -> Self {
        MappedHeap { _handle: () }
    }
}

fn ours(ptr: *mut u8) -> bool {
    let base = REGION.load(Ordering::Acquire);
    base != 0 && (ptr as usize).wrapping_sub(base) < REGION_LEN
}

/// An allocation while the mode is mapped or not decided yet (kept out of line: the
/// system mode's path is one load and a branch).
///
/// # Safety
/// `layout` has a non-zero size.
#[inline(never)]
unsafe fn alloc_mapped(layout: Layout) -> *mut u8 {
    let mut mode = MODE.load(Ordering::Relaxed);
    if mode <= UNDECIDED_OR_DECIDING {
        mode = state::decide();
    }
    if mode == MAPPED {
        // SAFETY: the caller's non-zero size.
        if let Some(block) = unsafe { state::lock().talc.allocate(layout) } {
            return block.as_ptr();
        }
    }
    // SAFETY: the caller's contract, passed on.
    unsafe { System.alloc(layout) }
}

/// Frees a block of the heap's region.
///
/// # Safety
/// `ptr` was allocated by talc with `layout`.
#[inline(never)]
unsafe fn dealloc_mapped(ptr: *mut u8, layout: Layout) {
    // SAFETY: the caller's contract.
    unsafe { state::lock().talc.deallocate(ptr, layout) }
}

// SAFETY: every block is either talc's, inside the region (handed out from memory mapped
// read-write for the heap only), or the system allocator's; `ours` tells them apart by
// address, and each goes back where it came from.
unsafe impl GlobalAlloc for MappedHeap {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if MODE.load(Ordering::Relaxed) == SYSTEM {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { alloc_mapped(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if MODE.load(Ordering::Relaxed) == SYSTEM {
            // SAFETY: the caller's contract, passed on.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // SAFETY: the caller's contract, passed on.
        let block = unsafe { alloc_mapped(layout) };
        if !block.is_null() {
            // SAFETY: a fresh block of `layout.size()` bytes. (A block reused from freed
            // memory is not zero, so every block is written.)
            unsafe { block.write_bytes(0, layout.size()) };
        }
        block
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ours(ptr) {
            // SAFETY: `ptr` is talc's (in the region) and allocated with `layout`.
            unsafe { dealloc_mapped(ptr, layout) }
        } else {
            // SAFETY: not in the region, so the system allocator's.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !ours(ptr) {
            // SAFETY: the system allocator's block, with the caller's contract.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: talc's block, allocated with `layout`; `new_size` is non-zero.
        if unsafe {
            state::lock()
                .talc
                .try_realloc_in_place(ptr, layout, new_size)
        } {
            return ptr;
        }
        // SAFETY: the caller guarantees `new_size` rounded up to `layout.align()` fits.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a non-zero size.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live and distinct; the old one holds `layout.size()`
            // bytes, fewer than `new_size` (a shrink is done in place above).
            unsafe { new.copy_from_nonoverlapping(ptr, layout.size()) };
            // SAFETY: the old block, given up.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

/// Seals the heap as a checkpoint would and returns `(path, len, digest)` of every sealed
/// segment; for the crate's tests of the heap (no CRIU involved).
#[doc(hidden)]
pub fn __seal_for_tests() -> Result<Vec<(PathBuf, u64, String)>, String> {
    seal()
        .map(|segments| {
            segments
                .into_iter()
                .map(|s| (s.path, s.len, s.digest))
                .collect()
        })
        .map_err(|e| e.to_string())
}

/// Ends the checkpoint `__seal_for_tests` began, as [`resume`]; for tests.
#[doc(hidden)]
pub fn __resume_for_tests() {
    resume();
}

/// Where this process's heap lives, as [`store`]; for tests.
#[doc(hidden)]
pub fn __store_for_tests() -> Option<PathBuf> {
    store()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd as _;

    #[test]
    fn the_store_is_the_image_directory_with_heap_appended() {
        assert_eq!(
            store_for(Path::new("/var/lib/crac/svc")),
            Path::new("/var/lib/crac/svc.heap")
        );
        assert_eq!(store_for(Path::new("svc")), Path::new("svc.heap"));
    }

    #[test]
    fn a_sealed_segment_can_be_removed_though_immutable() {
        let dir = std::env::temp_dir().join(format!("heap-remove-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("seg.heap");
        std::fs::write(&path, b"segment").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let immutable = seal::make_immutable(file.as_raw_fd());
        drop(file);
        if immutable {
            assert!(std::fs::remove_file(&path).is_err(), "immutable");
        }
        remove_segment(&path).unwrap();
        assert!(!path.exists());
        std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
        assert!(remove_segment(&path).is_err(), "a link is not followed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
