//! What can go wrong in what the `crac` command runs — a restore, `crac run`, an
//! inspection, a checkpoint request — each message naming the thing and what to do.
//! An application never meets these: its errors are `crate::Error`.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{CRIU_NOT_FOUND, criu_setting_problem};
use crate::image::ImageRefusal;
use crate::sys::criu::CriuMissing;

/// What can go wrong in the launcher.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// A setting (environment variable or command-line option) is missing or malformed.
    #[error("{setting}: {problem}")]
    Setting {
        /// The variable or option, e.g. `--image`.
        setting: &'static str,
        /// What is wrong with it, and what to set instead.
        problem: String,
    },
    /// No `criu` binary was found.
    #[error("{CRIU_NOT_FOUND}")]
    CriuNotFound,
    /// A program could not be started.
    #[error("cannot start {}: {source}", program.display())]
    Start {
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A program to run was not found.
    #[error("cannot find the program {}", program.display())]
    ProgramNotFound {
        /// The program, as given.
        program: PathBuf,
    },
    /// The image cannot be restored here; nothing was touched.
    #[error(transparent)]
    Image(#[from] ImageRefusal),
    /// The directory `crac run` checkpoints into holds something a checkpoint must not
    /// replace: the refusal the checkpointing process would give
    /// ([`crate::Error::ImageTarget`]), said before it starts.
    #[error(transparent)]
    ImageTarget(crate::Error),
    /// The image's check was cut short: the restore's timeout passed, or a stop signal
    /// came, before it ended. Nothing was started.
    #[error("cannot restore {}: {why}; nothing was started", dir.display())]
    Unchecked {
        /// The image directory.
        dir: PathBuf,
        /// What cut the check short, and the setting that allows more time.
        why: String,
    },
    /// `crac pack` or `crac unpack` refused or failed; nothing was placed.
    #[error("cannot {action} {}: {problem}", path.display())]
    Packing {
        /// `pack` or `unpack`.
        action: &'static str,
        /// The image directory packed, or the packed file unpacked.
        path: PathBuf,
        /// What is wrong, and what to do.
        problem: String,
    },
    /// `criu restore` failed.
    #[error("criu restore failed:\n{reason}\nfull CRIU log: {}", log.display())]
    Restore {
        /// The error lines of CRIU's log.
        reason: String,
        /// The whole log.
        log: PathBuf,
    },
    /// `crac checkpoint PID` could not get the process checkpointed.
    #[error(transparent)]
    Request(#[from] RequestFailure),
    /// Something done to a file or directory failed; the message names it.
    #[error("{action} {}: {source}", path.display())]
    File {
        /// What was being done, e.g. "locking".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done, e.g. "waiting for the restored process".
        action: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The process lacks capabilities CRIU needs, or runs under a seccomp filter: the
    /// message names each, and how to grant it.
    #[error("{problem}")]
    Privileges {
        /// What is missing, what for, and how to grant it.
        problem: String,
    },
    /// A restore failed in a process that lacks capabilities a restore needs.
    #[error("{source}\n{problem}")]
    WithoutPrivileges {
        /// The failure.
        source: Box<LaunchError>,
        /// What is missing, what for, and how to grant it.
        problem: String,
    },
}

impl LaunchError {
    /// Wraps a failed system call's error, saying what was being done.
    pub fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> LaunchError {
        move |source| LaunchError::Io { action, source }
    }
}

/// Why `crac checkpoint PID` did not get a checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestFailure {
    /// No such process.
    #[error("no process {0}")]
    NoProcess(i32),
    /// The process has no image directory to write to.
    #[error("process {0} has no CRAC_CHECKPOINT_TO: it cannot be checkpointed")]
    NoImageDir(i32),
    /// The process belongs to another user: only it and root may ask for a checkpoint.
    #[error(
        "permission denied: process {pid} runs as {owner} and you are {you}; only its own user \
         and root may ask it to checkpoint: run `crac checkpoint {pid}` as one of them (e.g. \
         with sudo)"
    )]
    PermissionDenied {
        /// The process.
        pid: i32,
        /// The user it runs as.
        owner: String,
        /// The user who asked.
        you: String,
    },
    /// The process does not serve requests.
    #[error(
        "process {0} does not accept checkpoint requests: it must call \
         crac::checkpoint_on_request() (and be built with crac's criu engine)"
    )]
    NotAccepting(i32),
    /// The process answered that it did not checkpoint.
    #[error("process {pid} did not checkpoint: {reason}")]
    Refused {
        /// The process.
        pid: i32,
        /// Its error.
        reason: String,
    },
    /// The process exited without an answer and without a new image.
    #[error("process {0} exited without reporting an outcome and wrote no new image")]
    ExitedWithoutImage(i32),
    /// No answer within the deadline.
    #[error(
        "process {pid} did not answer within {} s (its answer file {} never appeared); it may be \
         stuck in a hook, or unable to write there",
        waited.as_secs(),
        answer.display()
    )]
    NoAnswer {
        /// The process.
        pid: i32,
        /// How long the requester waited.
        waited: Duration,
        /// Where the answer was expected.
        answer: PathBuf,
    },
}

impl From<CriuMissing> for LaunchError {
    fn from(missing: CriuMissing) -> LaunchError {
        match missing {
            CriuMissing::NoSuchFile(path) => LaunchError::Setting {
                setting: crate::env::CRIU,
                problem: criu_setting_problem(&path),
            },
            CriuMissing::NotFound => LaunchError::CriuNotFound,
        }
    }
}
