//! Asking a running process to checkpoint itself: `crac checkpoint PID` (the serving
//! side is `checkpoint/request_server.rs`).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::env::CHECKPOINT_TO;
use crate::image;
use crate::launcher::error::{LaunchError, RequestFailure};
use crate::sys::procfs;
use crate::wire::request::{self as answer, THREAD};
use crate::wire::signal::{self, Message};

/// How long a requester waits for the process to answer: the hooks and the dump of a
/// large image take seconds, not minutes.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(300);

/// How a requested checkpoint ended, seen from the requester.
#[derive(Debug)]
pub enum Answer {
    /// The image was written to this directory and the dump stopped the process.
    Checkpointed(PathBuf),
    /// The image was taken and the process keeps running; the text lists any
    /// `after_restore` failures.
    LeftRunning(String),
}

/// Asks process `pid` to checkpoint itself and waits for the answer, at most `deadline`.
pub fn send(pid: libc::pid_t, deadline: Duration) -> Result<Answer, LaunchError> {
    let thread = find_thread(pid)?;
    let image = image_dir(pid)?.ok_or(RequestFailure::NoImageDir(pid))?;
    // random enough to tell this request's answer from a stale one
    let number = (crac_core::instance_id() as u32) ^ std::process::id();
    let answer = answer::answer_path(&image, number);
    let asked_at = SystemTime::now();
    let started = Instant::now();
    signal::send_with(pid, thread, Message::Go, number)
        .map_err(LaunchError::io("signalling the process"))?;
    loop {
        if let Some((outcome, detail)) = answer::take_answer(&answer) {
            return if outcome == answer::LEFT_RUNNING {
                Ok(Answer::LeftRunning(detail))
            } else {
                Err(RequestFailure::Refused {
                    pid,
                    reason: detail,
                }
                .into())
            };
        }
        if !procfs::alive(pid) {
            return if image::published_since(&image, asked_at) {
                Ok(Answer::Checkpointed(image))
            } else {
                Err(RequestFailure::ExitedWithoutImage(pid).into())
            };
        }
        if started.elapsed() > deadline {
            return Err(RequestFailure::NoAnswer {
                pid,
                waited: deadline,
                answer,
            }
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The process's `CRAC_CHECKPOINT_TO`, read from its environment, which only its own user
/// and root may read.
fn image_dir(pid: libc::pid_t) -> Result<Option<PathBuf>, RequestFailure> {
    let environ = match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(environ) => environ,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(permission_denied(pid));
        }
        Err(_) => return Ok(None),
    };
    Ok(environ
        .split(|b| *b == 0)
        .find_map(|var| {
            var.strip_prefix(CHECKPOINT_TO.as_bytes())?
                .strip_prefix(b"=")
        })
        .map(|dir| PathBuf::from(String::from_utf8_lossy(dir).into_owned()))
        // relative to the process's working directory, not ours
        .map(|dir| match std::fs::read_link(format!("/proc/{pid}/cwd")) {
            Ok(cwd) if dir.is_relative() => cwd.join(dir),
            _ => dir,
        }))
}

/// Another user's process: who it runs as, and who asked.
fn permission_denied(pid: libc::pid_t) -> RequestFailure {
    let name = |uid: u32| match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("{} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    };
    let owner = std::fs::metadata(format!("/proc/{pid}"))
        .map(|m| name(std::os::unix::fs::MetadataExt::uid(&m)))
        .unwrap_or_else(|_| "another user".into());
    RequestFailure::PermissionDenied {
        pid,
        owner,
        you: name(nix::unistd::geteuid().as_raw()),
    }
}

fn find_thread(pid: libc::pid_t) -> Result<libc::pid_t, RequestFailure> {
    if !procfs::alive(pid) {
        return Err(RequestFailure::NoProcess(pid));
    }
    procfs::numbered(&format!("/proc/{pid}/task"))
        .into_iter()
        .find(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|comm| comm.trim() == THREAD)
        })
        .ok_or(RequestFailure::NotAccepting(pid))
}
