//! `crac key`: the host's image key (`image/key.rs`), made and shown. An image restores
//! only where the key that sealed it is: to restore on several hosts (a copy to another
//! machine, a container image layer), install one key file on all of them — copy it,
//! mode 0600, or mount it as a secret, and point `CRAC_IMAGE_KEY` at it — and compare
//! `crac key show` on each.

use crate::image::key::HostKey;
use crate::launcher::error::LaunchError;

/// A key, as `crac key` prints it.
#[derive(Debug)]
pub struct KeyReport {
    /// Its public fingerprint (what a manifest's seal names).
    pub id: String,
    /// Its file.
    pub path: std::path::PathBuf,
}

impl std::fmt::Display for KeyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.id, self.path.display())
    }
}

/// `crac key init`: this user's key, made if there is none.
pub fn init() -> Result<KeyReport, LaunchError> {
    report(HostKey::load_or_create())
}

/// `crac key show`: this user's key, which must exist.
pub fn show() -> Result<KeyReport, LaunchError> {
    report(HostKey::load())
}

fn report(key: Result<HostKey, crate::image::key::KeyError>) -> Result<KeyReport, LaunchError> {
    let key = key.map_err(|e| LaunchError::Setting {
        setting: crate::env::IMAGE_KEY,
        problem: e.to_string(),
    })?;
    Ok(KeyReport {
        id: key.id().0,
        path: key.file().into(),
    })
}
