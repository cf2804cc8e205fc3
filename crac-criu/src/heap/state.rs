//! The heap's one static state: the mode, the reserved region, the talc allocator over
//! it, and the table of file segments. It comes back with the process's memory in every
//! restored copy, so a restored heap knows its segments.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use talc::base::Talc;
use talc::base::binning::Binning;
use talc::source::Source;

use super::segment::{self, Slot};
use super::store;

/// The address space reserved for the heap. Nothing is committed: segments are mapped
/// into it as the heap grows; a heap that outgrows it allocates from the system.
pub(super) const REGION_LEN: usize = 1 << 40;
/// The first file segment's size; each next one doubles, up to [`MAX_SEGMENT`].
const FIRST_SEGMENT: usize = 64 << 20;
const MAX_SEGMENT: usize = 1 << 30;
/// Segments are multiples of this (huge-page friendly, and far above talc's granule).
const SEGMENT_UNIT: usize = 2 << 20;
/// File segments the table holds. With segments of up to 1 GiB that is hundreds of GiB
/// of heap; past it, the heap grows in anonymous memory (dumped as pages, not shared).
pub(super) const MAX_FILE_SEGMENTS: usize = 256;

/// Not decided yet: the first allocation decides.
const UNDECIDED: u8 = 0;
/// Being decided by one thread; the others allocate from the system meanwhile.
const DECIDING: u8 = 1;
/// Modes up to this one are not decided yet.
pub(super) const UNDECIDED_OR_DECIDING: u8 = DECIDING;
/// Every call forwards to the system allocator.
pub(super) const SYSTEM: u8 = 2;
/// Allocations come from the file-backed region.
pub(super) const MAPPED: u8 = 3;

pub(super) static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);
/// The region's first address, 0 until the heap is mapped: `dealloc`'s range check.
pub(super) static REGION: AtomicUsize = AtomicUsize::new(0);

pub(super) static HEAP: Mutex<Heap> = Mutex::new(Heap {
    talc: Talc::new(Segments {
        next: 0,
        end: 0,
        heap_end: None,
        next_size: FIRST_SEGMENT,
        files_paused: false,
        count: 0,
        slots: [None; MAX_FILE_SEGMENTS],
        store: store::Path::new(),
    }),
});

/// The allocator and its source of memory.
#[derive(Debug)]
pub(super) struct Heap {
    pub(super) talc: Talc<Segments, talc::DefaultBinning>,
}

// SAFETY: the raw pointers inside point into the heap's own region, which every thread
// may use; the mutex serializes every access to them.
unsafe impl Send for Heap {}

/// Where the heap's memory comes from: segments mapped one after the other in the region.
#[derive(Debug)]
pub(super) struct Segments {
    /// Where the next segment goes, and where the region ends.
    next: usize,
    end: usize,
    /// The heap's end as talc knows it (after its first claim).
    heap_end: Option<NonNull<u8>>,
    next_size: usize,
    /// Set while a checkpoint is under way (from `seal` until `resume`): new segments are
    /// anonymous, so that no unsealed file appears between the seal and the dump.
    pub(super) files_paused: bool,
    pub(super) count: usize,
    pub(super) slots: [Option<Slot>; MAX_FILE_SEGMENTS],
    /// The store's path, canonical (as the kernel names it).
    pub(super) store: store::Path,
}

pub(super) fn lock() -> MutexGuard<'static, Heap> {
    HEAP.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Decides the mode, once: mapped if the process is started for a checkpoint, the store
/// can be opened safely, the region reserved and the first segment made; system otherwise.
/// Returns the mode now in force.
pub(super) fn decide() -> u8 {
    if MODE
        .compare_exchange(UNDECIDED, DECIDING, Ordering::Acquire, Ordering::Acquire)
        .is_err()
    {
        // Another thread decides; until it is done, the system allocator serves.
        return match MODE.load(Ordering::Acquire) {
            MAPPED => MAPPED,
            _ => SYSTEM,
        };
    }
    let mode = if try_map() { MAPPED } else { SYSTEM };
    MODE.store(mode, Ordering::Release);
    mode
}

fn try_map() -> bool {
    let Some(wanted) = store::wanted() else {
        return false;
    };
    let Some(dir) = store::create(&wanted) else {
        return false;
    };
    let path = store::canonical(&dir).unwrap_or(wanted);
    drop(dir);
    let Some(base) = segment::reserve(REGION_LEN) else {
        return false;
    };
    let mut heap = lock();
    let segments = &mut heap.talc.source;
    segments.store = path;
    segments.next = base;
    segments.end = base + REGION_LEN;
    // The first segment must be a file: a store that cannot hold one is no store.
    let Some(slot) = segment::map_file(&segments.store, base, FIRST_SEGMENT) else {
        // SAFETY: the reservation was just made and nothing points into it.
        unsafe { libc::munmap(base as *mut _, REGION_LEN) };
        return false;
    };
    segments.push(slot);
    segments.next = base + FIRST_SEGMENT;
    segments.next_size = FIRST_SEGMENT * 2;
    // SAFETY: the segment is mapped read-write and used by nothing else.
    let Some(end) = (unsafe { heap.talc.claim(base as *mut u8, FIRST_SEGMENT) }) else {
        return false;
    };
    heap.talc.source.heap_end = Some(end);
    REGION.store(base, Ordering::Release);
    true
}

