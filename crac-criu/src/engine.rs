//! The engine crac-core sees: [`Criu`], registered with the highest default priority.

use crac_core::BoxError;
use crac_core::engine::{CheckpointOptions, Engine, EngineOutcome, Probed, Request};

use crate::checkpoint::config::Config;
use crate::checkpoint::{ready, secret_env, self_dump};
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

    /// Checks this checkpoint can be taken and reads the configuration it is taken with.
    fn probe(&self, options: &CheckpointOptions) -> Result<Probed, BoxError> {
        ready::check_origin(options.origin)?;
        let config = Config::from_env()?;
        self_dump::check_startable()?;
        secret_env::check_scrubbing(&secret_env::set_now(&config.secret_env))?;
        image::check_target(&config.image_dir)?;
        let leave_running = config.leave_running;
        Ok(Probed::new(config).leaving_running(leave_running))
    }

    fn checkpoint(&self, request: &Request<'_>) -> Result<EngineOutcome, BoxError> {
        let config = request
            .probed::<Config>()
            .ok_or("the criu engine was asked for an image without its probe")?;
        let leave_running = config.leave_running || request.options.leave_running;
        Ok(self_dump::checkpoint(
            config,
            leave_running,
            &request.plan(),
        )?)
    }
}

crac_core::register_engine!(Criu, default_priority = Some(10));
