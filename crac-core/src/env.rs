//! The environment variables crac-core reads. The table of every `CRAC_*` variable,
//! these included, is crac-criu's `env.rs`.

/// Names the engine a checkpoint uses (see [`crate::engine::selected`]).
pub const ENGINE: &str = "CRAC_ENGINE";
/// A deadline for every hook that has none of its own (see [`crate::DeadlineExceeded`]).
pub const HOOK_DEADLINE: &str = "CRAC_HOOK_DEADLINE";
