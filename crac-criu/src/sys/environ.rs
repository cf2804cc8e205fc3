//! The C environment in place: where libc keeps a variable's value, and the block of
//! `NAME=value` strings the kernel put on the stack at `exec` (what `/proc/PID/environ`
//! reads). Changing the environment is sound only while no other thread reads or writes
//! it; the functions that do rely on the contract crac-rs states for the application
//! (docs/uniqueness.md, secret environment variables): its threads leave the environment alone while
//! a checkpoint or restore runs.

use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;

use crate::sys::procfs;

/// Whether `name` is set, without copying its value.
pub(crate) fn is_set(name: &CStr) -> bool {
    // SAFETY: a NUL-terminated name; getenv only reads the environment.
    !unsafe { libc::getenv(name.as_ptr()) }.is_null()
}

/// Removes `name` from the environment and overwrites its value with zeros where libc
/// kept it and in the initial block. Another value `name` had earlier in the process's
/// life (glibc never frees the strings `setenv` made) is out of reach.
pub(crate) fn wipe(name: &CStr) {
    // SAFETY: a NUL-terminated name; the value, if any, is NUL-terminated and stays
    // allocated after `unsetenv` (libc never frees environment strings).
    let value = unsafe { libc::getenv(name.as_ptr()) };
    let len = if value.is_null() {
        0
    } else {
        // SAFETY: getenv's result is NUL-terminated.
        unsafe { CStr::from_ptr(value) }.to_bytes().len()
    };
    // SAFETY: the application's threads leave the environment alone meanwhile (module doc).
    unsafe { std::env::remove_var(OsStr::from_bytes(name.to_bytes())) };
    // `putenv` may have put a string literal in the environment: read-only, never in an
    // image (it is part of the executable's file), and not to be written.
    if len > 0 && procfs::writable(value as usize, len) {
        // SAFETY: `len` writable bytes, no longer in the environment, that nothing else
        // uses as a Rust reference.
        unsafe { value.cast::<u8>().write_bytes(0, len) };
    }
    let Some((start, end)) = procfs::env_block() else {
        return;
    };
    if end > start && procfs::writable(start, end - start) {
        // SAFETY: the process's initial environment block, writable (checked) for as long
        // as the process lives; no Rust reference to it exists elsewhere.
        let block = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
        zero_values(block, name.to_bytes());
    }
}

/// Sets `name` to `value`.
pub(crate) fn set(name: &str, value: &OsStr) {
    // SAFETY: the application's threads leave the environment alone meanwhile (module doc).
    unsafe { std::env::set_var(name, value) };
}

/// The first value of `name` in a NUL-separated `NAME=value` block (as
/// `/proc/PID/environ` reads), as getenv would find it.
pub(crate) fn value_in_block<'a>(block: &'a [u8], name: &str) -> Option<&'a [u8]> {
    block
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(name.as_bytes())?.strip_prefix(b"="))
}

/// Zeroes the value of every `name=value` entry in a NUL-separated block.
fn zero_values(block: &mut [u8], name: &[u8]) {
    for entry in block.split_mut(|&b| b == 0) {
        if entry.len() > name.len() && entry.starts_with(name) && entry[name.len()] == b'=' {
            entry[name.len() + 1..].fill(0);
        }
    }
}

/// A variable name as C needs it, or why it cannot be one.
pub(crate) fn c_name(name: &str) -> Result<CString, String> {
    if name.is_empty() || name.contains('=') {
        return Err(format!(
            "{name:?} is not an environment variable name (empty, or contains `=`)"
        ));
    }
    CString::new(name).map_err(|_| format!("{name:?} contains a NUL byte"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_variables_values_are_zeroed() {
        let mut block = b"KEY=one\0KEYS=two\0OTHER=KEY=x\0KEY=three\0KEY=\0".to_vec();
        zero_values(&mut block, b"KEY");
        assert_eq!(
            block,
            b"KEY=\0\0\0\0KEYS=two\0OTHER=KEY=x\0KEY=\0\0\0\0\0\0KEY=\0".to_vec()
        );
    }

    #[test]
    fn the_first_value_is_found_as_getenv_would() {
        let block = b"A=1\0KEY=first=x\0KEY=second\0";
        assert_eq!(value_in_block(block, "KEY"), Some(&b"first=x"[..]));
        assert_eq!(value_in_block(block, "KE"), None);
        assert_eq!(value_in_block(block, "B"), None);
    }

    #[test]
    fn names_are_checked() {
        assert!(c_name("DB_PASSWORD").is_ok());
        for bad in ["", "A=B", "A\0B"] {
            assert!(c_name(bad).is_err(), "{bad:?}");
        }
    }
}
