//! Checkpoint requests from outside the process: `crac checkpoint PID`, the
//! `jcmd PID JDK.checkpoint` of crac-rs.
//!
//! A process opts in with [`checkpoint_on_request`], which starts a thread named
//! `crac-request`. The requester finds that thread in `/proc/PID/task` and signals it
//! directly (no other thread is disturbed), with the number of a pipe it holds open. The
//! thread runs the checkpoint and, if it is still the original process afterwards (left
//! running, or failed), writes the outcome into that pipe through
//! `/proc/<requester>/fd/<n>` and signals back. When the dump stops the process, its
//! death and the new image are the answer.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crac_core::Error as CoreError;

use crate::signal::{self, Message};
use crate::{Error, procfs};

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
        let (message, text) = match crac_core::checkpoint_restore() {
            Ok(restore) if restore.is_restored() => continue, // a new life: nobody is waiting
            Err(CoreError::RestoreFailed { restore, .. }) if restore.is_restored() => continue,
            Ok(_) => (Message::LeftRunning, String::new()),
            Err(CoreError::RestoreFailed { failures, .. }) => {
                (Message::LeftRunning, failures.to_string())
            }
            Err(e) => (Message::DumpFailed, e.to_string()),
        };
        let answer = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{}/fd/{}", request.sender, request.payload));
        if let Ok(mut pipe) = answer {
            let _ = pipe.write_all(text.as_bytes());
        }
        let _ = signal::send(request.sender, request.sender, message);
    }
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
    let image = image_dir(pid);
    let asked_at = SystemTime::now();
    let (mut reader, writer) = pipe().map_err(|e| Error::Io("creating the answer pipe", e))?;
    let mask = signal::block().map_err(|e| Error::Io("blocking the answer signal", e))?;
    let result = (|| {
        signal::send_with(pid, thread, Message::Go, writer.as_raw_fd() as u32)
            .map_err(|e| Error::Io("signalling the process", e))?;
        loop {
            match signal::wait(Some(Duration::from_millis(100))) {
                Ok(Some(answer)) if answer.sender == pid => {
                    drop(writer);
                    let mut text = String::new();
                    let _ = reader.read_to_string(&mut text);
                    return match answer.message {
                        Message::LeftRunning => Ok(Answer::LeftRunning(text)),
                        _ => Err(Error::Helper(format!(
                            "process {pid} did not checkpoint: {text}"
                        ))),
                    };
                }
                Ok(_) => {}
                Err(e) => return Err(Error::Io("waiting for the answer", e)),
            }
            if !procfs::alive(pid) {
                return match image.filter(|dir| published_since(dir, asked_at)) {
                    Some(dir) => Ok(Answer::Checkpointed(dir)),
                    None => Err(Error::Helper(format!(
                        "process {pid} exited without reporting an outcome and wrote no new image"
                    ))),
                };
            }
        }
    })();
    signal::restore_mask(&mask);
    result
}

fn pipe() -> std::io::Result<(std::fs::File, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both fds on success; each is owned exactly once below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh fds nobody else owns.
    unsafe {
        Ok((
            std::fs::File::from_raw_fd(fds[0]),
            OwnedFd::from_raw_fd(fds[1]),
        ))
    }
}

/// The process's `CRAC_CHECKPOINT_TO`, read from its environment.
fn image_dir(pid: libc::pid_t) -> Option<PathBuf> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(b"CRAC_CHECKPOINT_TO="))
        .map(|dir| PathBuf::from(String::from_utf8_lossy(dir).into_owned()))
}

fn published_since(dir: &std::path::Path, since: SystemTime) -> bool {
    std::fs::metadata(dir.join(crate::manifest::FILE_NAME))
        .and_then(|m| m.modified())
        .is_ok_and(|modified| modified >= since)
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
