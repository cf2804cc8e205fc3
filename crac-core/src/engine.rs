//! The engine boundary: what takes (or pretends to take) the image.
//!
//! crac-core knows engines only through [`Engine`]: one call that returns once the
//! process runs again — in the same process lifetime (left running, simulated, failed)
//! or in a restored copy of it. Engines submit an [`EngineRegistration`] with
//! [`register_engine!`](crate::register_engine) and are chosen by name.

use std::any::Any;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::env;
use crate::error::{BoxError, Error};
use crate::event::Checkpoint;
use crate::participant::RankedParticipant;
use crate::plan::Plan;

pub use crate::options::{CheckpointOptions, Origin};

/// Takes the image once every participant has released its state.
pub trait Engine: Sync {
    /// The name `CRAC_ENGINE` selects it by.
    fn name(&self) -> &'static str;

    /// Called first, on the thread that checkpoints, from a shallow frame: before the
    /// protocol's own frames are laid on its stack. The criu engine zeroes what dead
    /// frames left there (a secret `setenv` copied, say), so that the image holds none of it.
    fn prepare_thread(&self) {}

    /// A cheap check run before any hook: an error means this engine cannot work here
    /// (or not for this checkpoint's `options`) and should say what to install or
    /// configure. What it read (its configuration, say) goes on to
    /// [`Engine::checkpoint`] in [`Request::probed`], so that it is read once.
    fn probe(&self, options: &CheckpointOptions) -> Result<Probed, BoxError> {
        let _ = options;
        Ok(Probed::default())
    }

    /// Takes the image. Returns when the process runs again; an error means no image
    /// was taken and the process continues (its participants are rolled back).
    fn checkpoint(&self, request: &Request<'_>) -> Result<EngineOutcome, BoxError>;
}

/// What an engine is asked to checkpoint.
#[non_exhaustive]
pub struct Request<'a> {
    /// The event participants received.
    pub event: &'a Checkpoint,
    /// What the caller asked of this checkpoint.
    pub options: CheckpointOptions,
    pub(crate) participants: &'a [RankedParticipant],
    pub(crate) probed: &'a Probed,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("event", self.event)
            .field("options", &self.options)
            .field("participants", &self.participants.len())
            .finish()
    }
}

impl Request<'_> {
    /// Who was notified, in checkpoint order (engines record it in their image). Built
    /// on demand: the protocol itself never needs the names.
    pub fn plan(&self) -> Plan {
        Plan::of(self.participants)
    }

    /// What this engine's [`Engine::probe`] found for this checkpoint, if it was a `T`.
    pub fn probed<T: Any>(&self) -> Option<&T> {
        self.probed.0.as_deref()?.downcast_ref()
    }
}

/// What an engine's [`Engine::probe`] hands to its [`Engine::checkpoint`] for the same
/// checkpoint: any value of the engine's own type, or nothing.
#[derive(Default)]
pub struct Probed(Option<Box<dyn Any + Send + Sync>>, pub(crate) bool);

impl Probed {
    /// Hands `found` on to the checkpoint, which reads it with [`Request::probed`].
    pub fn new<T: Any + Send + Sync>(found: T) -> Probed {
        Probed(Some(Box::new(found)), false)
    }

    /// The engine's own configuration leaves the process running after this checkpoint
    /// even if its options do not ask to: hooks see it in [`Checkpoint::leaves_running`].
    pub fn leaving_running(self, yes: bool) -> Probed {
        Probed(self.0, yes)
    }
}

impl std::fmt::Debug for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Probed(..)"
        } else {
            "Probed(None)"
        })
    }
}

