//! Freed memory that keeps no secret: [`ScrubbingAlloc`], a global allocator that zeroes
//! every block before freeing it, so the copies a program dropped (a `String`'s old buffer
//! after it grew, a dropped clone, a value read from the environment) are not in the heap
//! an image captures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the first allocation through a [`ScrubbingAlloc`].
static IN_USE: AtomicBool = AtomicBool::new(false);

/// A global allocator that zeroes every block it frees, then frees it with `A`
/// ([`System`] by default).
///
/// An allocator keeps the bytes of a freed block until it hands the block out again, and
/// glibc's `malloc_trim` returns whole free pages only: without scrubbing, a program that
/// held a secret in a `String` that grew, or cloned it, or read it from the environment,
/// still holds pieces of it in freed memory — and a checkpoint puts them in the image.
/// `#[crac(secret)]` fields and secret environment variables therefore need it: a
/// checkpoint that would wipe one while the program's global allocator is not a
/// `ScrubbingAlloc` is refused, naming it.
///
/// Install it once, in the binary:
///
/// ```
/// #[global_allocator]
/// static ALLOC: crac::ScrubbingAlloc = crac::ScrubbingAlloc::new(std::alloc::System);
/// # fn main() { assert!(crac::ScrubbingAlloc::is_global_allocator()); }
/// ```
///
/// Another allocator is wrapped the same way (`ScrubbingAlloc::new(MyAlloc)`).
///
/// Cost: freeing a block writes its size in zeros (a few nanoseconds for small blocks,
/// memory bandwidth for large ones), and `realloc` always moves the block (allocate, copy,
/// scrub, free: the wrapped allocator's in-place `realloc` could free the old block
/// unscrubbed). `cargo bench --bench scrubbing` measures it; docs/benchmarks.md has the figures.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScrubbingAlloc<A = System> {
    inner: A,
}

impl<A> ScrubbingAlloc<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> Self {
        ScrubbingAlloc { inner }
    }
}

impl ScrubbingAlloc {
    /// Whether allocations go through a `ScrubbingAlloc`: true once one has served an
    /// allocation, which the global allocator does before `main` and which this call makes
    /// sure of. (A `ScrubbingAlloc` used directly rather than as the global allocator would
    /// set it too.)
    pub fn is_global_allocator() -> bool {
        drop(std::hint::black_box(Box::new(0u8)));
        IN_USE.load(Ordering::Relaxed)
    }
}

/// Refuses a checkpoint that would wipe `what` (a secret) while freed memory is not
/// scrubbed, saying how to install [`ScrubbingAlloc`].
#[doc(hidden)]
pub fn require_scrubbing(what: &str) -> Result<(), String> {
    if ScrubbingAlloc::is_global_allocator() {
        return Ok(());
    }
    Err(format!(
        "freed copies of {what} may remain in memory and reach the image: the program's \
         global allocator does not scrub freed memory; add \
         `#[global_allocator] static ALLOC: crac::ScrubbingAlloc = \
         crac::ScrubbingAlloc::new(std::alloc::System);` to the program (see \
         crac::ScrubbingAlloc)"
    ))
}

// SAFETY: every block comes from `inner` and goes back to it with the layout it was
// allocated with; scrubbing writes only within a block the caller is giving up.
unsafe impl<A: GlobalAlloc> GlobalAlloc for ScrubbingAlloc<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_in_use();
        // SAFETY: the caller's guarantees (a non-zero size) are passed on unchanged.
        unsafe { self.inner.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_in_use();
        // SAFETY: as for `alloc`.
        unsafe { self.inner.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller owns the `layout.size()` bytes at `ptr` until they are freed.
        unsafe { scrub(ptr, layout.size()) };
        // SAFETY: `ptr` was allocated by `inner` with `layout` (it came from `alloc`).
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    // `realloc` is GlobalAlloc's own: allocate, copy, then `dealloc` (scrubbed) the old
    // block. Forwarding it would let `inner` move the block and free the old one as is.
}

/// Reads once, writes once: the flag's cache line stays shared between threads.
fn note_in_use() {
    if !IN_USE.load(Ordering::Relaxed) {
        IN_USE.store(true, Ordering::Relaxed);
    }
}

/// Zeroes `len` bytes at `ptr`, in a way the optimizer keeps although the block is freed
/// right after (a store to memory about to be freed is dead to it).
///
/// # Safety
///
/// `ptr` must be valid for writes of `len` bytes.
unsafe fn scrub(ptr: *mut u8, len: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { ptr.write_bytes(0, len) };
    // An opaque use that may read the block (LLVM lowers it to an empty asm statement
    // taking the pointer and clobbering memory): the zeroing cannot be dropped.
    std::hint::black_box(ptr);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records what each freed block held at the moment it was freed.
    #[derive(Default)]
    struct Witness {
        freed: Mutex<Vec<Vec<u8>>>,
    }

    // SAFETY: forwards to `System`, only reading blocks it is handed back.
    unsafe impl GlobalAlloc for Witness {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the block is still allocated and `layout.size()` bytes long.
            let held = unsafe { std::slice::from_raw_parts(ptr, layout.size()) }.to_vec();
            self.freed.lock().unwrap().push(held);
            // SAFETY: forwarded.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[test]
    fn every_freed_block_is_zero_and_reallocated_data_is_kept() {
        let alloc = ScrubbingAlloc::new(Witness::default());
        let layout = |size| Layout::from_size_align(size, 8).unwrap();
        // SAFETY: a non-zero layout.
        let block = unsafe { alloc.alloc(layout(66)) };
        // SAFETY: within the block.
        unsafe { block.write_bytes(b'S', 66) };
        // SAFETY: `block` has layout(66); the new size is not zero.
        let grown = unsafe { alloc.realloc(block, layout(66), 1000) };
        // SAFETY: the first 66 bytes were copied into the grown block.
        assert_eq!(unsafe { std::slice::from_raw_parts(grown, 66) }, [b'S'; 66]);
        // SAFETY: `grown` has layout(1000).
        let shrunk = unsafe { alloc.realloc(grown, layout(1000), 10) };
        // SAFETY: the first 10 bytes were kept.
        let kept = unsafe { std::slice::from_raw_parts(shrunk, 10) };
        assert_eq!(kept, [b'S'; 10]);
        // SAFETY: `shrunk` has layout(10), freed once.
        unsafe { alloc.dealloc(shrunk, layout(10)) };
        let freed = alloc.inner.freed.lock().unwrap();
        assert_eq!(
            freed.iter().map(Vec::len).collect::<Vec<_>>(),
            [66, 1000, 10]
        );
        assert!(freed.iter().flatten().all(|&b| b == 0), "{freed:?}");
        assert!(IN_USE.load(Ordering::Relaxed));
    }
}
