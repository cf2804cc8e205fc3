//! What crac-rs's crates share with its proc macros, written once.
//!
//! `crac-derive` is a proc-macro crate: it cannot depend on the runtime (`crac-core`,
//! `crac-criu`) whose rules it checks at compile time. The rules both sides apply live
//! here instead, in a crate without dependencies that either side may use.
//!
//! | module | what |
//! |---|---|
//! | [`deadline`] | the deadline grammar: `deadline = "500ms"` and `CRAC_HOOK_DEADLINE` |
//! | [`criu`] | where the `criu` binary is looked for, and whether CRIU can run here |

pub mod criu;
pub mod deadline;
