//! The manifest parser faces whatever is in an image directory: any bytes must be refused
//! or parsed, never panic, and every image file name it accepts must be a plain name.
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run manifest` (from the repository's root).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // parse_manifest itself asserts that each accepted name is plain
    if let Ok(names) = crac_criu::launcher::fuzz::parse_manifest(bytes) {
        let mut seen = std::collections::HashSet::new();
        assert!(names.iter().all(|n| seen.insert(n)), "a name accepted twice");
    }
});
