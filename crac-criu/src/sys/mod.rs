//! Thin OS wrappers. Every raw call sits behind a small safe function here, through nix
//! where nix has the call, with one `unsafe` block per raw call whose `SAFETY:` comment
//! says why it is sound. The rest of the crate holds no `unsafe` but the dump helper's
//! pre-`main` entry and the `pre_exec` hooks of launchers.

pub(crate) mod criu;
pub(crate) mod fd;
pub(crate) mod fd_info;
pub(crate) mod fs;
pub(crate) mod process;
pub(crate) mod procfs;
pub(crate) mod signal;
