//! What can go wrong when an application checkpoints itself with the criu engine: one
//! variant per situation a caller may want to tell apart, each message naming the thing
//! and what to do. What the `crac` command meets is `launcher::LaunchError`.

use std::path::PathBuf;
use std::time::Duration;

use crate::sys::criu::CriuMissing;
use crate::sys::fd_info::OpenFd;

/// What can go wrong when a process checkpoints itself with the criu engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting (environment variable or command-line option) is missing or malformed.
    #[error("{setting}: {problem}")]
    Setting {
        /// The variable or option, e.g. `CRAC_LOG`.
        setting: &'static str,
        /// What is wrong with it, and what to set instead.
        problem: String,
    },
    /// No `criu` binary was found.
    #[error("{CRIU_NOT_FOUND}")]
    CriuNotFound,
    /// The image directory holds something a checkpoint must not replace.
    #[error(
        "the image directory {} (CRAC_CHECKPOINT_TO, crac run --image) {problem}; a checkpoint \
         replaces that directory, so point it at a directory of its own",
        dir.display()
    )]
    ImageTarget {
        /// The directory.
        dir: PathBuf,
        /// What it holds.
        problem: String,
    },
    /// The process cannot be checkpointed as it was started; nothing was run.
    #[error(transparent)]
    NotCheckpointable(#[from] NotCheckpointable),
    /// The open-resource check refused the checkpoint.
    #[error("{}", open_fds_message(fds))]
    OpenFds {
        /// Every fd that would have been captured.
        fds: Vec<OpenFd>,
    },
    /// `criu dump` failed; the process was not dumped and continues.
    #[error("criu dump failed; the process was not checkpointed and continues:\n{reason}\nfull CRIU log: {}", log.display())]
    Dump {
        /// The error lines of CRIU's log.
        reason: String,
        /// The whole log.
        log: PathBuf,
    },
    /// The mapped heap (`crac::MappedHeap`) could not be sealed; the process continues
    /// with its heap intact.
    #[error(
        "the mapped heap could not be sealed, so the process was not checkpointed and \
         continues with its heap intact: {problem}"
    )]
    Heap {
        /// Which segment file, and what failed.
        problem: String,
    },
    /// The dump helper failed before CRIU could report.
    #[error(transparent)]
    Helper(#[from] HelperFailure),
    /// Something done to a file or directory failed; the message names it.
    #[error("{action} {}: {source}", path.display())]
    File {
        /// What was being done, e.g. "creating the staging directory".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done, e.g. "opening /dev/null".
        action: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps a failed system call's error, saying what was being done.
    pub(crate) fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { action, source }
    }
}

/// Why a process cannot checkpoint itself as it was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotCheckpointable {
    /// The criu engine needs root.
    #[error(
        "the criu engine needs root here: run the process as root, or as an ordinary user \
         under `crac run` (rootless mode, through a user namespace; `crac doctor` says \
         whether this host allows it)"
    )]
    NotRoot,
    /// PID 1 would be its own dump helper's parent.
    #[error(
        "PID 1 cannot checkpoint itself (its dump helper would be its own child): run it under \
         `crac __init` or another init"
    )]
    Pid1,
    /// The process runs under `crac run`, which takes its images itself.
    #[error(
        "this process runs under `crac run`, which takes its images itself (at crac::ready(), \
         on `crac checkpoint PID`, or periodically at crac::at_consistent_point()); a direct \
         checkpoint_restore() would replace that image and stop the service: call \
         crac::ready() instead (it does nothing outside `crac run`), or start the program \
         without `crac run`"
    )]
    UnderCracRun,
    /// A process-group leader cannot become the session leader CRIU needs.
    #[error(
        "the process leads a process group (as shells start jobs) and so cannot become a session \
         leader, which CRIU needs to restore it without a terminal: start it with `setsid`"
    )]
    ProcessGroupLeader,
    /// Secrets would be wiped while freed memory keeps copies of them: the message names
    /// them and says how to install `crac::ScrubbingAlloc`.
    #[error("{0}")]
    FreedMemoryNotScrubbed(String),
    /// The process runs under a seccomp filter (a container runtime's default), which
    /// CRIU cannot checkpoint through, or lacks a capability the checkpoint needs.
    #[error("{0}")]
    Privileges(String),
    /// The executable was replaced or deleted since the process started (rebuilt or
    /// reinstalled in place): the dump re-executes it, and an image restores only with
    /// the binary it was taken from.
    #[error(
        "the executable {} was replaced or deleted after this process started from it (rebuilt \
         or reinstalled in place): a checkpoint runs the process's own binary to dump it, and \
         that binary is gone, so no image can be taken (nothing was stopped or closed); restart \
         the service from the new binary to checkpoint it (under `crac run`: stop it and start \
         `crac run --replace-invalid`, as its image is of the old binary)",
        .0.display()
    )]
    ExecutableReplaced(std::path::PathBuf),
}

/// How the dump helper failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HelperFailure {
    /// It exited before reporting ready.
    #[error("the dump helper failed to start ({0})")]
    Start(std::process::ExitStatus),
    /// It did not report ready in time.
    #[error("the dump helper did not report ready within {} s", .0.as_secs())]
    NotReady(Duration),
    /// It is gone and no outcome arrived.
    #[error(
        "no outcome arrived: the dump helper is gone and no restorer woke this process (stdio may \
         still be the memfds of the dump, and secret environment variables are unset)"
    )]
    NoOutcome,
}

/// Why no `criu` binary was found (both audiences meet it).
pub(crate) const CRIU_NOT_FOUND: &str = "criu not found on PATH: install CRIU 4.1+ with \
     scripts/install-criu.sh, or set CRAC_CRIU to its path";

/// What is wrong with a `CRAC_CRIU` that names no file.
pub(crate) fn criu_setting_problem(path: &std::path::Path) -> String {
    format!(
        "{}: no such file; point it at a CRIU 4.1+ binary",
        path.display()
    )
}

impl From<CriuMissing> for Error {
    fn from(missing: CriuMissing) -> Error {
        match missing {
            CriuMissing::NoSuchFile(path) => Error::Setting {
                setting: crate::env::CRIU,
                problem: criu_setting_problem(&path),
            },
            CriuMissing::NotFound => Error::CriuNotFound,
        }
    }
}

fn open_fds_message(fds: &[OpenFd]) -> String {
    let mut text = format!(
        "{} open file descriptor{} would be captured in the image:",
        fds.len(),
        if fds.len() == 1 { "" } else { "s" }
    );
    for fd in fds {
        text.push_str(&format!("\n  - {fd}"));
    }
    text.push_str(
        "\nclose them in a resource's before_checkpoint (and reopen in after_restore; a File \
         field: #[crac(reopen)]), claim the ones CRIU can carry with crac::claim_fd, or set \
         CRAC_FD_POLICY (e.g. path:/tmp/*=ignore)",
    );
    text
}
