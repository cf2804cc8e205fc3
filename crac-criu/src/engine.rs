//! The engine crac-core sees: [`Criu`], registered with the highest default priority.

use crac_core::BoxError;
use crac_core::engine::{Engine, EngineOutcome, Request};

use crate::checkpoint::config::Config;
use crate::checkpoint::{ready, secret_env, self_dump};
use crate::error::NotCheckpointable;
use crate::image;
use crate::sys::stack;

/// The engine: selected by `CRAC_ENGINE=criu`, and the default where it is compiled in.
#[derive(Debug)]
pub struct Criu;

impl Engine for Criu {
    fn name(&self) -> &'static str {
        "criu"
    }

    fn prepare_thread(&self) {
        stack::scrub_dead_frames();
    }

    fn probe(&self) -> Result<(), BoxError> {
        if ready::direct_under_crac_run() {
            return Err(NotCheckpointable::UnderCracRun.into());
        }
        let config = Config::from_env()?;
        self_dump::check_startable()?;
        secret_env::check_scrubbing(&secret_env::set_now(&config.secret_env))?;
        image::check_target(&config.image_dir)?;
        Ok(())
    }

    fn checkpoint(&self, request: &Request<'_>) -> Result<EngineOutcome, BoxError> {
        let mut config = Config::from_env()?;
        config.leave_running |= ready::leave_running_here();
        Ok(self_dump::checkpoint(&config, &request.plan())?)
    }
}

crac_core::register_engine!(Criu, default_priority = Some(10));
