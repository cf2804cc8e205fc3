//! Whether this host can take an image back now: the PIDs it needs free, the addresses
//! it listens on unclaimed. Asked before a restore and by `crac inspect`.

use crate::image::manifest::Manifest;
use crate::image::refusal::ImageRefusal;
use crate::sys::fd_info;

/// A listening socket the image carries without `SO_REUSEPORT` must not be listened on
/// already: a second copy would share it, and requests would reach one copy only.
pub(crate) fn check_listeners_free(m: &Manifest) -> Result<(), String> {
    match m
        .listeners
        .iter()
        .find(|l| !l.shared && fd_info::someone_listens_on(l.address))
    {
        None => Ok(()),
        Some(l) => Err(format!(
            "the image carries a socket listening on {} without SO_REUSEPORT, and something \
             listens there already (another copy of this image?): a second copy would share \
             that socket and only one would get requests. Close it before the checkpoint \
             (crac::tokio::Listener does, and binds again per copy with --env PORT=...), or \
             set SO_REUSEPORT on it; an image of a left-running checkpoint carries the \
             listener's socket: stop the service (or move the copy holding the address to \
             its own PORT) first",
            l.address
        )),
    }
}

/// Restore needs the original PID and every TID free; say who holds one.
pub(crate) fn check_ids_free(m: &Manifest) -> Result<(), ImageRefusal> {
    if m.private_pid_namespace {
        return Ok(()); // restored in a fresh namespace, where they are free
    }
    for &id in std::iter::once(&m.pid).chain(&m.tids) {
        if let Ok(comm) = std::fs::read_to_string(format!("/proc/{id}/comm")) {
            return Err(ImageRefusal::PidInUse {
                id,
                holder: comm.trim().to_string(),
            });
        }
    }
    Ok(())
}
