//! Configuration, CRaC-style: environment variables, read once a checkpoint, by the
//! engine's probe, before any hook runs. The variables are listed in
//! [`crate::env::VARIABLES`]; [`crate::checkpoint::fd_check`] and
//! [`crate::checkpoint::secret_env`] describe the values of `CRAC_FD_POLICY` and
//! `CRAC_SECRET_ENV`.

use std::path::PathBuf;

use crate::checkpoint::fd_check::FdPolicy;
use crate::checkpoint::secret_env;
use crate::env::{CHECKPOINT_TO, CRIU_OPTS, FD_POLICY, IMAGE_KEY, LEAVE_RUNNING, LOG, SECRET_ENV};
use crate::error::Error;
use crate::sys::criu::criu_binary;

/// One checkpoint's settings.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) image_dir: PathBuf,
    pub(crate) criu: PathBuf,
    pub(crate) criu_opts: Vec<String>,
    pub(crate) leave_running: bool,
    pub(crate) fd_policy: FdPolicy,
    pub(crate) log_level: u8,
    pub(crate) secret_env: Vec<String>,
}

fn invalid(setting: &'static str, problem: String) -> Error {
    Error::Setting { setting, problem }
}

impl Config {
    /// Reads every variable; the first problem found is reported with its variable.
    pub(crate) fn from_env() -> Result<Config, Error> {
        let image_dir = match std::env::var_os(CHECKPOINT_TO) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => {
                return Err(invalid(
                    CHECKPOINT_TO,
                    format!(
                        "not set: set it to the directory the image should be written to, \
                         e.g. {CHECKPOINT_TO}=/var/lib/myapp/image"
                    ),
                ));
            }
        };
        let image_dir = std::path::absolute(&image_dir)
            .map_err(|e| invalid(CHECKPOINT_TO, format!("{}: {e}", image_dir.display())))?;
        let leave_running = match std::env::var(LEAVE_RUNNING).as_deref() {
            Err(_) | Ok("") | Ok("0") | Ok("false") => false,
            Ok("1") | Ok("true") => true,
            Ok(other) => {
                return Err(invalid(
                    LEAVE_RUNNING,
                    format!("{other:?}: expected 1 or 0"),
                ));
            }
        };
        let log_level = match std::env::var(LOG).as_deref() {
            Err(_) | Ok("") => 2,
            Ok(level) => match level.parse::<u8>() {
                Ok(level) if level <= 4 => level,
                _ => {
                    return Err(invalid(
                        LOG,
                        format!("{level:?}: expected a CRIU log level from 0 to 4"),
                    ));
                }
            },
        };
        let fd_policy = FdPolicy::parse(&std::env::var(FD_POLICY).unwrap_or_default())
            .map_err(|e| invalid(FD_POLICY, e))?;
        let secret_env = secret_env::parse(&std::env::var(SECRET_ENV).unwrap_or_default())
            .map_err(|e| invalid(SECRET_ENV, e))?;
        let criu_opts: Vec<String> = std::env::var(CRIU_OPTS)
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect();
        if let Some(owned) = criu_opts.iter().find(|o| engine_owned(o)) {
            return Err(invalid(
                CRIU_OPTS,
                format!(
                    "`{owned}` is set by crac itself (image directory, log, target, action \
                     script, verbosity, leave-running); use {CHECKPOINT_TO}, {LOG} or \
                     {LEAVE_RUNNING} instead"
                ),
            ));
        }
        // The dump's action script seals the image with the key (and makes it): a key it
        // would refuse is said now, before any hook runs. Unread: it must not be in the image.
        crate::image::key::HostKey::check_unread()
            .map_err(|e| invalid(IMAGE_KEY, e.to_string()))?;
        Ok(Config {
            image_dir,
            criu: criu_binary()?,
            criu_opts,
            leave_running,
            fd_policy,
            log_level,
            secret_env,
        })
    }
}

/// Options the engine passes itself: giving them again would break the protocol.
fn engine_owned(option: &str) -> bool {
    const OWNED: [&str; 14] = [
        "-D",
        "--images-dir",
        "-o",
        "--log-file",
        "-t",
        "--tree",
        "-R",
        "--leave-running",
        "--action-script",
        "-W",
        "--work-dir",
        "-v",
        "--restore-detached",
        "-d",
    ];
    OWNED
        .iter()
        .any(|o| option == *o || option.starts_with(&format!("{o}=")))
        || (option.starts_with("-v") && option[2..].chars().all(|c| c.is_ascii_digit() || c == 'v'))
}
