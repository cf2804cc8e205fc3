//! Checkpoint requests from outside the process: `crac checkpoint PID`, the
//! `jcmd PID JDK.checkpoint` of crac-rs.
//!
//! A process opts in with [`checkpoint_on_request`], which starts a thread named
//! `crac-request`. The requester finds that thread in `/proc/PID/task` and signals it
//! directly, so no other thread is disturbed. The thread runs
//! `crac::checkpoint_restore()` and, if the process is still the original one
//! afterwards (left running, or failed), writes the outcome to a file named after the
//! requester and signals it back. When the dump kills the process, that death is the
//! requester's answer.

use std::path::PathBuf;
use std::time::Duration;

use crate::Error;
use crate::signal::{self, Message};

const THREAD: &str = "crac-request";

/// Starts the thread that serves `crac checkpoint PID`. Idempotent.
pub fn checkpoint_on_request() -> std::io::Result<()> {
    static STARTED: std::sync::Once = std::sync::Once::new();
    let mut result = Ok(());
    STARTED.call_once(|| {
        result = std::thread::Builder::new()
            .name(THREAD.into())
            .spawn(serve)
            .map(|_| ());
    });
    result
}

fn serve() {
    if signal::block().is_err() {
        return;
    }
    loop {
        let Ok(Some(request)) = signal::wait(None) else {
            continue;
        };
        if request.message != Message::Go {
            continue;
        }
        let (message, text) = match crac_core::checkpoint_restore() {
            Ok(restore) if restore.is_restored() => continue, // a new life: nobody is waiting
            Ok(_) => (Message::LeftRunning, "left running".to_string()),
            Err(e) => (Message::DumpFailed, e.to_string()),
        };
        let _ = std::fs::write(result_file(request.sender), text);
        let _ = signal::send(request.sender, request.sender, message);
    }
}

fn result_file(requester: libc::pid_t) -> PathBuf {
    std::env::temp_dir().join(format!("crac-checkpoint-{requester}.result"))
}

/// How a requested checkpoint ended, seen from the requester.
#[derive(Debug)]
pub enum Answer {
    /// The image was taken and the process was stopped by the dump.
    Checkpointed,
    /// The image was taken and the process keeps running.
    LeftRunning,
}

/// Asks process `pid` to checkpoint itself and waits for the answer.
pub fn send(pid: libc::pid_t) -> Result<Answer, Error> {
    let thread = find_thread(pid)?;
    let me = std::process::id() as libc::pid_t;
    let mask = signal::block().map_err(|e| Error::Io("blocking the answer signal", e))?;
    let result = (|| {
        signal::send(pid, thread, Message::Go)
            .map_err(|e| Error::Io("signalling the process", e))?;
        loop {
            match signal::wait(Some(Duration::from_millis(100))) {
                Ok(Some(answer)) if answer.sender == pid => {
                    let file = result_file(me);
                    let text = std::fs::read_to_string(&file).unwrap_or_default();
                    let _ = std::fs::remove_file(&file);
                    return match answer.message {
                        Message::LeftRunning => Ok(Answer::LeftRunning),
                        _ => Err(Error::Helper(format!(
                            "process {pid} refused the checkpoint: {text}"
                        ))),
                    };
                }
                Ok(_) => {}
                Err(e) => return Err(Error::Io("waiting for the answer", e)),
            }
            if !alive(pid) {
                return Ok(Answer::Checkpointed);
            }
        }
    })();
    signal::restore_mask(&mask);
    result
}

/// Running or stopped; a zombie (dumped and killed, not yet reaped) counts as gone.
fn alive(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            Some(
                stat.rsplit_once(')')?
                    .1
                    .trim_start()
                    .starts_with(['Z', 'X']),
            )
        })
        .is_some_and(|dead| !dead)
}

fn find_thread(pid: libc::pid_t) -> Result<libc::pid_t, Error> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| Error::Config(format!("no process {pid}: {e}")))?;
    tasks
        .filter_map(|t| t.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
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
