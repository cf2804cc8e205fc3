//! What can go wrong in the criu engine and in restores: one variant per situation a
//! caller may want to tell apart, each message naming the thing and what to do.

use std::path::PathBuf;
use std::time::Duration;

use crate::sys::criu::CriuMissing;
use crate::sys::fd_info::OpenFd;

/// What can go wrong in the criu engine and in restores.
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
    #[error(
        "criu not found on PATH: install CRIU 4.1+ with scripts/install-criu.sh, or set CRAC_CRIU \
         to its path"
    )]
    CriuNotFound,
    /// A program could not be started.
    #[error("cannot start {}: {source}", program.display())]
    Start {
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
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
    /// The dump helper failed before CRIU could report.
    #[error(transparent)]
    Helper(#[from] HelperFailure),
    /// `criu restore` failed.
    #[error("criu restore failed:\n{reason}\nfull CRIU log: {}", log.display())]
    Restore {
        /// The error lines of CRIU's log.
        reason: String,
        /// The whole log.
        log: PathBuf,
    },
    /// The image cannot be restored here; nothing was touched.
    #[error("cannot restore {}: {problem}", dir.display())]
    Image {
        /// The image directory.
        dir: PathBuf,
        /// What is wrong, and what to do.
        problem: String,
    },
    /// The image's contents are not what the dump wrote (a file or the manifest damaged,
    /// edited, added or missing); nothing was restored.
    #[error(
        "cannot restore {}: the image was damaged or changed after the dump: {problem}; take a \
         new checkpoint",
        dir.display()
    )]
    Damaged {
        /// The image directory.
        dir: PathBuf,
        /// Which file, and how it differs.
        problem: String,
    },
    /// A PID or TID of the image is taken on this host.
    #[error(
        "PID {id} recorded in the image is in use by `{holder}`: a restore needs the original PID and \
         thread IDs free; stop that process (or restore in a fresh PID namespace)"
    )]
    PidInUse {
        /// The PID or TID.
        id: i32,
        /// The command name of the process holding it.
        holder: String,
    },
    /// `crac checkpoint PID` could not get the process checkpointed.
    #[error(transparent)]
    Request(#[from] RequestFailure),
    /// A program to run was not found.
    #[error("cannot find the program {}", .0.display())]
    ProgramNotFound(PathBuf),
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
    #[error("{0}: {1}")]
    Io(&'static str, #[source] std::io::Error),
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
        source: Box<Error>,
        /// What is missing, what for, and how to grant it.
        problem: String,
    },
}

/// Why a process cannot checkpoint itself as it was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotCheckpointable {
    /// The criu engine needs root.
    #[error("the criu engine needs root: run the process as root")]
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

impl From<CriuMissing> for Error {
    fn from(missing: CriuMissing) -> Error {
        match missing {
            CriuMissing::NoSuchFile(path) => Error::Setting {
                setting: crate::env::CRIU,
                problem: format!(
                    "{}: no such file; point it at a CRIU 4.1+ binary",
                    path.display()
                ),
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
