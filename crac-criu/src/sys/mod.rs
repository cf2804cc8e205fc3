//! Thin OS wrappers. Every raw call sits behind a small safe function here, through nix
//! where nix has the call, with one `unsafe` block per raw call whose `SAFETY:` comment
//! says why it is sound. Elsewhere in the crate `unsafe` appears only where the
//! contract is the caller's: `pre_exec` hooks, the dump helper's pre-`main` entry and
//! fork, and taking ownership of an fd a launcher passed.

pub(crate) mod criu;
pub(crate) mod environ;
pub(crate) mod fd;
pub(crate) mod fd_info;
pub(crate) mod fs;
pub(crate) mod privileges;
pub(crate) mod process;
pub(crate) mod procfs;
pub(crate) mod signal;
pub(crate) mod stack;
pub(crate) mod unix_diag;
