//! Environment variables `crac run` and `crac __init` set for the application.

/// `1`: the process was started to produce an image; `crac::ready()` checkpoints it.
pub(crate) const ON_READY: &str = "CRAC_CHECKPOINT_ON_READY";
/// Seconds between checkpoints taken at consistent points.
pub(crate) const INTERVAL: &str = "CRAC_CHECKPOINT_INTERVAL";
/// Set for an application `crac run` started (and so in every copy restored from its
/// images): `crac run` takes its images, a direct `checkpoint_restore()` is refused.
pub(crate) const MANAGED: &str = "CRAC_RUN";
/// `private`: the process runs as PID 2 of its own namespace, under `crac __init`.
pub(crate) const PID_NAMESPACE: &str = "CRAC_PID_NAMESPACE";

/// Whether this process was launched by `crac __init`.
pub(crate) fn in_private_pid_namespace() -> bool {
    std::env::var(PID_NAMESPACE).as_deref() == Ok("private")
}
