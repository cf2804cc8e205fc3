//! Text built without allocating: the allocator formats file names and paths while it
//! holds its own lock, where a `String` would call back into it.

use std::ffi::CStr;
use std::fmt;

/// A NUL-terminated string of at most `N - 1` bytes, on the stack or in a static.
#[derive(Clone, Copy)]
pub(super) struct Text<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    pub(super) const fn new() -> Self {
        Text {
            bytes: [0; N],
            len: 0,
        }
    }

    /// `bytes` as a text, if they fit and hold no NUL.
    pub(super) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut text = Self::new();
        text.push(bytes).then_some(text)
    }

    /// Appends `more`; false (and the text unchanged) if it does not fit or holds a NUL.
    pub(super) fn push(&mut self, more: &[u8]) -> bool {
        if self.len + more.len() >= N || more.contains(&0) {
            return false;
        }
        self.bytes[self.len..self.len + more.len()].copy_from_slice(more);
        self.len += more.len();
        self.bytes[self.len] = 0;
        true
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub(super) fn as_c_str(&self) -> &CStr {
        CStr::from_bytes_with_nul(&self.bytes[..=self.len]).unwrap_or(c"")
    }

    pub(super) fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            self.bytes[len] = 0;
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}

impl<const N: usize> fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.push(s.as_bytes()) {
            Ok(())
        } else {
            Err(fmt::Error)
        }
    }
}

impl<const N: usize> fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(self.as_bytes()), f)
    }
}

/// `name` with a NUL appended, as a constant: the environment's names for `getenv`.
pub(super) const fn nul_terminated<const N: usize>(name: &str) -> [u8; N] {
    let mut out = [0; N];
    let bytes = name.as_bytes();
    assert!(bytes.len() + 1 == N, "N must be the name's length plus one");
    let mut i = 0;
    while i < bytes.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
}
