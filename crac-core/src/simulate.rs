//! The `simulate` engine: runs the whole protocol but takes no image, and reports the
//! process as restored. For unit tests, and for developing on machines without CRIU.

use std::time::Duration;

use crate::engine::{Engine, EngineOutcome, Request};
use crate::error::BoxError;

/// Selected with `CRAC_ENGINE=simulate` or `crac::use_engine("simulate")`.
#[derive(Debug)]
pub struct Simulate;

impl Engine for Simulate {
    fn name(&self) -> &'static str {
        "simulate"
    }

    fn checkpoint(&self, _: &Request<'_>) -> Result<EngineOutcome, BoxError> {
        Ok(EngineOutcome::Restored {
            // no image was taken, so no time was spent in one
            checkpointed_for: Some(Duration::ZERO),
            args: Vec::new(),
            env: Vec::new(),
            restore_began: None,
            monotonic_time_kept: Some(true),
        })
    }
}

crate::register_engine!(Simulate);
