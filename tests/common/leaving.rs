//! The `leaving` engine (included by the tests that use it, so that it is listed among
//! the available engines of no other test binary): a left-running checkpoint without an
//! image. It records the claimed fds as the `criu` engine would find them, and runs
//! [`DURING`] as if while the process were frozen (the test's tasks go on meanwhile,
//! as they do between the hooks and the freeze).

use std::sync::Mutex;

use crac::engine::{Engine, EngineOutcome, Probed, Request};

/// Leaves the process running.
pub(crate) struct Leaving;
/// What the last checkpoint found claimed: fd and owner.
pub(crate) static CLAIMED: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());
/// Run by the next checkpoint, between the hooks.
pub(crate) static DURING: Mutex<Option<Box<dyn FnOnce() + Send>>> = Mutex::new(None);

impl Engine for Leaving {
    fn name(&self) -> &'static str {
        "leaving"
    }
    fn probe(&self, _: &crac::engine::CheckpointOptions) -> Result<Probed, crac::BoxError> {
        Ok(Probed::default().leaving_running(true))
    }
    fn checkpoint(&self, _: &Request<'_>) -> Result<EngineOutcome, crac::BoxError> {
        *CLAIMED.lock().unwrap() = crac::claimed_fds();
        if let Some(during) = DURING.lock().unwrap().take() {
            during();
        }
        Ok(EngineOutcome::LeftRunning)
    }
}
crac::register_engine!(Leaving);

/// The fds the last checkpoint found claimed by `owner`.
pub(crate) fn claimed_by(owner: &str) -> Vec<i32> {
    CLAIMED
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, by)| by == owner)
        .map(|(fd, _)| *fd)
        .collect()
}
