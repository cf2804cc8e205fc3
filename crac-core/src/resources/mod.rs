//! Ready-made resources: types that take part in checkpoints without hooks of the
//! application's own, each in the file named after it.

pub(crate) mod blocking_listener;
pub(crate) mod gate;
#[cfg(target_os = "linux")]
pub(crate) mod reopen;
#[cfg(feature = "tokio")]
pub(crate) mod tokio_client;
#[cfg(feature = "tokio")]
pub(crate) mod tokio_listener;
