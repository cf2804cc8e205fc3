//! The last step of a restore: CRIU (by then `__wait`) has exited; collect how each
//! part ended, tidy up, and tell the caller the restored process's exit code or why
//! there is none.

use std::process::ExitStatus;

use crate::image::manifest::Manifest;
use crate::launcher::error::LaunchError;
use crate::launcher::lazy_pages::Watch;
use crate::launcher::phases;
use crate::launcher::restore::launch::Started;
use crate::launcher::restore::options::Job;
use crate::launcher::supervise::{self, Ended};
use crate::sys::criu;

/// How each part of a restore ended.
pub(super) struct Ending {
    status: ExitStatus,
    pages: Result<(), LaunchError>,
    lazy: Option<Watch>,
    /// Whether the process ran (`post-resume` was stamped) and was not abandoned.
    resumed: bool,
}

/// Waits for CRIU's exit and the page check; `abandoned`: whether the restore was.
pub(super) fn wait_for_end(
    job: &Job<'_>,
    manifest: &Manifest,
    mut started: Started,
    abandoned: bool,
) -> Result<Ending, LaunchError> {
    let status = started.criu.wait();
    started.copy.ended();
    supervise::forward_to(0)?;
    let status = status.map_err(LaunchError::io("waiting for the restored process"))?;
    // An abandoned restore does not wait for the check of its page data, which may be
    // what took too long: its outcome no longer matters.
    let pages = if abandoned {
        started.pages.abandon();
        Ok(())
    } else {
        started.pages.finish()
    };
    let resumed = !abandoned && phases::Stamps::read(&job.stamps).resumed().is_some();
    let _ = std::fs::remove_file(&job.stamps);
    if !resumed && !manifest.private_pid_namespace {
        supervise::reap_orphan(manifest.pid); // so that a retry finds the PID free
    }
    Ok(Ending {
        status,
        pages,
        lazy: started.lazy,
        resumed,
    })
}

/// The restored process's exit code (128 + signal if it was killed), or why the
/// restore failed: `abandoned` says why it was given up, if it was.
pub(super) fn verdict(
    job: &Job<'_>,
    ending: Ending,
    abandoned: Option<String>,
) -> Result<i32, LaunchError> {
    if let Some(why) = abandoned {
        if let Some(watch) = ending.lazy {
            let _ = watch.finish(true, false);
        }
        return Err(LaunchError::Restore {
            reason: format!("{why}; CRIU and the half-restored process were stopped"),
            log: job.log.clone(),
        });
    }
    // Why the copy was stopped, or never ran, in order of cause: damaged page data, a
    // lazy-pages server that died, CRIU.
    ending.pages?;
    if let Some(watch) = ending.lazy {
        watch.finish(job.log_given() || !ending.resumed, ending.resumed)?;
    }
    if !ending.resumed {
        return Err(LaunchError::Restore {
            reason: criu::log_digest(&job.log, 8),
            log: job.log.clone(),
        });
    }
    if !job.log_given() {
        let _ = std::fs::remove_file(&job.log);
    }
    Ok(Ended::from(ending.status).code())
}
