//! [`Client`]: a connection to a server (redis, PostgreSQL, a broker) that closes
//! before a checkpoint and connects again after the restore — at once, or on first use
//! when the server is down at restore time. Users wait while it is closed instead of
//! finding it gone.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, RwLock, RwLockReadGuard};

use crate::error::BoxError;
use crate::event::{Checkpoint, Restore};
use crate::resource::Resource;

type Connect<C> =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<C, BoxError>> + Send>> + Send + Sync>;
type Close<C> = Box<dyn Fn(C) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A connection of type `C`, made by a function crac calls again after every restore.
///
/// ```no_run
/// # async fn demo() -> Result<(), crac::BoxError> {
/// use crac::tokio::Client;
/// use tokio::io::AsyncWriteExt;
///
/// // with the `redis` crate: `redis::Client::open(url)?.get_multiplexed_async_connection()`
/// let cache = Client::connect("cache", || async {
///     Ok(tokio::sync::Mutex::new(tokio::net::TcpStream::connect("127.0.0.1:6379").await?))
/// })
/// .await?
/// .reconnect_lazily(); // a restore does not fail while the server is down
/// cache.get().await?.lock().await.write_all(b"PING\r\n").await?;
/// # Ok(())
/// # }
/// ```
pub struct Client<C> {
    shared: Arc<Shared<C>>,
}

struct Shared<C> {
    name: String,
    connect: Connect<C>,
    close: Mutex<Option<Close<C>>>,
    lazy: AtomicBool,
    connection: RwLock<Option<C>>,
    /// Between `before_checkpoint` and `after_restore`: users wait.
    closed_for_checkpoint: AtomicBool,
    reopened: Notify,
}

/// The connection, borrowed from a [`Client`]; a checkpoint waits for it to be given back.
pub type Borrowed<'a, C> = RwLockReadGuard<'a, C>;

impl<C: Send + Sync + 'static> Client<C> {
    /// Connects now (an error is returned as is) and registers the client, weakly.
    pub async fn connect<F, Fut>(name: impl Into<String>, connect: F) -> Result<Client<C>, BoxError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<C, BoxError>> + Send + 'static,
    {
        let connect: Connect<C> = Box::new(move || Box::pin(connect()));
        let first = connect().await?;
        let shared = Arc::new(Shared {
            name: name.into(),
            connect,
            close: Mutex::new(None),
            lazy: AtomicBool::new(false),
            connection: RwLock::new(Some(first)),
            closed_for_checkpoint: AtomicBool::new(false),
            reopened: Notify::new(),
        });
        crate::context::register(&shared);
        Ok(Client { shared })
    }

    /// How to close the connection before a checkpoint (flush, say goodbye, await the
    /// socket's close); by default it is dropped.
    pub fn close_with<F, Fut>(self, close: F) -> Client<C>
    where
        F: Fn(C) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        *self
            .shared
            .close
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Box::new(move |c| Box::pin(close(c))));
        self
    }

    /// After a restore, connect on first use instead of at once: a restore then does not
    /// fail while the server is down, and the first user gets the connection error.
    pub fn reconnect_lazily(self) -> Client<C> {
        self.shared.lazy.store(true, Ordering::SeqCst);
        self
    }

    /// The connection: waits while a checkpoint has it closed, and connects if it was
    /// left to connect on first use.
    pub async fn get(&self) -> Result<Borrowed<'_, C>, BoxError> {
        let shared = &self.shared;
        loop {
            let reopened = shared.reopened.notified();
            if shared.closed_for_checkpoint.load(Ordering::SeqCst) {
                reopened.await;
                continue;
            }
            let guard = shared.connection.read().await;
            if let Ok(connected) = RwLockReadGuard::try_map(guard, Option::as_ref) {
                return Ok(connected);
            }
            let mut slot = shared.connection.write().await;
            if slot.is_none() && !shared.closed_for_checkpoint.load(Ordering::SeqCst) {
                *slot = Some(
                    (shared.connect)()
                        .await
                        .map_err(|e| format!("connecting `{}`: {e}", shared.name))?,
                );
            }
        }
    }
}

impl<C> std::fmt::Debug for Client<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<C: Send + Sync + 'static> Shared<C> {
    async fn close_for_checkpoint(&self) {
        self.closed_for_checkpoint.store(true, Ordering::SeqCst);
        // Waits for every borrowed connection to be given back.
        let taken = self.connection.write().await.take();
        let close = self
            .close
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let (Some(connection), Some(close)) = (taken, &close) {
            close(connection).await;
        }
        *self.close.lock().unwrap_or_else(PoisonError::into_inner) = close;
    }

    async fn reopen(&self) -> Result<(), BoxError> {
        let connected = if self.lazy.load(Ordering::SeqCst) {
            Ok(None)
        } else {
            (self.connect)().await.map(Some)
        };
        self.closed_for_checkpoint.store(false, Ordering::SeqCst);
        self.reopened.notify_waiters();
        *self.connection.write().await = connected.map_err(|e| {
            format!(
                "connecting `{}` again: {e} (use reconnect_lazily() if the server may be \
                 down at restore time)",
                self.name
            )
        })?;
        Ok(())
    }
}

impl<C: Send + Sync + 'static> Resource for Shared<C> {
    fn before_checkpoint(&self, _: &Checkpoint) -> Result<(), BoxError> {
        crate::tokio::block_on_hook(self.close_for_checkpoint())
    }

    fn after_restore(&self, _: &Restore) -> Result<(), BoxError> {
        crate::tokio::block_on_hook(self.reopen())
    }

    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.name)
    }
}
