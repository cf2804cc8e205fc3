//! Ready-made resources: what an application registers, or marks as a field, instead of
//! writing hooks of its own. One file each:
//!
//! - `gate.rs`: `Gate`, in-flight operations drained before a checkpoint;
//! - `blocking_listener.rs`: `BlockingListener`, a TCP listener for threads, closed
//!   before a checkpoint and bound again after it;
//! - `tokio_listener.rs`: `crac::tokio::Listener`, the same on a tokio runtime;
//! - `tokio_client.rs`: `crac::tokio::Client`, a connection to a server, closed and made
//!   again;
//! - `tokio_pool.rs`: `crac::tokio::Pool`, up to N such connections, emptied before a
//!   checkpoint;
//! - `connection_sockets.rs`: the TCP sockets behind a client's or a pool's
//!   connections, claimed at a left-running checkpoint instead of closing them;
//! - `reopen.rs`: `#[crac(reopen)]` files, closed and opened again by path.

pub(crate) mod blocking_listener;
#[cfg(feature = "tokio")]
pub(crate) mod connection_sockets;
pub(crate) mod gate;
#[cfg(target_os = "linux")]
pub(crate) mod reopen;
#[cfg(feature = "tokio")]
pub(crate) mod tokio_client;
#[cfg(feature = "tokio")]
pub(crate) mod tokio_listener;
#[cfg(feature = "tokio")]
pub(crate) mod tokio_pool;
