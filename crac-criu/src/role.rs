//! Which part a process plays. Two executables — the application (any program linking
//! crac) and the `crac` command — play seven roles between them:
//!
//! | role | executable | started by | chosen by |
//! |---|---|---|---|
//! | application | the application | its user, or `crac run` (through `crac __init` in a private PID namespace) | no role variable: its `main` runs |
//! | dump helper | the application, re-executed | the application, at a checkpoint (`checkpoint/self_dump.rs`) | `CRAC_DUMP_HELPER` set: a constructor runs it before `main` (`checkpoint/helper.rs`) |
//! | dump action script | the application | `criu dump`, run by the dump helper, at each stage (`--action-script`) | `CRAC_DUMP_HELPER` (inherited from the helper) and `CRTOOLS_SCRIPT_ACTION` set |
//! | command | `crac` | its user (or a container runtime) | no role variable: its subcommand (`restore`, `run`, `checkpoint`, `inspect`) |
//! | restore action script | `crac` | `criu restore`, run by `crac restore`, at each stage (`--action-script`) | `CRTOOLS_SCRIPT_ACTION` set and no argument (`launcher/action_script.rs`) |
//! | `__wait` | `crac` | `criu restore --exec-cmd`, once the process is restored | the hidden subcommand: it becomes the restored process's parent (`launcher/supervise.rs`) |
//! | `__init` | `crac` | `crac run` and `crac restore` through `unshare`, for a private PID namespace | the hidden subcommand: PID 1 of the namespace, the application its PID 2 (`launcher/namespace.rs`) |
//!
//! [`of_this_process`] tells the roles chosen by the environment apart; the
//! application's constructor and the `crac` command's `main` both ask it, and each acts
//! on the roles of its executable.

use crate::env::DUMP_HELPER;

/// Set by CRIU for its `--action-script`: the stage it is at.
pub(crate) const SCRIPT_ACTION_ENV: &str = "CRTOOLS_SCRIPT_ACTION";

/// The role of a process, as its environment tells it (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// No role variable: the program's own `main` runs — the application, or the `crac`
    /// command, whose command line chooses further (`__wait` and `__init` included).
    Main,
    /// The application's dump helper, which runs `criu dump` on it.
    DumpHelper,
    /// The application's executable as `criu dump`'s action script, at stage `action`.
    DumpActionScript {
        /// CRIU's stage, e.g. `post-dump`.
        action: String,
    },
    /// The `crac` executable as `criu restore`'s action script, at stage `action`.
    RestoreActionScript {
        /// CRIU's stage, e.g. `post-restore`.
        action: String,
    },
}

/// The role of this process. Safe to ask before `main`, where the arguments may not be
/// known yet: the roles told apart by them (the restore action script, run without
/// arguments) are only acted on by `main`.
pub fn of_this_process() -> Role {
    let action = std::env::var(SCRIPT_ACTION_ENV).ok();
    if std::env::var_os(DUMP_HELPER).is_some() {
        return match action {
            Some(action) => Role::DumpActionScript { action },
            None => Role::DumpHelper,
        };
    }
    // CRIU runs its action script without arguments; a command run from inside one (which
    // inherits the variable) has some.
    match action {
        Some(action) if std::env::args_os().len() == 1 => Role::RestoreActionScript { action },
        _ => Role::Main,
    }
}
