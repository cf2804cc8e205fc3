//! What `MappedHeap` costs beside the system allocator: one allocation and its free
//! (small, medium, large), and a batch of mixed sizes allocated then freed, on one thread
//! and on two. The benchmark runs twice: in system mode (no image target: every call
//! forwards to the system allocator after one atomic load and a branch), then in mapped
//! mode (this executable again, with an image target in a temporary directory: talc over
//! segment files).
//!
//! Run: `cargo bench -p crac-criu --bench mapped_heap`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;

use crac_criu::MappedHeap;

#[global_allocator]
static ALLOC: MappedHeap = MappedHeap::new();

/// The image target's variable (crac-criu's `env::CHECKPOINT_TO`).
const CHECKPOINT_TO: &str = concat!("CRAC", "_CHECKPOINT_TO");
const SIZES: [usize; 3] = [32, 4096, 1 << 20];
const THREADS: [usize; 2] = [1, 2];

fn main() {
    let mapped = std::env::var_os(CHECKPOINT_TO).is_some();
    let mode = if crac_criu::__store_for_tests().is_some() {
        "mapped"
    } else {
        "system"
    };
    println!("MappedHeap in {mode} mode");
    divan::main();
    if mapped {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mapped-heap-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(std::env::args_os().skip(1))
        .env(CHECKPOINT_TO, dir.join("bench"))
        .status()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success());
}

/// One allocation of `size` bytes, its first and last bytes written, then freed.
fn alloc_free(alloc: &impl GlobalAlloc, size: usize) {
    let layout = Layout::from_size_align(size, 8).unwrap();
    // SAFETY: a non-zero layout.
    let block = unsafe { alloc.alloc(layout) };
    assert!(!block.is_null());
    // SAFETY: within the block.
    unsafe { block.write(1) };
    // SAFETY: within the block.
    unsafe { block.wrapping_add(size - 1).write(1) };
    // SAFETY: allocated above with `layout`, freed once.
    unsafe { alloc.dealloc(divan::black_box(block), layout) };
}

/// 256 blocks of sizes from 16 bytes to 16 KiB allocated, then freed in another order.
fn batch(alloc: &impl GlobalAlloc) {
    let mut blocks = [(std::ptr::null_mut::<u8>(), Layout::new::<u8>()); 256];
    for (i, slot) in blocks.iter_mut().enumerate() {
        let layout = Layout::from_size_align(16 << (i % 11), 8).unwrap();
        // SAFETY: a non-zero layout.
        let block = unsafe { alloc.alloc(layout) };
        assert!(!block.is_null());
        // SAFETY: within the block.
        unsafe { block.write(1) };
        *slot = (block, layout);
    }
    for i in 0..blocks.len() {
        let (block, layout) = blocks[(i * 97) % blocks.len()];
        // SAFETY: each block once (97 is prime to 256), with its layout.
        unsafe { alloc.dealloc(block, layout) };
    }
}

#[divan::bench(args = SIZES, threads = THREADS)]
fn alloc_free_system(size: usize) {
    alloc_free(&System, size);
}

#[divan::bench(args = SIZES, threads = THREADS)]
fn alloc_free_mapped_heap(size: usize) {
    alloc_free(&ALLOC, size);
}

#[divan::bench(threads = THREADS)]
fn batch_system() {
    batch(&System);
}

#[divan::bench(threads = THREADS)]
fn batch_mapped_heap() {
    batch(&ALLOC);
}