impl Heap {
    /// Gives back the unused end of the last segment, if it is a shared file: talc's heap
    /// is truncated to what is allocated (rounded up to [`SEGMENT_UNIT`]), the file to the
    /// same length, and the rest of the segment returns to the reservation, where the next
    /// segment will be mapped. The file a seal names, digests and the image keeps is then
    /// the heap's memory in use, not the 1 GiB a last segment may reserve on disk.
    pub(super) fn trim_last_segment(&mut self) {
        let Some(heap_end) = self.talc.source.heap_end else {
            return;
        };
        let next = self.talc.source.next;
        let count = self.talc.source.count;
        let Some(last) = self.talc.source.slots[..count]
            .iter()
            .flatten()
            .last()
            .copied()
            .filter(|slot| slot.addr + slot.len == next)
        else {
            return;
        };
        let segment::State::Shared(fd) = last.state else {
            return;
        };
        // SAFETY: `heap_end` is talc's current heap end (kept at every claim and extend).
        let in_use = unsafe { self.talc.reserved(heap_end) }.up_to.as_ptr() as usize;
        let target = in_use
            .next_multiple_of(SEGMENT_UNIT)
            .max(last.addr + SEGMENT_UNIT);
        if target >= heap_end.as_ptr() as usize {
            return;
        }
        let new_len = target - last.addr;
        let Ok(size) = libc::off_t::try_from(new_len) else {
            return;
        };
        // SAFETY: memory above `target` holds no allocation (talc's reserved region ends
        // below it), so talc may give it up; `heap_end` is current.
        let Some(end) = (unsafe { self.talc.truncate(heap_end, target as *mut u8) }) else {
            return;
        };
        // The file shrinks only once nothing of the heap lies past its new end.
        // SAFETY: our own fd; the tail is mapped back to the reservation right after, and
        // nothing touches it (talc no longer owns it).
        if unsafe { libc::ftruncate(fd, size) } == 0 {
            segment::unreserve(target, last.addr + last.len - target);
            if let Some(slot) = self.talc.source.slots[count - 1].as_mut() {
                slot.len = new_len;
            }
            self.talc.source.next = target;
        } else {
            // SAFETY: the memory just given up is still mapped from the file: take it back.
            let end = unsafe { self.talc.extend(end, (last.addr + last.len) as *mut u8) };
            self.talc.source.heap_end = Some(end);
            return;
        }
        self.talc.source.heap_end = Some(end);
    }
}

impl Segments {
    fn push(&mut self, slot: Slot) {
        self.slots[self.count] = Some(slot);
        self.count += 1;
    }

    /// Maps the next segment, large enough for `layout`: a file of the store unless the
    /// table is full, files are paused, or the store or disk refuse; else anonymous.
    /// Returns the new end of mapped memory.
    fn grow(&mut self, layout: Layout) -> Option<usize> {
        let wanted = layout
            .size()
            .checked_add(layout.align())?
            .checked_add(SEGMENT_UNIT)?;
        // While paused, only what is asked for: what a checkpoint allocates is not to be
        // followed by a large anonymous segment the heap would then fill instead of files.
        let len = if self.files_paused {
            wanted
        } else {
            self.next_size.max(wanted)
        }
        .next_multiple_of(SEGMENT_UNIT);
        let addr = self.next;
        if len > self.end - addr {
            return None;
        }
        let file = if self.files_paused || self.count == MAX_FILE_SEGMENTS {
            None
        } else {
            segment::map_file(&self.store, addr, len)
        };
        match file {
            Some(slot) => {
                self.push(slot);
                self.next_size = (len * 2).min(MAX_SEGMENT);
            }
            None if segment::map_anonymous(addr, len) => {}
            None => return None,
        }
        self.next = addr + len;
        Some(self.next)
    }
}

// SAFETY: `acquire` extends the heap only over memory it just mapped read-write, right
// after the heap's end, and touches talc only through the reference it is given.
unsafe impl Source for Segments {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, layout: Layout) -> Result<(), ()> {
        let heap_end = talc.source.heap_end.ok_or(())?;
        let new_end = talc.source.grow(layout).ok_or(())?;
        // SAFETY: `heap_end..new_end` was just mapped, contiguous with the heap, and is
        // used by nothing else.
        let end = unsafe { talc.extend(heap_end, new_end as *mut u8) };
        talc.source.heap_end = Some(end);
        Ok(())
    }
}
