//! What `crac::ScrubbingAlloc` costs on the hot path: one allocation and its free, with
//! the system allocator as is, wrapped (every freed block zeroed), and — for comparison —
//! with glibc's own `M_PERTURB` (which fills freed blocks too, but not those its
//! per-thread cache keeps, nor a block's last 8 bytes: it cannot replace scrubbing).
//!
//! Run: `cargo bench --bench scrubbing`.

use std::alloc::{GlobalAlloc, Layout, System};

use crac::ScrubbingAlloc;

const SIZES: [usize; 6] = [16, 64, 256, 1024, 4096, 65536];

fn main() {
    divan::main();
}

/// One allocation of `size` bytes, written (as a program would), then freed.
fn alloc_free(alloc: &impl GlobalAlloc, size: usize) {
    let layout = Layout::from_size_align(size, 8).unwrap();
    // SAFETY: a non-zero layout.
    let block = unsafe { alloc.alloc(layout) };
    assert!(!block.is_null());
    // SAFETY: within the block.
    unsafe { block.write_bytes(1, size) };
    // SAFETY: allocated above with `layout`, freed once.
    unsafe { alloc.dealloc(divan::black_box(block), layout) };
}

#[divan::bench(args = SIZES)]
fn system(size: usize) {
    alloc_free(&System, size);
}

#[divan::bench(args = SIZES)]
fn scrubbing(size: usize) {
    alloc_free(&ScrubbingAlloc::new(System), size);
}

#[divan::bench(args = SIZES)]
fn system_with_m_perturb(bencher: divan::Bencher, size: usize) {
    // SAFETY: mallopt only changes a malloc setting; set back to 0 (off) below.
    unsafe { libc::mallopt(libc::M_PERTURB, 0x5a) };
    bencher.bench(|| alloc_free(&System, size));
    // SAFETY: as above.
    unsafe { libc::mallopt(libc::M_PERTURB, 0) };
}

/// A `Vec` grown to `len` bytes one push at a time (its reallocations), then dropped.
#[divan::bench(args = [1024, 1 << 20])]
fn vec_growth_system(len: usize) {
    grow(&System, len);
}

#[divan::bench(args = [1024, 1 << 20])]
fn vec_growth_scrubbing(len: usize) {
    grow(&ScrubbingAlloc::new(System), len);
}

/// The part of `vec_growth_scrubbing`'s cost that is moving (no in-place growth, no
/// `mremap`) rather than zeroing: `realloc` as `ScrubbingAlloc` does it, without zeroing.
#[divan::bench(args = [1024, 1 << 20])]
fn vec_growth_moving(len: usize) {
    grow(&Moving, len);
}

/// The system allocator with `GlobalAlloc`'s own `realloc`: allocate, copy, free.
struct Moving;

// SAFETY: forwards to `System`.
unsafe impl GlobalAlloc for Moving {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// What `Vec::push` does to its buffer: doubles it with `realloc` when full.
fn grow(alloc: &impl GlobalAlloc, len: usize) {
    let mut capacity = 8;
    let mut layout = Layout::from_size_align(capacity, 1).unwrap();
    // SAFETY: a non-zero layout.
    let mut block = unsafe { alloc.alloc(layout) };
    for i in 0..len {
        if i == capacity {
            // SAFETY: `block` has `layout`; twice its size is a valid layout too.
            block = unsafe { alloc.realloc(block, layout, capacity * 2) };
            capacity *= 2;
            layout = Layout::from_size_align(capacity, 1).unwrap();
        }
        // SAFETY: `i` is below the block's capacity.
        let at = unsafe { block.add(i) };
        // SAFETY: within the block.
        unsafe { at.write(i as u8) };
    }
    // SAFETY: the block has `layout`, freed once.
    unsafe { alloc.dealloc(divan::black_box(block), layout) };
}
