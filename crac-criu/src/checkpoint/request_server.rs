//! Serving `crac checkpoint PID`, the `jcmd PID JDK.checkpoint` of crac-rs.
//!
//! A process opts in with [`checkpoint_on_request`], which starts a thread named
//! `crac-request`. The requester finds that thread in `/proc/PID/task` and signals it
//! directly (no other thread is disturbed) with a random request number. The thread runs
//! the checkpoint and, if it is still the original process afterwards (left running, or
//! failed), writes the outcome as the request's answer (see `wire/request.rs`). When the
//! dump stops the process, its death and the new image are the answer.
//!
//! One request is served at a time. Another that arrives before its answer is written
//! is refused at once with the reason, not queued: when the first stops the process
//! there is nothing left to serve it, and requests made at the same moment want the
//! same checkpoint. Whoever needs a later one asks again.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use crac_core::Error as CoreError;
use crac_core::engine::{CheckpointOptions, Origin};

use crate::env::CHECKPOINT_TO;
use crate::wire::request::{self as answer, THREAD};
use crate::wire::signal::{self, Message};

/// Starts the thread that serves `crac checkpoint PID` and returns once a requester can
/// find it; later calls return the first call's result.
pub fn checkpoint_on_request() -> std::io::Result<()> {
    static STARTED: OnceLock<Result<(), std::io::ErrorKind>> = OnceLock::new();
    let started = STARTED.get_or_init(|| {
        // blocked before the thread exists, so no request can arrive unblocked
        let mask = signal::block().map_err(|e| e.kind())?;
        let (running, started) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || {
                // std has named the thread by now: requesters find it by that name
                let _ = running.send(());
                serve()
            });
        // Left blocked in this thread if it cannot be put back: harmless, its stray
        // signals are ignored anyway; the server runs either way.
        let _ = signal::restore_mask(&mask);
        spawned.map_err(|e| e.kind())?;
        started.recv().map_err(|_| std::io::ErrorKind::Other)
    });
    started.map_err(std::io::Error::from)
}

/// Why a request is refused while another is served.
const BUSY: &str = "a checkpoint requested by another `crac checkpoint` is in progress; ask \
                    again once it has finished";

/// Answers request `number`, which arrived while another was being served: refused.
pub(crate) fn refuse_busy(number: u32) {
    answer(number, answer::FAILED, BUSY);
}

fn serve() {
    loop {
        let Ok(Some(request)) = signal::wait(None) else {
            continue;
        };
        if request.message != Message::Go {
            continue;
        }
        let asked = CheckpointOptions::new(Origin::Request);
        let (outcome, text) = match crac_core::checkpoint_restore_with(asked) {
            Ok(restore) if restore.is_restored() => continue, // a new life: nobody is waiting
            Err(CoreError::RestoreFailed { restore, .. }) if restore.is_restored() => continue,
            Ok(_) => (answer::LEFT_RUNNING, String::new()),
            Err(CoreError::RestoreFailed { failures, .. }) => {
                (answer::LEFT_RUNNING, failures.to_string())
            }
            Err(e) => (answer::FAILED, e.to_string()),
        };
        // those that came while the hooks ran after the dump
        while let Ok(Some(late)) = signal::wait(Some(Duration::ZERO)) {
            if late.message == Message::Go {
                refuse_busy(late.payload);
            }
        }
        answer(request.payload, outcome, &text);
    }
}

fn answer(number: u32, outcome: &str, text: &str) {
    if let Some(dir) = std::env::var_os(CHECKPOINT_TO) {
        let path = answer::answer_path(Path::new(&dir), number);
        // Nobody to tell if this fails: the requester's deadline reports it.
        let _ = answer::write_answer(&path, outcome, text);
    }
}
