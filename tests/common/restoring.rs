//! The `restoring` engine (included by the tests that use it, so that it is listed
//! among the available engines of no other test binary): reports a restore at once (no image), passing
//! `CRAC_TEST_PORT` when a test set [`PORT`], and the variables in [`ENV`], as
//! `crac restore --env` would.

use std::sync::Mutex;

use crac::engine::{Engine, EngineOutcome, Request};

/// Restores at once, passing `PORT` when a test set one.
pub(crate) struct Restoring;
/// The port the next restore passes as `CRAC_TEST_PORT`, if any.
pub(crate) static PORT: Mutex<Option<u16>> = Mutex::new(None);
/// More variables every restore passes, after `CRAC_TEST_PORT`.
#[allow(dead_code)] // not every test binary passes any
pub(crate) static ENV: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

impl Engine for Restoring {
    fn name(&self) -> &'static str {
        "restoring"
    }
    fn checkpoint(&self, _: &Request<'_>) -> Result<EngineOutcome, crac::BoxError> {
        let mut env = PORT
            .lock()
            .unwrap()
            .map(|port| vec![("CRAC_TEST_PORT".to_string(), port.to_string())])
            .unwrap_or_default();
        env.extend(ENV.lock().unwrap().iter().cloned());
        Ok(EngineOutcome::Restored {
            checkpointed_for: None,
            args: Vec::new(),
            env,
            restore_began: None,
            monotonic_time_kept: None,
        })
    }
}
crac::register_engine!(Restoring);
