//! Async hooks on the application's tokio runtime, and the resources built on them
//! (feature `tokio`): [`Listener`] drains and closes before a checkpoint and binds again
//! after the restore; [`Client`] holds a connection to a server, closed before a
//! checkpoint and made again after the restore; [`Pool`] holds up to N of them, emptied
//! before a checkpoint.

#[doc(hidden)]
pub use crate::async_hooks::{AsyncHook, block_on_hook};
pub use crate::async_hooks::{off_runtime, remember_runtime};
pub use crate::resources::tokio_client::{Borrowed, Client};
pub use crate::resources::tokio_listener::{Connection, Listener};
pub use crate::resources::tokio_pool::{Pool, Pooled};
