//! The image's clocks, kept in rootless mode. crac promises that `Instant`
//! (CLOCK_MONOTONIC, and CLOCK_BOOTTIME) does not count the time spent in the image: as
//! root CRIU restores the process in a time namespace whose offsets make its clocks go
//! on from where the dump left them. `criu restore --unprivileged` skips that (measured
//! with CRIU 4.2: monotonic time jumped by the downtime), but a user namespace may make
//! a time namespace of its own: the restore's `unshare` makes one, with the offsets
//! computed here from the clocks CRIU recorded at dump (`timens-0.img`).
//!
//! `unshare` takes whole seconds: each offset is rounded up, so a restored clock never
//! goes back, and moves on by less than a second more than the restore took.

use std::io::Read as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::sys::fs::open_regular;

/// Where CRIU records the clocks of the dumped process (its time namespace's view).
const TIMENS_IMAGE: &str = "timens-0.img";

/// CLOCK_MONOTONIC and CLOCK_BOOTTIME as the dump saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Clocks {
    monotonic: Duration,
    boottime: Duration,
}

/// Adds to `unshare` (before the program) a time namespace whose clocks start where the
/// image's stopped; returns whether it did (the image records its clocks, and they are
/// read). Without it the restored clocks run on from the host's.
pub(crate) fn keep(unshare: &mut Command, image: &Path) -> bool {
    let Some(dumped) = read(&image.join(TIMENS_IMAGE)) else {
        return false;
    };
    let (Some(monotonic), Some(boottime)) = (
        offset(dumped.monotonic, now(libc::CLOCK_MONOTONIC)),
        offset(dumped.boottime, now(libc::CLOCK_BOOTTIME)),
    ) else {
        return false;
    };
    unshare
        .arg("--time")
        .arg(format!("--monotonic={monotonic}"))
        .arg(format!("--boottime={boottime}"));
    true
}

/// Whole seconds to add to `now` to reach `then`, rounded up.
fn offset(then: Duration, now: Option<Duration>) -> Option<i64> {
    let (then, now) = (then.as_nanos() as i128, now?.as_nanos() as i128);
    let nanos = then - now;
    let secs = nanos.div_euclid(1_000_000_000) + i128::from(nanos.rem_euclid(1_000_000_000) != 0);
    i64::try_from(secs).ok()
}

fn now(clock: libc::clockid_t) -> Option<Duration> {
    let id = nix::time::ClockId::from_raw(clock);
    let ts = nix::time::clock_gettime(id).ok()?;
    Some(Duration::new(
        u64::try_from(ts.tv_sec()).ok()?,
        u32::try_from(ts.tv_nsec()).ok()?,
    ))
}

/// The clocks in CRIU's `timens-0.img`: two magic numbers, the entry's size, then a
/// protobuf `TimensEntry { timespec_s monotonic = 1; timespec_s boottime = 2; }`,
/// `timespec_s { uint64 tv_sec = 1; uint64 tv_nsec = 2; }`.
fn read(path: &Path) -> Option<Clocks> {
    let mut bytes = Vec::new();
    open_regular(path)
        .ok()?
        .take(256)
        .read_to_end(&mut bytes)
        .ok()?;
    let size = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
    let entry = bytes.get(12..12 + size)?;
    let mut clocks = [None, None];
    for (field, value) in fields(entry)? {
        if let (1 | 2, Wire::Bytes(timespec)) = (field, value) {
            let mut time = (0, 0);
            for (field, value) in fields(timespec)? {
                match (field, value) {
                    (1, Wire::Varint(secs)) => time.0 = secs,
                    (2, Wire::Varint(nanos)) => time.1 = u32::try_from(nanos).ok()?,
                    _ => {}
                }
            }
            clocks[field as usize - 1] = Some(Duration::new(time.0, time.1));
        }
    }
    Some(Clocks {
        monotonic: clocks[0]?,
        boottime: clocks[1]?,
    })
}

/// A protobuf field's value, of the two wire types a `TimensEntry` has.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The fields of a protobuf message; `None` if it is malformed or has another type.
fn fields(mut bytes: &[u8]) -> Option<Vec<(u64, Wire<'_>)>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let value = match key & 7 {
            0 => Wire::Varint(varint(&mut bytes)?),
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                let (value, rest) = bytes.split_at_checked(len)?;
                bytes = rest;
                Wire::Bytes(value)
            }
            _ => return None,
        };
        out.push((key >> 3, value));
    }
    Some(out)
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_timens_image_is_read() {
        // written by CRIU 4.2.1: monotonic 10357.294598356 s, boottime 10357.294598918 s
        let image = [
            0x19, 0x43, 0x56, 0x54, 0x33, 0x44, 0x11, 0x43, 0x16, 0x00, 0x00, 0x00, 0x0a, 0x09,
            0x08, 0xf5, 0x50, 0x10, 0xd4, 0xed, 0xf0, 0x8c, 0x01, 0x12, 0x09, 0x08, 0xf5, 0x50,
            0x10, 0x86, 0xee, 0xf0, 0x8c, 0x01,
        ];
        let dir = std::env::temp_dir().join(format!("crac-clocks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(TIMENS_IMAGE), image).unwrap();
        let clocks = read(&dir.join(TIMENS_IMAGE)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(clocks.monotonic.as_secs(), 10357);
        assert_eq!(clocks.boottime.as_secs(), 10357);
        assert!(clocks.boottime > clocks.monotonic);
        assert_eq!(read(Path::new("/nonexistent/timens-0.img")), None);
    }

    #[test]
    fn offsets_round_up_so_that_clocks_never_go_back() {
        let s = Duration::from_secs;
        assert_eq!(offset(s(10), Some(s(100))), Some(-90));
        assert_eq!(
            offset(Duration::from_millis(10_500), Some(s(100))),
            Some(-89)
        );
        assert_eq!(
            offset(Duration::from_millis(100_001), Some(s(100))),
            Some(1)
        );
        assert_eq!(offset(s(10), None), None);
    }
}
