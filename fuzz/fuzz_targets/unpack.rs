//! The unpacker faces whatever file it is given (`crac unpack`, `crac restore FILE`): any
//! bytes must be refused or read, never panic, hang or allocate beyond the format's
//! bounds, and every entry it accepts must be one its manifest lists, read to its end.
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run unpack` (from the repository's root).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // `unpack` itself asserts that the entries consumed the file exactly
    let _ = crac_criu::launcher::fuzz::unpack(bytes);
});