/// How the process came back from [`Engine::checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineOutcome {
    /// This process is a copy restored from the image.
    Restored {
        /// Time between taking the image and running again, if known.
        checkpointed_for: Option<Duration>,
        /// Arguments given at restore time (CRaC's new arguments for a restored process).
        args: Vec<String>,
        /// Environment variables given at restore time; set in the process before any
        /// `after_restore` hook runs.
        env: Vec<(String, String)>,
        /// When the restore was started (by `crac restore`), if known: the protocol then
        /// reports how long it took to be running again, hooks included, as a `tracing`
        /// event.
        restore_began: Option<SystemTime>,
        /// Whether the process's monotonic clock goes on from where the image left it
        /// ([`Restore::monotonic_time_kept`](crate::Restore::monotonic_time_kept)), if
        /// the restorer says.
        monotonic_time_kept: Option<bool>,
    },
    /// The image was taken and this is the original process, still running.
    LeftRunning,
}

/// An engine compiled into the program; submit one with [`register_engine!`](crate::register_engine).
pub struct EngineRegistration {
    /// The engine.
    pub engine: &'static dyn Engine,
    /// Engines with a priority can be chosen without `CRAC_ENGINE`; the highest wins.
    /// `None` for engines that must be asked for by name (like `simulate`).
    pub default_priority: Option<u32>,
}

impl std::fmt::Debug for EngineRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineRegistration")
            .field("engine", &self.engine.name())
            .field("default_priority", &self.default_priority)
            .finish()
    }
}

inventory::collect!(EngineRegistration);

/// Makes an engine selectable by name (and, with a priority, the default).
///
/// ```
/// use crac::engine::{Engine, EngineOutcome, Request};
///
/// struct Never;
/// impl Engine for Never {
///     fn name(&self) -> &'static str { "never" }
///     fn checkpoint(&self, _: &Request<'_>) -> Result<EngineOutcome, crac::BoxError> {
///         Err("this engine never takes an image".into())
///     }
/// }
/// crac::register_engine!(Never);
/// ```
#[macro_export]
macro_rules! register_engine {
    ($engine:expr) => {
        $crate::register_engine!($engine, default_priority = ::core::option::Option::None);
    };
    ($engine:expr, default_priority = $priority:expr) => {
        $crate::__private::inventory::submit! {
            $crate::engine::EngineRegistration { engine: &$engine, default_priority: $priority }
        }
    };
}

static CHOSEN: Mutex<Option<&'static dyn Engine>> = Mutex::new(None);

/// Selects the engine by name for the rest of the process, taking precedence over
/// `CRAC_ENGINE`.
pub fn use_engine(name: &str) -> Result<(), Error> {
    let engine = find(name, "crac::use_engine")?;
    *CHOSEN.lock().unwrap_or_else(PoisonError::into_inner) = Some(engine);
    Ok(())
}

/// The names of the engines compiled in.
pub fn available() -> Vec<&'static str> {
    let mut names: Vec<_> = inventory::iter::<EngineRegistration>
        .into_iter()
        .map(|r| r.engine.name())
        .collect();
    names.sort_unstable();
    names
}

/// The engine a checkpoint would use: [`use_engine`], else `CRAC_ENGINE`, else the
/// compiled-in engine with the highest default priority.
pub fn selected() -> Result<&'static dyn Engine, Error> {
    if let Some(engine) = *CHOSEN.lock().unwrap_or_else(PoisonError::into_inner) {
        return Ok(engine);
    }
    match std::env::var(env::ENGINE) {
        Ok(name) if !name.is_empty() => find(&name, env::ENGINE),
        _ => inventory::iter::<EngineRegistration>
            .into_iter()
            .filter_map(|r| Some((r.default_priority?, r.engine)))
            .max_by_key(|(priority, _)| *priority)
            .map(|(_, engine)| engine)
            .ok_or(Error::NoEngine),
    }
}

fn find(name: &str, origin: &'static str) -> Result<&'static dyn Engine, Error> {
    inventory::iter::<EngineRegistration>
        .into_iter()
        .find(|r| r.engine.name() == name)
        .map(|r| r.engine)
        .ok_or_else(|| Error::UnknownEngine {
            requested: name.to_string(),
            origin,
            available: available(),
        })
}
