//! This thread's stack below the current frame: dead frames keep what they held (a
//! secret `setenv` copied there, a key built in a local array) until something else is
//! written over it, and an image would capture it.

use crate::sys::procfs;

/// What each frame of [`zero_frames_down_to`] zeroes, then near the bottom.
const CHUNK: usize = 4096;
const SMALL_CHUNK: usize = 256;
/// More than a frame of [`zero_frames_down_to`] needs beside its chunk.
const FRAME: usize = 512;

/// Zeroes this thread's stack below the caller, down to the lowest page the thread has
/// used (resident: pages it never touched hold nothing, and are not made resident), but
/// for the last few hundred bytes there. It writes only into frames of its own, laid down
/// one below the other: nothing live, and no memory that is not this stack, is touched.
pub(crate) fn scrub_dead_frames() {
    let here: usize = std::hint::black_box(0);
    if let Some(floor) = floor(std::ptr::addr_of!(here) as usize) {
        zero_frames_down_to::<CHUNK>(floor);
        shifted(floor);
    }
}

/// The same frames again, a little lower: their chunks cover the few bytes between the
/// first ones' chunks that those frames left unwritten (alignment).
#[inline(never)]
fn shifted(floor: usize) {
    let mut pad = [0u8; FRAME / 4];
    std::hint::black_box(&mut pad);
    zero_frames_down_to::<CHUNK>(floor);
    std::hint::black_box(&pad);
}

/// Each call holds a zeroed chunk of `N` bytes, and calls itself while the next one stays
/// above `floor`; then smaller ones, closer to it.
#[inline(never)]
fn zero_frames_down_to<const N: usize>(floor: usize) {
    let mut chunk = [0u8; N];
    // an opaque use: the zeroing of a chunk that is never read is kept
    std::hint::black_box(&mut chunk);
    if chunk.as_ptr() as usize >= floor + N + FRAME {
        zero_frames_down_to::<N>(floor);
    } else if N > SMALL_CHUNK {
        zero_frames_down_to::<SMALL_CHUNK>(floor);
    }
    // used after the call, so that the call is never made a jump that reuses this frame
    std::hint::black_box(&chunk);
}

/// How far down to zero: the lowest resident page of the stack mapping that holds `here`.
fn floor(here: usize) -> Option<usize> {
    let (start, _) = procfs::mapping_of(here)?;
    // SAFETY: sysconf only reads a system setting.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    let len = (here - start) / page * page;
    let mut resident = vec![0u8; len / page];
    // SAFETY: `start` is page-aligned (a mapping's start), [start, start + len) lies in
    // that one mapping, and `resident` has a byte for each of its pages.
    let rc = unsafe { libc::mincore(start as *mut libc::c_void, len, resident.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    Some(start + resident.iter().position(|r| r & 1 == 1)? * page)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills a frame of `N` bytes with `byte`; returns where it was.
    #[inline(never)]
    fn leave_behind<const N: usize>(byte: u8) -> usize {
        let mut frame = [byte; N];
        std::hint::black_box(&mut frame);
        frame.as_ptr() as usize
    }

    /// [`leave_behind`], a kilobyte further down: where a secret's frame lies when the
    /// checkpoint starts, below the frames the scrubber itself then occupies (which
    /// [`scrub_dead_frames`] does not promise to zero).
    #[inline(never)]
    fn leave_behind_deeper(byte: u8) -> usize {
        let mut spacer = [0u8; 1024];
        std::hint::black_box(&mut spacer);
        let at = leave_behind::<8192>(byte);
        std::hint::black_box(&spacer);
        at
    }

    #[test]
    fn what_a_dead_frame_held_is_zeroed_and_nothing_above() {
        let live = [7u8; 64];
        leave_behind::<{ 64 << 10 }>(0); // the thread has used its stack deeper than below
        let dead = leave_behind_deeper(0xA5);
        scrub_dead_frames();
        // Whole words of the pattern: the frames of this very check reuse the region
        // and leave addresses in it, whose single bytes may happen to be 0xA5.
        let words = dead.next_multiple_of(8);
        let left = (0..8192 / 8 - 1)
            .filter(|i| {
                // SAFETY: this thread's stack, below the current frame: mapped, readable
                // and aligned; the volatile read tells the compiler nothing of its contents.
                let word = unsafe { std::ptr::read_volatile((words + 8 * i) as *const u64) };
                word == 0xA5A5_A5A5_A5A5_A5A5
            })
            .count();
        assert_eq!(left, 0);
        assert_eq!(std::hint::black_box(live), [7u8; 64]);
    }

    #[test]
    fn scrubbing_makes_no_page_of_the_stack_resident() {
        let here = 0u8;
        let here = std::ptr::addr_of!(here) as usize;
        let before = floor(here);
        for _ in 0..10 {
            scrub_dead_frames();
        }
        assert_eq!(floor(here), before);
    }
}
