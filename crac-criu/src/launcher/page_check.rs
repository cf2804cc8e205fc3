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

use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

// the variable through which the action script finds the verdict
use crate::env::RESTORE_VERDICT as VERDICT_ENV;
use crate::image::ImageRefusal;
use crate::image::manifest::Manifest;
use crate::image::verified_pages::{self, Intact, VerifyPages};
use crate::launcher::error::LaunchError;
use crate::sys::fs::open_regular;

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
                // Made anew, for the restorer only: the action script refuses anything else.
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
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
    let file = open_verdict(Path::new(&path))?;
    // read through the file checked, never through its path again
    let verdict = || {
        let mut text = String::new();
        let _ = (&file)
            .rewind()
            .and_then(|()| (&file).read_to_string(&mut text));
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

/// Opens the verdict at `path` if it is the file the restorer made: a regular file (not
/// a symlink: one is not followed) of this process's owner (CRIU's, so the restorer's),
/// closed to everyone else (0600), with no other link. Any other file someone else may
/// have written.
fn open_verdict(path: &Path) -> Result<std::fs::File, String> {
    let subject = format!("the page data's verdict {}", path.display());
    let file = open_regular(path).map_err(|e| {
        format!(
            "{}; another user may have written it; the process is not resumed",
            e.of(&subject)
        )
    })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{subject}: {e}; the process is not resumed"))?;
    let owner = nix::unistd::geteuid().as_raw();
    if meta.uid() == owner && meta.mode() & 0o077 == 0 && meta.nlink() == 1 {
        return Ok(file);
    }
    Err(format!(
        "{subject} is not the file the restorer made (found: owner uid {}, mode {:o}, {} \
         links; expected a regular file of uid {owner}, closed to others (600), one link): \
         another user may have written it; the process is not resumed",
        meta.uid(),
        meta.mode() & 0o7777,
        meta.nlink()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// Only the restorer's own verdict file is read: a file another could have written
    /// (open to others, behind a symlink, linked elsewhere too) is refused.
    #[test]
    fn only_the_restorers_own_verdict_is_read() {
        let dir = std::env::temp_dir().join(format!("crac-verdict-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let made = |name: &str, mode: u32| {
            let path = dir.join(name);
            std::fs::write(&path, "ok\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let own = made("own", 0o600);
        assert!(open_verdict(&own).is_ok());
        let open = made("open", 0o666);
        let refused = open_verdict(&open).unwrap_err();
        assert!(
            refused.contains("is not the file the restorer made") && refused.contains("mode 666"),
            "{refused}"
        );
        let link = dir.join("symlink");
        std::os::unix::fs::symlink(&own, &link).unwrap();
        assert!(open_verdict(&link).is_err());
        std::fs::hard_link(&own, dir.join("hard")).unwrap();
        let refused = open_verdict(&own).unwrap_err();
        assert!(refused.contains("2 links"), "{refused}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
