//! A checkpoint request (`crac checkpoint PID`): the thread that serves it, found by its
//! name, and the answer — a file `.<image>.answer-<number>` beside the image directory,
//! a place both sides see even when the process lives in its own PID namespace, where it
//! cannot see the requester. One line with the outcome, then detail.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The serving thread's name, which the requester looks for in `/proc/PID/task`.
pub(crate) const THREAD: &str = "crac-request";

/// The image was taken and the process keeps running.
pub(crate) const LEFT_RUNNING: &str = "left-running";
/// No image was taken; the detail says why.
pub(crate) const FAILED: &str = "failed";

/// Where the answer to request `number` for `image` is written.
pub(crate) fn answer_path(image: &Path, number: u32) -> PathBuf {
    crate::image::sibling(image, &format!(".answer-{number}"), true)
}

/// Writes an answer, whole: to a private file first, renamed into place, so that the
/// requester never reads half of one. Root writes here: never through a symlink, never
/// readable by others.
pub(crate) fn write_answer(path: &Path, outcome: &str, detail: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(".part");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&partial)
        .and_then(|mut file| file.write_all(format!("{outcome}\n{detail}").as_bytes()))
        .and_then(|()| std::fs::rename(&partial, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// Reads and removes an answer, if it is there: `(outcome, detail)`.
pub(crate) fn take_answer(path: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let _ = std::fs::remove_file(path);
    let (outcome, detail) = text.split_once('\n').unwrap_or((&text, ""));
    Some((outcome.to_string(), detail.to_string()))
}
