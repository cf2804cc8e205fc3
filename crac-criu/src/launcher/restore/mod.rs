//! Restore, the restorer's side: validate the image, run `criu restore`, wake the
//! restored process, forward signals, and exit with its exit code.
//!
//! CRIU is asked to (a) substitute the restorer's stdio for the image's stdio memfds,
//! (b) run this executable as its `--action-script` (`action_script.rs`), which stamps
//! each stage (see `phases.rs`), holds the process at `post-restore` until its page data
//! is found intact (`page_check.rs`) and then queues its `Restored` message, and
//! (c) `--exec-cmd` this executable as `__wait`, which becomes the restored process's
//! parent and reports its real exit code.
//!
//! The steps, one module each, in order: `options` (paths settled), `admit` (the image
//! valid and this host able to take it), `launch` (CRIU started, the page check beside
//! it), `resume` (the process resumed and handed over, or the restore abandoned),
//! `conclude` (how it ended).

mod admit;
mod conclude;
mod launch;
mod options;
mod resume;

pub use options::{RESTORE_TIMEOUT, RestoreOptions};

use std::path::Path;
use std::time::SystemTime;

use crate::launcher::error::LaunchError;
use crate::launcher::supervise;
use options::Job;

/// Restores the image in `dir` and waits for the restored process; returns its exit code
/// (128 + signal if it was killed). `tool` is the `crac` executable CRIU calls back.
pub fn restore(dir: &Path, tool: &Path, options: &RestoreOptions) -> Result<i32, LaunchError> {
    let began = SystemTime::now();
    // Before any thread or child exists, so that all of them inherit the forwarded
    // signals blocked: one delivered to another thread would be lost.
    supervise::forward_to(0)?;
    let job = Job::new(dir, tool, options, began)?;
    // Started first, so that its start overlaps the validation; killed if that fails.
    let lazy = launch::start_lazy_pages(&job)?;
    let mut admitted = admit::admit(&job)?;
    let mut started = launch::start(&job, &admitted.manifest, lazy)?;
    let abandoned = resume::await_resume(&job, &mut started).err();
    match abandoned {
        Some(_) => resume::abandon(&started),
        None => resume::hand_over(&job, &mut started, admitted.listeners.take()),
    }
    // An abandoned restore keeps the listeners' turn until its copy is gone.
    let ending = conclude::wait_for_end(&job, &admitted.manifest, started, abandoned.is_some())?;
    conclude::verdict(&job, ending, abandoned)
}
