//! Restore, the restorer's side: validate the image, run `criu restore`, wake the
//! restored process, forward signals, and exit with its exit code.
//!
//! CRIU is asked to (a) substitute the restorer's stdio for the image's stdio memfds,
//! (b) run this executable as its `--action-script`, which at `post-resume` sends the
//! process its `Restored` message, and (c) `--exec-cmd` this executable as `__wait`, which
//! becomes the restored process's parent and reports its real exit code.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::criu::STDIO_MEMFDS;
use crate::manifest::Manifest;
use crate::signal::{self, Message};
use std::os::unix::process::ExitStatusExt;

use crate::supervise;
use crate::{Error, config, criu, image, namespace};

/// Environment through which the action script finds the image being restored.
const IMAGE_ENV: &str = "CRAC_RESTORE_IMAGE";
/// A file the action script creates at `post-resume`: proof that CRIU restored the
/// process (its exit status alone cannot be told from the restored process's).
const RESUMED_ENV: &str = "CRAC_RESTORE_RESUMED";

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Arguments and environment for the restored process.
    pub given: crate::restore_args::RestoreArgs,
    /// Where CRIU writes its restore log; default: a file in the temp directory.
    pub log: Option<PathBuf>,
    /// CRIU log verbosity (0–4), default 2.
    pub log_level: Option<u8>,
}

/// Restores the image in `dir` and waits for the restored process; returns its exit code
/// (128 + signal if it was killed). `tool` is the `crac` executable CRIU calls back.
pub fn restore(dir: &Path, tool: &Path, options: &RestoreOptions) -> Result<i32, Error> {
    let began = std::time::SystemTime::now();
    // CRIU changes into the image directory before it calls back: relative paths would
    // point elsewhere by then.
    let absolute = |p: &Path| {
        std::path::absolute(p).map_err(|e| Error::Config(format!("{}: {e}", p.display())))
    };
    let dir = &absolute(dir)?;
    let options = &RestoreOptions {
        log: options.log.as_deref().map(absolute).transpose()?,
        ..options.clone()
    };
    let manifest = image::validate(dir)?;
    check_ids_free(&manifest)?;
    let criu = config::criu_binary()?;
    let log = options.log.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("crac-restore-{}.log", std::process::id()))
    });
    let resumed = log.with_extension("resumed");
    let _ = std::fs::remove_file(&resumed);
    // An image from a private namespace is restored in a fresh one, CRIU as its PID 1.
    let mut cmd = if manifest.private_pid_namespace {
        namespace::unshare(&criu)
    } else {
        Command::new(&criu)
    };
    cmd.arg("restore")
        .arg("-D")
        .arg(dir)
        .arg("-o")
        .arg(&log)
        .arg(format!("-v{}", options.log_level.unwrap_or(2)))
        .args(criu::restore_options(&manifest.restore_options))
        .arg("--action-script")
        .arg(tool)
        .env(IMAGE_ENV, dir)
        .env(RESUMED_ENV, &resumed);
    let given = crate::restore_args::RestoreArgs {
        began: Some(began),
        ..options.given.clone()
    };
    let (_given, given_spec) = crate::restore_args::for_criu(&given)
        .map_err(|e| Error::Io("passing the restore-time arguments", e))?;
    cmd.arg("--inherit-fd").arg(given_spec);
    for (fd, name) in STDIO_MEMFDS.iter().enumerate() {
        cmd.arg("--inherit-fd")
            .arg(format!("fd[{fd}]:/memfd:{name}"));
    }
    cmd.arg("--exec-cmd")
        .arg("--")
        .arg(tool)
        .arg("__wait")
        .arg(manifest.pid.to_string());

    // Its own process group: a terminal's Ctrl-C reaches the process once, forwarded.
    // The forwarded signals stay blocked in CRIU and pending through its exec into
    // `__wait`, which forwards them once the process is back.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| {
        let what = if manifest.private_pid_namespace {
            "running `unshare` (util-linux) and criu restore"
        } else {
            "running criu restore"
        };
        Error::Io(what, e)
    })?;
    let pid = child.id() as libc::pid_t;
    // `unshare` does not pass signals on: send them to the namespace's PID 1 instead
    supervise::forward_to(if manifest.private_pid_namespace {
        first_child(pid).unwrap_or(pid)
    } else {
        pid
    });
    let status = child.wait();
    supervise::forward_to(0);
    let status = status.map_err(|e| Error::Io("waiting for the restored process", e))?;
    if std::fs::remove_file(&resumed).is_err() {
        return Err(Error::Restore {
            reason: criu::log_digest(&log, 8),
            log,
        });
    }
    if options.log.is_none() {
        let _ = std::fs::remove_file(&log);
    }
    Ok(supervise::exit_code(status.into_raw()))
}

pub use crate::supervise::wait_for;

/// The first child of `pid`, waiting up to 5 s for it to appear.
pub(crate) fn first_child(pid: libc::pid_t) -> Option<libc::pid_t> {
    let children = format!("/proc/{pid}/task/{pid}/children");
    for _ in 0..2500 {
        let found = std::fs::read_to_string(&children)
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse().ok());
        if found.is_some() {
            return found;
        }
        if !crate::procfs::alive(pid) {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    None
}

/// Restore needs the original PID and every TID free; say who holds one.
pub(crate) fn check_ids_free(m: &Manifest) -> Result<(), Error> {
    if m.private_pid_namespace {
        return Ok(()); // restored in a fresh namespace, where they are free
    }
    for &id in std::iter::once(&m.pid).chain(&m.tids) {
        if let Ok(comm) = std::fs::read_to_string(format!("/proc/{id}/comm")) {
            return Err(Error::PidInUse {
                id,
                holder: comm.trim().to_string(),
            });
        }
    }
    Ok(())
}

/// `--action-script` mode: CRIU runs the tool with `CRTOOLS_SCRIPT_ACTION` set, for every
/// stage; at `post-resume` the restored process is woken with its `Restored` message.
pub fn action_script(action: &str) -> Result<(), Error> {
    if action != "post-resume" {
        return Ok(());
    }
    let dir = std::env::var_os(IMAGE_ENV).ok_or_else(|| {
        Error::Config(format!(
            "{IMAGE_ENV} is not set: the action script runs under crac restore only"
        ))
    })?;
    let manifest = Manifest::read(Path::new(&dir))?;
    let pid = std::env::var("CRTOOLS_INIT_PID")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(manifest.pid);
    if let Some(resumed) = std::env::var_os(RESUMED_ENV) {
        std::fs::write(resumed, b"").map_err(|e| Error::Io("marking the restore done", e))?;
    }
    signal::send(pid, manifest.waiter_tid, Message::Restored)
        .map_err(|e| Error::Io("waking the restored process", e))
}
