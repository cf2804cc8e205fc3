//! The [`Resource`] trait: what a participant in checkpoint/restore implements.

use std::borrow::Cow;

use crate::error::BoxError;
use crate::event::{Checkpoint, Restore};

/// Something that holds state a process snapshot must not capture as is.
///
/// Before a checkpoint, [`before_checkpoint`](Resource::before_checkpoint) releases what
/// cannot be saved (closes a socket, flushes and closes a file, wipes a key); after a
/// restore, [`after_restore`](Resource::after_restore) re-creates it. `after_restore` also
/// runs when a checkpoint is abandoned (see [`Outcome`](crate::Outcome)), so that the
/// process keeps working.
///
/// Register an instance with [`register`](crate::register) (held weakly) or derive the
/// trait with `#[derive(Checkpointable)]`.
///
/// ```
/// use std::sync::Arc;
/// use crac::{BoxError, Checkpoint, Resource, Restore};
///
/// struct Listener;
///
/// impl Resource for Listener {
///     fn before_checkpoint(&self, _: &Checkpoint) -> Result<(), BoxError> {
///         Ok(()) // close the socket
///     }
///     fn after_restore(&self, _: &Restore) -> Result<(), BoxError> {
///         Ok(()) // bind it again
///     }
/// }
///
/// let listener = Arc::new(Listener);
/// crac::register(&listener);
/// ```
pub trait Resource: Send + Sync + 'static {
    /// Called before the image is taken. An error refuses the checkpoint (every other
    /// participant is still notified, then all of them roll back).
    fn before_checkpoint(&self, event: &Checkpoint) -> Result<(), BoxError>;

    /// Called after a restore, after a checkpoint that left the process running, and on
    /// rollback of a refused checkpoint; [`Restore::outcome`] tells which.
    fn after_restore(&self, event: &Restore) -> Result<(), BoxError>;

    /// The name used in plans, errors and logs. Defaults to the type name.
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(std::any::type_name::<Self>())
    }

    /// Position in the dependency graph: a resource is notified before everything of a
    /// lower rank at checkpoint, and after it at restore.
    ///
    /// `#[derive(Checkpointable)]` returns its compile-time checked
    /// [`Ranked::RANK`](crate::Ranked::RANK); hand-written resources keep 0 unless they
    /// depend on something.
    fn rank(&self) -> u32 {
        0
    }

    /// How long each of its hooks may run before the protocol gives up on it: a
    /// `before_checkpoint` that overruns refuses the checkpoint, an `after_restore` fails
    /// the restore (see [`DeadlineExceeded`](crate::DeadlineExceeded)). With a deadline,
    /// the hooks run on a thread of their own; `None` (the default) runs them on the
    /// protocol's thread with no limit, unless the context or `CRAC_HOOK_DEADLINE`
    /// gives one. `#[derive(Checkpointable)]` returns its `#[crac(deadline = "...")]`.
    fn deadline(&self) -> Option<std::time::Duration> {
        None
    }
}
