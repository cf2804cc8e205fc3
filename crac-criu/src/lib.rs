//! The `criu` engine of crac-rs: a Linux process checkpoints itself with
//! [CRIU](https://criu.org), is stopped, and is later restored from the image by
//! `crac restore` with its warmed state intact and its hooks run.
//!
//! The checkpoint path, after the hooks have run (see `crac-core`):
//! [`fdcheck`] (refuse unexplained open fds) → [`selfdump`] (detached [`helper`] runs
//! `criu dump` while the process waits in place; [`stdio`] handed over) → [`image`]
//! published atomically with its [`manifest`]. The restore path: [`restore`].
//! Settings: [`config`].

#![warn(missing_docs)]

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
compile_error!("crac-criu supports 64-bit Linux only");

mod config;
mod criu;
mod fdcheck;
mod fdinfo;
mod helper;
mod image;
pub mod inspect;
mod manifest;
pub mod namespace;
mod procfs;
mod ready;
pub mod request;
pub mod restore;
pub mod restore_args;
pub mod run;
mod selfdump;
mod signal;
mod stdio;
mod supervise;

use std::path::PathBuf;

use crac_core::BoxError;
use crac_core::engine::{Engine, EngineOutcome, Request};

pub use config::criu_binary;
pub use ready::{INTERVAL_ENV, ON_READY_ENV, at_consistent_point, ready};
pub use request::checkpoint_on_request;

/// What can go wrong in the criu engine and in restores.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is missing or wrong; the message names the variable.
    #[error("{0}")]
    Config(String),
    /// The open-resource check refused the checkpoint: the message names every fd.
    #[error("{0}")]
    OpenFds(String),
    /// `criu dump` failed; the process was not dumped and continues.
    #[error("criu dump failed; the process was not checkpointed and continues:\n{reason}\nfull CRIU log: {}", log.display())]
    Dump {
        /// The error lines of CRIU's log.
        reason: String,
        /// The whole log.
        log: PathBuf,
    },
    /// `criu restore` failed.
    #[error("criu restore failed:\n{reason}\nfull CRIU log: {}", log.display())]
    Restore {
        /// The error lines of CRIU's log.
        reason: String,
        /// The whole log.
        log: PathBuf,
    },
    /// The image cannot be restored here; nothing was touched.
    #[error("cannot restore {}: {problem}", dir.display())]
    Image {
        /// The image directory.
        dir: PathBuf,
        /// What is wrong, and what to do.
        problem: String,
    },
    /// A PID or TID of the image is taken on this host.
    #[error(
        "PID {id} recorded in the image is in use by `{holder}`: a restore needs the original PID and \
         thread IDs free; stop that process (or restore in a fresh PID namespace)"
    )]
    PidInUse {
        /// The PID or TID.
        id: i32,
        /// The command name of the process holding it.
        holder: String,
    },
    /// The dump helper misbehaved, or the process cannot be dumped as started.
    #[error("{0}")]
    Helper(String),
    /// A system call failed.
    #[error("{0}: {1}")]
    Io(&'static str, #[source] std::io::Error),
}

/// The engine: selected by `CRAC_ENGINE=criu`, and the default where it is compiled in.
pub struct Criu;

impl Engine for Criu {
    fn name(&self) -> &'static str {
        "criu"
    }

    fn probe(&self) -> Result<(), BoxError> {
        let config = config::Config::from_env()?;
        if !nix::unistd::geteuid().is_root() {
            return Err("the criu engine needs root: run the process as root".into());
        }
        image::check_target(&config.image_dir)?;
        selfdump::check_startable()?;
        Ok(())
    }

    fn checkpoint(&self, request: &Request<'_>) -> Result<EngineOutcome, BoxError> {
        let config = config::Config::from_env()?;
        Ok(selfdump::checkpoint(&config, &request.plan())?)
    }
}

crac_core::register_engine!(Criu, default_priority = Some(10));

/// Referenced by the `crac` facade so that this crate — its engine registration and
/// its dump-helper entry point, both reached only through link sections — is linked in.
#[doc(hidden)]
pub fn ensure_linked() -> *const () {
    helper::entry_point()
}
