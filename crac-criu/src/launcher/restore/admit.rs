//! The first step of a restore: the image admitted, or refused with nothing touched.
//! It must be valid for this host, its PIDs free, its wiped secrets given again, and
//! its exclusive listeners' addresses free (and kept so until the copy listens).

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::image::ImageRefusal;
use crate::image::{self, Contents, manifest::Manifest};
use crate::launcher::error::LaunchError;
use crate::launcher::phases;
use crate::launcher::restore::options::{Job, RestoreOptions};
use crate::sys::{fd_info, fs};

/// An image a restore may start CRIU on.
pub(super) struct Admitted {
    pub(super) manifest: Manifest,
    /// Held from the check that the image's exclusive addresses are free until the copy
    /// listens there, if it has any.
    pub(super) listeners: Option<ListenersTurn>,
}

/// Validates the image (all but its page data, checked while CRIU reads it) within the
/// restore's timeout and until a stop signal, and checks this host can take it back now.
pub(super) fn admit(job: &Job<'_>) -> Result<Admitted, LaunchError> {
    image::check_ownership(&job.dir, job.options.insecure_image_permissions).map_err(
        |problem| ImageRefusal::Unrestorable {
            dir: job.dir.clone(),
            problem,
        },
    )?;
    let dir = job.dir.clone();
    let manifest = job
        .bounds
        .run(move || image::validate(&dir, Contents::AllButPages))
        .map_err(|cut| LaunchError::Unchecked {
            dir: job.dir.clone(),
            why: cut.said("crac restore --timeout"),
        })??;
    image::check_segments_ownership(&manifest.segments, job.options.insecure_image_permissions)
        .map_err(|problem| ImageRefusal::Unrestorable {
            dir: job.dir.clone(),
            problem,
        })?;
    job.stamp(phases::VALIDATED);
    image::check_ids_free(&manifest)?;
    check_secrets_given(&job.dir, &manifest, &job.options)?;
    let listeners = ListenersTurn::take(&job.dir, &manifest)?;
    Ok(Admitted {
        manifest,
        listeners,
    })
}

/// Secret environment variables were wiped before the dump: a restore must give each.
fn check_secrets_given(
    dir: &Path,
    manifest: &Manifest,
    options: &RestoreOptions,
) -> Result<(), ImageRefusal> {
    match options.given.first_missing(&manifest.secret_env) {
        None => Ok(()),
        Some(name) => Err(ImageRefusal::Unrestorable {
            dir: dir.to_path_buf(),
            problem: format!(
                "the secret environment variable {name} was wiped before the checkpoint and \
                 must be given again: pass --env {name} (this environment's value) or \
                 --env {name}=VALUE"
            ),
        }),
    }
}

/// Restores of an image that carries an exclusive listener take turns (a lock on the
/// image directory itself, which works on a read-only volume too) from the check that
/// nobody listens there until the copy listens: copies started at the same moment
/// cannot all pass that check.
pub(super) struct ListenersTurn {
    addresses: Vec<std::net::SocketAddr>,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl ListenersTurn {
    /// Waits for the turn if the image needs one, then checks the addresses are free.
    fn take(dir: &Path, manifest: &Manifest) -> Result<Option<ListenersTurn>, LaunchError> {
        let addresses: Vec<std::net::SocketAddr> = manifest
            .listeners
            .iter()
            .filter(|l| !l.shared)
            .map(|l| l.address)
            .collect();
        let turn = if addresses.is_empty() {
            None
        } else {
            let lock = fs::lock_exclusive(dir).map_err(|source| LaunchError::File {
                action: "locking",
                path: dir.to_path_buf(),
                source,
            })?;
            Some(ListenersTurn {
                addresses,
                _lock: lock,
            })
        };
        image::check_listeners_free(manifest).map_err(|problem| ImageRefusal::Unrestorable {
            dir: dir.to_path_buf(),
            problem,
        })?;
        Ok(turn)
    }

    /// Ends the turn once the copy listens (or is gone, or 30 s passed).
    pub(super) fn pass_once_listening(self, child: &mut Child) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .addresses
            .iter()
            .all(|a| fd_info::someone_listens_on(*a))
            && child.try_wait().is_ok_and(|ended| ended.is_none())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
