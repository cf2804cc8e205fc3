//! Private PID namespaces: one image, many concurrent copies.
//!
//! A restore needs the PIDs the image was taken with. An application launched with
//! [`launch`] runs as PID 2 of a namespace of its own, under `crac __init` as PID 1; its
//! image then records PID 2, and every restore runs CRIU as PID 1 of a fresh namespace,
//! where PID 2 is always free — so any number of copies can run at once.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use crate::Error;

/// Set by `__init` for the application: its checkpoints record a private namespace.
pub const ENV: &str = "CRAC_PID_NAMESPACE";

/// The command that runs `program` in a fresh PID and mount namespace (with its own
/// `/proc`), as PID 1 there.
pub fn unshare<S: AsRef<OsStr>>(program: S) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(program);
    cmd
}

/// The command that launches `app` with `args` as PID 2 of a private namespace, under
/// `tool __init` (`tool` is the `crac` executable).
pub fn launch<S: AsRef<OsStr>>(tool: &Path, app: S, args: impl IntoIterator<Item = S>) -> Command {
    let mut cmd = unshare(tool);
    cmd.arg("__init").arg("--").arg(app).args(args);
    cmd
}

/// `__init`: PID 1 of the namespace. Starts the application (PID 2), forwards signals to
/// it, reaps orphans, and exits with its exit code.
pub fn init(app: &OsStr, args: &[std::ffi::OsString]) -> Result<i32, Error> {
    let mut cmd = Command::new(app);
    cmd.args(args).env(ENV, "private");
    let child = crate::supervise::application(&mut cmd)
        .spawn()
        .map_err(|e| Error::Config(format!("cannot start {}: {e}", app.to_string_lossy())))?;
    crate::supervise::wait_for(child.id() as libc::pid_t)
}

/// Whether this process was launched by `__init`.
pub fn private() -> bool {
    std::env::var(ENV).as_deref() == Ok("private")
}
