//! Private PID namespaces: one image, many concurrent copies.
//!
//! A restore needs the PIDs the image was taken with. An application launched with
//! `launch` runs as PID 2 of a namespace of its own, under `crac __init` as PID 1; its
//! image then records PID 2, and every restore runs CRIU as PID 1 of a fresh namespace,
//! where PID 2 is always free — so any number of copies can run at once.

use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use crate::env::{IMAGE_KEY, PID_NAMESPACE, USER_NAMESPACE};
use crate::image::key::HostKey;
use crate::launcher::clocks;
use crate::launcher::error::LaunchError;
use crate::launcher::supervise::{self, Ended};
use crate::sys::{fd, privileges};

/// Set for `__init` by a launcher that wants to learn how the application ended (an
/// exit code alone cannot tell an exit with 137 from a SIGKILL): the number of an fd
/// to write `exited N` or `killed N` to.
pub(crate) use crate::env::INIT_REPORT_FD as REPORT_FD_ENV;

/// The command that runs `program` in a fresh PID and mount namespace (with its own
/// `/proc`), as PID 1 there. Without root, inside a fresh user namespace too, where
/// this user is root ([`privileges::rootless`]): an ordinary user may make the others
/// there.
pub(crate) fn unshare<S: AsRef<OsStr>>(program: S) -> Command {
    let mut cmd = namespaces();
    cmd.arg(program);
    cmd
}

/// As [`unshare`], for CRIU restoring `image`: rootless, in a time namespace too, that
/// keeps the image's monotonic clock as CRIU does as root (`clocks.rs`). Returns whether
/// the clocks are kept (as root, CRIU keeps them itself).
pub(crate) fn unshare_to_restore(criu: &Path, image: &Path) -> (Command, bool) {
    let mut cmd = namespaces();
    let kept = !privileges::rootless() || clocks::keep(&mut cmd, image);
    cmd.arg(criu);
    (cmd, kept)
}

/// In a restore-only container (root without CAP_SYS_ADMIN, with
/// CAP_CHECKPOINT_RESTORE), where CRIU restores in the container's own PID namespace and
/// `crac` is PID 1 there: keeps the PIDs and TIDs of the image in `image` free for it,
/// by moving the namespace's PID counter past them before `crac` starts a thread or a
/// process of its own. Anywhere else, nothing.
///
/// # Safety
///
/// Only while the process has a single thread: first thing in `main`.
pub unsafe fn keep_image_pids_free(image: &Path) -> Result<(), LaunchError> {
    if !privileges::restore_only() || std::process::id() != 1 {
        return Ok(());
    }
    // CRIU keeps one core-TID.img a thread: the image's highest TID, without reading
    // (or trusting) anything else of an image not yet checked.
    let highest = std::fs::read_dir(image)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            let tid = name.to_str()?.strip_prefix("core-")?.strip_suffix(".img")?;
            tid.parse::<i32>().ok()
        })
        .max();
    match highest {
        // SAFETY: single-threaded, as the caller guarantees.
        Some(tid) => unsafe { crate::sys::process::move_pid_counter_past(tid) }
            .map_err(LaunchError::io("keeping the image's PIDs free")),
        None => Ok(()),
    }
}

/// `unshare` with its options, without the program.
fn namespaces() -> Command {
    let mut cmd = Command::new("unshare");
    if privileges::rootless() {
        cmd.args(["--user", "--map-root-user"])
            .env(USER_NAMESPACE, privileges::IN_USER_NAMESPACE);
        // Root there would look for root's key: the dump's action script seals with,
        // and the restore's checks with, this user's.
        if let Ok(key) = HostKey::path() {
            cmd.env(IMAGE_KEY, key);
        }
    }
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"]);
    cmd
}

/// The command that launches `app` with `args` as PID 2 of a private namespace, under
/// `tool __init` (`tool` is the `crac` executable).
pub(crate) fn launch<S: AsRef<OsStr>>(
    tool: &Path,
    app: S,
    args: impl IntoIterator<Item = S>,
) -> Command {
    let mut cmd = unshare(tool);
    cmd.arg("__init").arg("--").arg(app).args(args);
    cmd
}

/// `__init`: PID 1 of the namespace. Starts the application (PID 2) with stdio only,
/// forwards signals to it, reaps orphans, and exits with its exit code.
pub fn init(app: &OsStr, args: &[OsString]) -> Result<i32, LaunchError> {
    let mut cmd = Command::new(app);
    cmd.args(args)
        .env(PID_NAMESPACE, "private")
        .env_remove(REPORT_FD_ENV);
    let child = supervise::application(&mut cmd)
        .spawn()
        .map_err(|source| LaunchError::Start {
            program: app.into(),
            source,
        })?;
    let ended = supervise::wait_for_end(child.id() as libc::pid_t)?;
    let report_fd = std::env::var(REPORT_FD_ENV)
        .ok()
        .and_then(|fd| fd.parse().ok());
    // SAFETY: `crac run` passed this fd for `__init` alone; nothing here opened it.
    if let Some(Ok(mut report)) = report_fd.map(|fd| unsafe { fd::inherited(fd) }) {
        let line = match ended {
            Ended::Exited(code) => format!("exited {code}"),
            Ended::Killed(signal) => format!("killed {signal}"),
        };
        // The launcher falls back on the exit code if the report is lost.
        let _ = report.write_all(line.as_bytes());
    }
    Ok(ended.code())
}
