//! What the caller of a checkpoint asks of it, carried to the engine in its
//! [`Request`](crate::engine::Request) rather than left in thread-locals for it to find.

/// Which entry point asked for the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A direct call to `crac::checkpoint_restore()` (or its async variant).
    Direct,
    /// `crac::ready()`: the service is warm and `crac run` started it to take its image.
    Ready,
    /// `crac::at_consistent_point()`: a periodic checkpoint at a consistent state.
    ConsistentPoint,
    /// A `crac checkpoint PID` request, served by `crac::checkpoint_on_request()`.
    Request,
}

impl Origin {
    /// Whether `crac run` asked for this checkpoint at one of its points (ready, a
    /// consistent point, a request) rather than the application calling directly.
    pub fn is_at_a_point(self) -> bool {
        // Spelled out, so that an origin added later is placed on purpose.
        match self {
            Origin::Direct => false,
            Origin::Ready | Origin::ConsistentPoint | Origin::Request => true,
        }
    }
}

/// How a checkpoint is asked for: by whom, and whether the process must go on running
/// once the image is taken (whatever the engine's own configuration says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointOptions {
    /// The entry point that asked.
    pub origin: Origin,
    /// The process keeps running after the image is taken (periodic checkpoints).
    pub leave_running: bool,
}

impl CheckpointOptions {
    /// A checkpoint asked for by `origin`, leaving the process running only if the
    /// engine is configured to.
    pub const fn new(origin: Origin) -> CheckpointOptions {
        CheckpointOptions {
            origin,
            leave_running: false,
        }
    }

    /// The same, with the process left running once the image is taken.
    pub const fn leaving_running(self) -> CheckpointOptions {
        CheckpointOptions {
            leave_running: true,
            ..self
        }
    }
}
