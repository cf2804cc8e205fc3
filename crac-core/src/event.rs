//! The events hooks receive: [`Checkpoint`] before the image, [`Restore`] after it.

use std::time::Duration;

/// What a participant learns before a checkpoint.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Checkpoint {
    /// 1 for the first checkpoint attempt of this process lineage; every attempt counts,
    /// refused and failed ones too, and attempts made before earlier restores.
    pub generation: u64,
    /// The engine that will take the image (`"criu"`, `"simulate"`, ...).
    pub engine: &'static str,
    /// `CRAC_HOOK_DEADLINE`, as read when this checkpoint began: nested contexts apply it
    /// to their members.
    pub(crate) hook_deadline: Option<Duration>,
    /// The process goes on running once the image is taken (see [`Checkpoint::leaves_running`]).
    pub(crate) leaves_running: bool,
}

impl Checkpoint {
    /// True when this process goes on running once the image is taken (`crac run
    /// --every`, `crac checkpoint` of a live service, `CRAC_LEAVE_RUNNING=1`): a resource
    /// may then keep what clients use (a listening socket, its connections) open in the
    /// running process, as long as the image restores cleanly without it.
    pub fn leaves_running(&self) -> bool {
        self.leaves_running
    }
}

/// How the process came out of a checkpoint attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The process was restored from an image (or the `simulate` engine pretended so).
    Restored,
    /// The image was taken and the original process kept running.
    LeftRunning,
    /// The checkpoint was abandoned (a hook refused it or the engine failed); resources
    /// re-create what they released and the process continues as before.
    RolledBack,
}

/// What a participant learns after a restore, a left-running checkpoint, or a rollback.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Restore {
    /// Why `after_restore` is being called.
    pub outcome: Outcome,
    /// How many times this process lineage has been restored from an image, this time
    /// included: 0 until the first restore.
    pub generation: u64,
    /// The engine that handled the checkpoint.
    pub engine: &'static str,
    /// Time between the image being taken and the process running again, when the
    /// engine knows it.
    pub checkpointed_for: Option<Duration>,
    /// This process's [`instance_id`](crate::instance_id): new in every restored copy.
    pub instance_id: u128,
    /// Arguments the restorer passed (`crac restore DIR -- ARGS`); empty otherwise.
    pub args: Vec<String>,
    /// Environment variables the restorer passed (`crac restore DIR --env K=V`), already
    /// set in the process environment when `after_restore` hooks run. They are set while
    /// the application's other threads run: a process whose threads may read the
    /// environment concurrently (C's `getenv` in DNS resolution or `localtime`) must not
    /// be given variables this way, and reads them here instead. Secret environment
    /// variables (`CRAC_SECRET_ENV`) are set but not listed, so that a `Restore` the
    /// application keeps holds no secret.
    pub env: Vec<(String, String)>,
    /// Whether this process's monotonic clock ([`Instant`](std::time::Instant)) goes on
    /// from where the image left it, not counting the time spent in the image:
    /// `Some(true)` as root and rootless (a time namespace keeps it), `Some(false)` in a
    /// restore-only container, which cannot make one (`crac restore` warns), so that
    /// deadlines and timeouts measured with `Instant` across the checkpoint may already
    /// have passed; `None` when not restored from an image, or when the engine does not
    /// say.
    pub monotonic_time_kept: Option<bool>,
    /// The checkpoint's [`Checkpoint::hook_deadline`].
    pub(crate) hook_deadline: Option<Duration>,
}

impl Restore {
    /// Why `after_restore` is being called.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// True when the process runs from an image (or a simulated one).
    pub fn is_restored(&self) -> bool {
        self.outcome == Outcome::Restored
    }
}
