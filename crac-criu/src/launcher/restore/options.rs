//! How to restore ([`RestoreOptions`]), and what one restore works with once its paths
//! are settled ([`Job`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::image::verified_pages::VerifyPages;
use crate::launcher::bounded::Bounds;
use crate::launcher::error::LaunchError;
use crate::launcher::phases;
use crate::launcher::temp_files::RestoreFiles;
use crate::wire::restore_args::RestoreArgs;

/// How to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Arguments and environment for the restored process.
    pub given: RestoreArgs,
    /// Where CRIU writes its restore log; default: a file in a directory of the
    /// restore's own in the temp directory.
    pub log: Option<PathBuf>,
    /// CRIU log verbosity (0–4), default 2.
    pub log_level: Option<u8>,
    /// Print how long each phase of the restore took.
    pub verbose: bool,
    /// Run the process before its memory is read, which a `criu lazy-pages` server then
    /// fills on demand (see `lazy_pages.rs`).
    pub lazy: bool,
    /// Give up on a restore whose process has not resumed after this long (default:
    /// [`RESTORE_TIMEOUT`]).
    pub timeout: Option<Duration>,
    /// Whether the page data is hashed even when an earlier restore found these very
    /// files intact.
    pub verify_pages: VerifyPages,
    /// Restore even an image that a user other than root and this one owns or can write
    /// (`--insecure-image-permissions`; see `image/ownership.rs`).
    pub insecure_image_permissions: bool,
}

/// How long CRIU may take to get the process running by default: far beyond any
/// restore seen (a second or two per GB), short of forever.
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(300);

/// One restore: its options with every path absolute, and the files it writes.
pub(super) struct Job<'t> {
    /// The image directory.
    pub(super) dir: PathBuf,
    /// The `crac` executable CRIU calls back.
    pub(super) tool: &'t Path,
    pub(super) options: RestoreOptions,
    /// When the restore began, which the phase stamps count from.
    pub(super) began: SystemTime,
    /// CRIU's restore log: the one given, else one in `files`.
    pub(super) log: PathBuf,
    /// Where each stage of the restore is stamped (`phases.rs`).
    pub(super) stamps: PathBuf,
    /// The restore's private directory, for every file it writes but a log given.
    pub(super) files: RestoreFiles,
    /// The timeout, counted from the start: the image's check included.
    pub(super) bounds: Bounds,
}

impl<'t> Job<'t> {
    pub(super) fn new(
        dir: &Path,
        tool: &'t Path,
        options: &RestoreOptions,
        began: SystemTime,
    ) -> Result<Job<'t>, LaunchError> {
        // CRIU changes into the image directory before it calls back: relative paths
        // would point elsewhere by then.
        let absolute = |p: &Path| {
            std::path::absolute(p).map_err(|e| LaunchError::Setting {
                setting: "crac restore",
                problem: format!("{}: {e}", p.display()),
            })
        };
        let dir = absolute(dir)?;
        let options = RestoreOptions {
            log: options.log.as_deref().map(absolute).transpose()?,
            ..options.clone()
        };
        let files = RestoreFiles::create()?;
        Ok(Job {
            dir,
            tool,
            log: options.log.clone().unwrap_or_else(|| files.log()),
            stamps: files.stamps(),
            files,
            bounds: Bounds::from_now(options.timeout.unwrap_or(RESTORE_TIMEOUT), true),
            options,
            began,
        })
    }

    /// CRIU's log verbosity.
    pub(super) fn log_level(&self) -> u8 {
        self.options.log_level.unwrap_or(2)
    }

    /// Whether the caller named the log, which is then theirs to keep.
    pub(super) fn log_given(&self) -> bool {
        self.options.log.is_some()
    }

    /// Stamps `stage`; a stamp that cannot be written costs the timings only.
    pub(super) fn stamp(&self, stage: &str) {
        let _ = phases::stamp_at(&self.stamps, self.began, stage);
    }
}
