//! Checkpoint requests from outside the process: `crac checkpoint PID`, the
//! `jcmd PID JDK.checkpoint` of crac-rs.
//!
//! A process opts in with [`checkpoint_on_request`], which starts a thread named
//! `crac-request`. The requester finds that thread in `/proc/PID/task` and signals it
//! directly (no other thread is disturbed) with a random request number. The thread runs
//! the checkpoint and, if it is still the original process afterwards (left running, or
//! failed), writes the outcome to `.<image>.answer-<number>` beside its image directory —
//! a place both sides see even when the process lives in its own PID namespace, where it
//! cannot see the requester. When the dump stops the process, its death and the new
//! image are the answer.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crac_core::Error as CoreError;

use crate::signal::{self, Message};
use crate::{Error, image, procfs};

const THREAD: &str = "crac-request";

/// Starts the thread that serves `crac checkpoint PID`; later calls return the first
/// call's result.
pub fn checkpoint_on_request() -> std::io::Result<()> {
    static STARTED: OnceLock<Result<(), std::io::ErrorKind>> = OnceLock::new();
    let started = STARTED.get_or_init(|| {
        // blocked before the thread exists, so no request can arrive unblocked
        let mask = signal::block().map_err(|e| e.kind())?;
        let spawned = std::thread::Builder::new().name(THREAD.into()).spawn(serve);
        signal::restore_mask(&mask);
        spawned.map(|_| ()).map_err(|e| e.kind())
    });
    started.map_err(std::io::Error::from)
}

fn serve() {
    loop {
        let Ok(Some(request)) = signal::wait(None) else {
            continue;
        };
        if request.message != Message::Go {
            continue;
        }
        let (outcome, text) = match crac_core::checkpoint_restore() {
            Ok(restore) if restore.is_restored() => continue, // a new life: nobody is waiting
            Err(CoreError::RestoreFailed { restore, .. }) if restore.is_restored() => continue,
            Ok(_) => (LEFT_RUNNING, String::new()),
            Err(CoreError::RestoreFailed { failures, .. }) => (LEFT_RUNNING, failures.to_string()),
            Err(e) => (FAILED, e.to_string()),
        };
        if let Some(dir) = std::env::var_os("CRAC_CHECKPOINT_TO") {
            let path = answer_file(std::path::Path::new(&dir), request.payload);
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = write_answer(&path, &format!("{outcome}\n{text}"));
        }
    }
}

const LEFT_RUNNING: &str = "left-running";
const FAILED: &str = "failed";

fn answer_file(image: &std::path::Path, number: u32) -> PathBuf {
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    image.with_file_name(format!(".{name}.answer-{number}"))
}

/// Root writes here: never through a symlink, never readable by others.
fn write_answer(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .write_all(text.as_bytes())
}

/// How a requested checkpoint ended, seen from the requester.
#[derive(Debug)]
pub enum Answer {
    /// The image was written to this directory and the dump stopped the process.
    Checkpointed(PathBuf),
    /// The image was taken and the process keeps running; the text lists any
    /// `after_restore` failures.
    LeftRunning(String),
}

/// Asks process `pid` to checkpoint itself and waits for the answer.
pub fn send(pid: libc::pid_t) -> Result<Answer, Error> {
    let thread = find_thread(pid)?;
    let image = image_dir(pid).ok_or_else(|| {
        Error::Config(format!(
            "process {pid} has no CRAC_CHECKPOINT_TO: it cannot be checkpointed"
        ))
    })?;
    // random enough to tell this request's answer from a stale one
    let number = (crac_core::instance_id() as u32) ^ std::process::id();
    let answer = answer_file(&image, number);
    let asked_at = SystemTime::now();
    signal::send_with(pid, thread, Message::Go, number)
        .map_err(|e| Error::Io("signalling the process", e))?;
    loop {
        if let Ok(text) = std::fs::read_to_string(&answer) {
            let _ = std::fs::remove_file(&answer);
            let (outcome, detail) = text.split_once('\n').unwrap_or((&text, ""));
            return match outcome {
                LEFT_RUNNING => Ok(Answer::LeftRunning(detail.to_string())),
                _ => Err(Error::Helper(format!(
                    "process {pid} did not checkpoint: {detail}"
                ))),
            };
        }
        if !procfs::alive(pid) {
            return if image::published_since(&image, asked_at) {
                Ok(Answer::Checkpointed(image))
            } else {
                Err(Error::Helper(format!(
                    "process {pid} exited without reporting an outcome and wrote no new image"
                )))
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The process's `CRAC_CHECKPOINT_TO`, read from its environment.
fn image_dir(pid: libc::pid_t) -> Option<PathBuf> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(b"CRAC_CHECKPOINT_TO="))
        .map(|dir| PathBuf::from(String::from_utf8_lossy(dir).into_owned()))
        // relative to the process's working directory, not ours
        .map(|dir| match std::fs::read_link(format!("/proc/{pid}/cwd")) {
            Ok(cwd) if dir.is_relative() => cwd.join(dir),
            _ => dir,
        })
}

fn find_thread(pid: libc::pid_t) -> Result<libc::pid_t, Error> {
    if !procfs::alive(pid) {
        return Err(Error::Config(format!("no process {pid}")));
    }
    procfs::numbered(&format!("/proc/{pid}/task"))
        .into_iter()
        .find(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|comm| comm.trim() == THREAD)
        })
        .ok_or_else(|| {
            Error::Config(format!(
                "process {pid} does not accept checkpoint requests: it must call \
                 crac::checkpoint_on_request() (and be built with crac's criu engine)"
            ))
        })
}
