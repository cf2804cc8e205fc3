//! The page data checked while CRIU restores, not before: hashing it takes about a third
//! of the time CRIU spends reading it, so the two run side by side on two cores, and the
//! restored process is held at CRIU's `post-restore` stage until the verdict is in. A
//! damaged image is therefore refused by name and never runs, at almost no cost in time.
//! Files an earlier restore found intact and that have not changed since are not hashed
//! again (`verified_pages.rs`).
//!
//! The restorer hashes; the action script (a child of CRIU) waits for the verdict, a
//! line the restorer writes into a file it holds locked until then. A failing
//! `post-restore` script makes CRIU kill the restored tasks before they run (a failing
//! `pre-resume` one is only logged: CRIU resumes the tasks anyway).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::image::ImageRefusal;
use crate::image::manifest::Manifest;
use crate::launcher::error::LaunchError;
use crate::launcher::verified_pages::{self, Intact, VerifyPages};

/// Where the action script finds the verdict.
use crate::env::RESTORE_VERDICT as VERDICT_ENV;
/// The verdict when every page file matches its digest.
const MATCHES: &str = "ok";

/// The check running beside CRIU.
pub(crate) struct PageCheck {
    thread: JoinHandle<Result<(), ImageRefusal>>,
    verdict: Option<PathBuf>,
}

/// Whether the copy waits for the check.
pub(crate) enum Hold<'c> {
    /// Held at `post-restore` until the verdict, one line, is in the file at this path
    /// (the caller picks a private one). The file stays locked until then: the action
    /// script tells a verdict still to come from one that never will (a restorer killed,
    /// in any PID namespace) by that lock. `criu` is told where the file is.
    Until {
        verdict: PathBuf,
        criu: &'c mut std::process::Command,
    },
    /// Not held (a lazy restore, whose point is to run before the memory is read): the
    /// caller stops the copy if the check fails.
    No,
}

impl PageCheck {
    /// Starts checking the page data of the image in `dir` (hashing it, unless `mode`
    /// allows a record of an earlier check, see `verified_pages.rs`); `done` is called
    /// with the outcome as soon as it is known.
    pub(crate) fn start(
        dir: &Path,
        manifest: &Manifest,
        mode: VerifyPages,
        hold: Hold<'_>,
        done: impl FnOnce(&Result<Intact, ImageRefusal>) + Send + 'static,
    ) -> Result<PageCheck, LaunchError> {
        let (file, verdict) = match hold {
            Hold::Until {
                verdict: path,
                criu,
            } => {
                let file = std::fs::File::create(&path)
                    .and_then(|file| file.lock().map(|()| file))
                    .map_err(|source| LaunchError::File {
                        action: "creating",
                        path: path.clone(),
                        source,
                    })?;
                criu.env(VERDICT_ENV, &path);
                (Some(file), Some(path))
            }
            Hold::No => (None, None),
        };
        let (dir, manifest) = (dir.to_path_buf(), manifest.clone());
        let thread = std::thread::spawn(move || {
            let outcome = verified_pages::verify(&dir, &manifest, mode);
            done(&outcome);
            let outcome = outcome.map(drop);
            if let Some(file) = file {
                let text = match &outcome {
                    Ok(()) => MATCHES.to_string(),
                    Err(ImageRefusal::Damaged { problem, .. }) => problem.replace('\n', " "),
                    Err(e) => e.to_string().replace('\n', " "),
                };
                // If this fails, the action script finds the lock gone and no verdict,
                // and refuses to resume; closing the file releases the lock.
                let _ = (&file).write_all(format!("{text}\n").as_bytes());
            }
            outcome
        });
        Ok(PageCheck { thread, verdict })
    }

    /// The check left to end with the process, its file removed.
    pub(crate) fn abandon(self) {
        if let Some(verdict) = &self.verdict {
            let _ = std::fs::remove_file(verdict);
        }
    }

    /// The outcome, once the check is done; its file is removed.
    pub(crate) fn finish(self) -> Result<(), LaunchError> {
        let outcome = match self.thread.join() {
            Ok(outcome) => outcome.map_err(LaunchError::from),
            Err(_) => Err(LaunchError::Io {
                action: "checking the page data",
                source: std::io::Error::other("the check panicked"),
            }),
        };
        if let Some(verdict) = &self.verdict {
            let _ = std::fs::remove_file(verdict);
        }
        outcome
    }
}

/// In CRIU's `post-restore` action: waits for the restorer's verdict. A problem (which
/// CRIU logs) makes CRIU abort the restore before the process runs; the restorer reports
/// the same problem to the user.
pub(crate) fn await_verdict() -> Result<(), String> {
    let Some(path) = std::env::var_os(VERDICT_ENV) else {
        return Ok(()); // a restore that checked everything before CRIU started
    };
    let file = std::fs::File::open(&path)
        .map_err(|e| format!("the page data's verdict {}: {e}", path.display()))?;
    let verdict = || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.strip_suffix('\n').map(str::to_string)
    };
    loop {
        if let Some(text) = verdict() {
            return if text == MATCHES { Ok(()) } else { Err(text) };
        }
        if file.try_lock_shared().is_ok() {
            // unlocked: the verdict is written now, or never will be
            return match verdict() {
                Some(text) if text == MATCHES => Ok(()),
                Some(text) => Err(text),
                None => Err("the check of the page data ended without a verdict (the \
                             restorer is gone); the process is not resumed"
                    .into()),
            };
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
