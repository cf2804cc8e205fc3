//! What the `crac` command runs: restore an image, run an application under `crac run`,
//! launch it in a private PID namespace, supervise it as its parent, inspect an image,
//! and ask a running process for a checkpoint.
//!
//! Public for the `crac` command only (hidden from the documentation): applications
//! never call these.

mod action_script;
mod bounded;
mod clocks;
pub mod doctor;
mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod inspect;
pub mod inspect_packed;
pub mod key;
mod lazy_pages;
pub mod namespace;
pub mod pack;
mod page_check;
mod phases;
pub mod request_client;
pub mod restore;
pub mod run;
mod supervise;
mod temp_files;

pub use crate::image::ImageRefusal;
pub use crate::image::VerifyPages;
pub use crate::wire::restore_args::RestoreArgs;
pub use action_script::action_script;
pub use error::{LaunchError, RequestFailure};
pub use supervise::wait_for;

use crate::sys::privileges;

/// `result` of a restore (`crac restore`, `crac run`), its failure explained when this
/// process lacks a capability a restore needs: which, what for, and how to grant it; in
/// rootless mode, what that mode cannot do and that `crac doctor` tells more.
/// Refusals of the image itself and bad settings are left as they are.
pub fn with_privilege_advice<T>(result: Result<T, LaunchError>) -> Result<T, LaunchError> {
    result.map_err(|e| match e {
        LaunchError::Setting { .. }
        | LaunchError::Image(ImageRefusal::Unrestorable { .. } | ImageRefusal::Damaged { .. })
        | LaunchError::ImageTarget(_)
        | LaunchError::Unchecked { .. }
        | LaunchError::Privileges { .. }
        | LaunchError::WithoutPrivileges { .. } => e,
        e if privileges::rootless() => LaunchError::WithoutPrivileges {
            source: Box::new(e),
            problem: privileges::ROOTLESS_ADVICE.to_string(),
        },
        e if privileges::restore_only() => LaunchError::WithoutPrivileges {
            source: Box::new(e),
            problem: privileges::RESTORE_ONLY_ADVICE.to_string(),
        },
        e => match privileges::problem(
            "a restore",
            &privileges::missing(privileges::TO_RESTORE),
            false,
        ) {
            Some(problem) => LaunchError::WithoutPrivileges {
                source: Box::new(e),
                problem: format!("{problem}; {}", privileges::RESTORE_ONLY_INSTEAD),
            },
            None => e,
        },
    })
}
