//! The `simulate` engine: runs the whole protocol but takes no image, and reports the
//! process as restored. For unit tests, and for developing on machines without CRIU.

use std::time::Instant;

use crate::engine::{Engine, EngineOutcome, Request};
use crate::resource::BoxError;

/// Selected with `CRAC_ENGINE=simulate` or `crac::use_engine("simulate")`.
pub struct Simulate;

impl Engine for Simulate {
    fn name(&self) -> &'static str {
        "simulate"
    }

    fn checkpoint(&self, _: &Request<'_>) -> Result<EngineOutcome, BoxError> {
        let taken = Instant::now();
        Ok(EngineOutcome::Restored {
            checkpointed_for: Some(taken.elapsed()),
            args: Vec::new(),
            env: Vec::new(),
            restore_began: None,
        })
    }
}

crate::register_engine!(Simulate);
