//! The `crac` executable as CRIU's `--action-script` during a restore: a process of
//! CRIU's, run without arguments for every stage with `CRTOOLS_SCRIPT_ACTION` naming it.
//! Each restore stage is stamped (`phases.rs`); at `post-restore` the process is held
//! until its page data is found intact (`page_check.rs`), then sent its `Restored`
//! message.
//!
//! The message is sent at `post-restore`, not `post-resume`: it waits, queued and
//! blocked, in the still-frozen process, which finds it the moment CRIU resumes it,
//! instead of one more run of this executable (about 2 ms, more while the resumed copy
//! and a lazy-pages server compete for the CPU) later. A failure to send it fails
//! `post-restore`, so CRIU kills the copy rather than resume one nobody woke.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env::RESTORE_IMAGE as IMAGE_ENV;
use crate::image::ImageRefusal;
use crate::image::manifest::Manifest;
use crate::launcher::error::LaunchError;
use crate::launcher::{page_check, phases};
use crate::wire::signal::{self, Message};

/// Makes `tool` the action script of the `criu restore` in `criu`, restoring `dir`.
pub(crate) fn pass_to(criu: &mut Command, tool: &Path, dir: &Path) {
    criu.arg("--action-script").arg(tool).env(IMAGE_ENV, dir);
}

/// Does what the stage `action` needs (see the module documentation).
pub fn action_script(action: &str) -> Result<(), LaunchError> {
    if !matches!(action, "pre-restore" | "post-restore" | "post-resume") {
        return Ok(());
    }
    let dir: PathBuf = std::env::var_os(IMAGE_ENV)
        .ok_or_else(|| LaunchError::Setting {
            setting: IMAGE_ENV,
            problem: "not set: the action script runs under crac restore only".into(),
        })?
        .into();
    // A stamp that cannot be written costs the timings, not the restore; a missing
    // `post-resume` stamp is reported as a failed restore by the restorer.
    let _ = phases::stamp(action);
    if action == "post-restore" {
        let verdict = page_check::await_verdict().map_err(|problem| ImageRefusal::Damaged {
            dir: dir.clone(),
            problem,
        });
        let _ = phases::stamp(phases::PAGES_CHECKED);
        verdict?;
        wake(&dir)?;
        let _ = phases::stamp(phases::WOKEN);
        return Ok(());
    }
    Ok(())
}

/// Queues the restored process's `Restored` message.
fn wake(dir: &Path) -> Result<(), LaunchError> {
    let manifest = Manifest::read(dir)?;
    let pid = std::env::var("CRTOOLS_INIT_PID")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(manifest.pid);
    signal::send(pid, manifest.waiter_tid, Message::Restored)
        .map_err(LaunchError::io("waking the restored process"))?;
    Ok(())
}
