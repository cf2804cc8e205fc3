//! [`Pool`]: up to N connections to a server (PostgreSQL, redis), made on demand by a
//! function crac calls again after every restore. Before a checkpoint every borrowed
//! connection comes back and the pool is emptied, so that no connection is in the image;
//! checkouts wait meanwhile, and connect afresh afterwards. As many connections as were
//! open are made again in the background once the process runs on (restored or left
//! running), so that the first requests after a checkpoint seldom wait for one.

use std::borrow::Cow;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use crate::async_hooks::{block_on_hook_on, within};
use crate::error::BoxError;
use crate::event::{Checkpoint, Restore};
use crate::resource::Resource;
use crate::resources::tokio_client::{Close, Connect};

/// Up to `max_size` connections of type `C`, each made by a function crac calls again
/// after every restore. Cloning a pool shares it.
///
/// ```no_run
/// # async fn demo() -> Result<(), crac::BoxError> {
/// use crac::tokio::Pool;
///
/// // with tokio-postgres: `tokio_postgres::connect(url, NoTls)`, spawning the connection
/// let pool = Pool::connect("cache", 8, || async {
///     Ok(tokio::net::TcpStream::connect("127.0.0.1:6379").await?)
/// })
/// .await?;
/// let connection = pool.get().await?; // given back when dropped
/// # drop(connection);
/// # Ok(())
/// # }
/// ```
pub struct Pool<C> {
    shared: Arc<PoolState<C>>,
}

struct PoolState<C> {
    /// This state, for the tasks that connect again after a checkpoint.
    me: Weak<PoolState<C>>,
    name: String,
    runtime: Handle,
    connect: Connect<C>,
    close: Mutex<Option<Arc<Close<C>>>>,
    max_size: u32,
    drain_deadline: Mutex<Duration>,
    idle: Mutex<Vec<C>>,
    /// One permit a borrowed connection (or one being made); idle ones hold none. The
    /// size bound, and what a checkpoint takes all of to know every connection is back.
    permits: Arc<Semaphore>,
    /// Between `before_checkpoint` and `after_restore`: checkouts wait.
    closed_for_checkpoint: AtomicBool,
    /// How many connections the checkpoint closed: made again after it.
    closed: AtomicUsize,
    /// The tasks making them: a checkpoint stops those still connecting (to a server
    /// that does not answer, say) rather than wait for them.
    connecting: Mutex<Vec<AbortHandle>>,
    reopened: Notify,
}

/// A connection borrowed from a [`Pool`]: given back when dropped (or dropped with
/// [`discard`](Self::discard) when it is broken). A checkpoint waits for it.
pub struct Pooled<C> {
    connection: Option<C>,
    shared: Arc<PoolState<C>>,
    _permit: OwnedSemaphorePermit,
}

impl<C: Send + 'static> Pool<C> {
    /// Makes one connection now (an error is returned as is, so that a wrong address
    /// shows at start) and registers the pool, weakly. Plans show it at the caller's file
    /// and line. At most `max_size` connections are open at once (at least 1).
    #[track_caller]
    pub fn connect<F, Fut>(
        name: impl Into<String>,
        max_size: u32,
        connect: F,
    ) -> impl Future<Output = Result<Pool<C>, BoxError>>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<C, BoxError>> + Send + 'static,
    {
        let location = Location::caller();
        async move {
            let connect: Connect<C> = Box::new(move || Box::pin(connect()));
            let first = connect().await?;
            let max_size = max_size.max(1);
            let shared = Arc::new_cyclic(|me| PoolState {
                me: me.clone(),
                name: name.into(),
                runtime: Handle::current(),
                connect,
                close: Mutex::new(None),
                max_size,
                drain_deadline: Mutex::new(Duration::from_secs(10)),
                idle: Mutex::new(vec![first]),
                permits: Arc::new(Semaphore::new(max_size as usize)),
                closed_for_checkpoint: AtomicBool::new(false),
                closed: AtomicUsize::new(0),
                connecting: Mutex::new(Vec::new()),
                reopened: Notify::new(),
            });
            crate::context::global().register_at(&shared, location);
            Ok(Pool { shared })
        }
    }

    /// How to close each connection before a checkpoint (flush, say goodbye, await the
    /// socket's close); by default it is dropped.
    pub fn close_with<F, Fut>(self, close: F) -> Pool<C>
    where
        F: Fn(C) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let close: Close<C> = Box::new(move |c| Box::pin(close(c)));
        *self
            .shared
            .close
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(close));
        self
    }

    /// How long a checkpoint waits for borrowed connections to be given back before it
    /// is refused (default 10 s).
    pub fn with_drain_deadline(self, deadline: Duration) -> Pool<C> {
        *self
            .shared
            .drain_deadline
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = deadline;
        self
    }

    /// A connection: an idle one, or a new one while fewer than `max_size` are open;
    /// otherwise waits for one to be given back. Waits while a checkpoint runs.
    pub async fn get(&self) -> Result<Pooled<C>, BoxError> {
        PoolState::checkout(&self.shared).await
    }

    /// Drops the idle connections: the next checkouts connect again (after the server
    /// restarted, say). Borrowed ones are kept unless [discarded](Pooled::discard).
    pub fn reset(&self) {
        self.shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many connections are open now, idle or borrowed.
    pub fn size(&self) -> usize {
        self.shared.max_size as usize - self.shared.permits.available_permits()
            + self
                .shared
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
    }
}

impl<C> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Pool {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> std::fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.shared.name)
            .field("max_size", &self.shared.max_size)
            .finish_non_exhaustive()
    }
}

impl<C> Pooled<C> {
    /// Drops the connection instead of giving it back (it broke): the pool makes a new
    /// one when needed.
    pub fn discard(mut this: Pooled<C>) {
        this.connection.take();
    }
}

impl<C> Deref for Pooled<C> {
    type Target = C;

    fn deref(&self) -> &C {
        self.connection.as_ref().expect("present until dropped")
    }
}

impl<C> DerefMut for Pooled<C> {
    fn deref_mut(&mut self) -> &mut C {
        self.connection.as_mut().expect("present until dropped")
    }
}

impl<C> Drop for Pooled<C> {
    fn drop(&mut self) {
        // Back before the permit is released (fields drop after this): a checkpoint that
        // holds every permit finds every connection idle.
        if let Some(connection) = self.connection.take() {
            self.shared
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(connection);
        }
    }
}

impl<C> std::fmt::Debug for Pooled<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled")
            .field("pool", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<C: Send + 'static> PoolState<C> {
    /// [`Pool::get`]: the shared state is what a connection given back returns to.
    async fn checkout(shared: &Arc<PoolState<C>>) -> Result<Pooled<C>, BoxError> {
        loop {
            let reopened = shared.reopened.notified();
            if shared.closed_for_checkpoint.load(Ordering::SeqCst) {
                reopened.await;
                continue;
            }
            let permit = Arc::clone(&shared.permits)
                .acquire_owned()
                .await
                .map_err(|_| format!("`{}`: the pool is closed", shared.name))?;
            if shared.closed_for_checkpoint.load(Ordering::SeqCst) {
                // a checkpoint began while this waited: it must get the permit
                continue;
            }
            let idle = shared
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let connection = match idle {
                Some(connection) => connection,
                None => (shared.connect)()
                    .await
                    .map_err(|e| format!("connecting `{}`: {e}", shared.name))?,
            };
            return Ok(Pooled {
                connection: Some(connection),
                shared: Arc::clone(shared),
                _permit: permit,
            });
        }
    }

    async fn close_for_checkpoint(&self) -> Result<(), BoxError> {
        self.closed_for_checkpoint.store(true, Ordering::SeqCst);
        let deadline = *self
            .drain_deadline
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for task in self
            .connecting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        let every = Arc::clone(&self.permits).acquire_many_owned(self.max_size);
        let Some(Ok(_every)) = within(deadline, every).await else {
            let borrowed = self.max_size as usize - self.permits.available_permits();
            self.reopen();
            return Err(format!(
                "`{}`: {borrowed} borrowed connection(s) not given back within {deadline:?} \
                 (a task holds one across something that waits for this checkpoint?)",
                self.name
            )
            .into());
        };
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        self.closed.store(idle.len(), Ordering::SeqCst);
        let close = self
            .close
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(close) = close {
            for connection in idle {
                close(connection).await;
            }
        }
        Ok(())
    }

    /// Makes as many connections as the checkpoint closed, at once and in the background
    /// (a server that is away makes them fail quietly: checkouts connect on demand).
    fn connect_again(&self) {
        let closed = self.closed.swap(0, Ordering::SeqCst);
        let Some(me) = self.me.upgrade() else { return };
        let mut connecting = self
            .connecting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connecting.clear();
        for _ in 0..closed {
            let task = self.runtime.spawn(Arc::clone(&me).connect_idle());
            connecting.push(task.abort_handle());
        }
    }

    /// One more idle connection, unless the pool is full (a permit held counts as an
    /// open connection: it is one, or is about to be).
    async fn connect_idle(self: Arc<Self>) {
        let Ok(_permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return;
        };
        let open = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            + (self.max_size as usize - self.permits.available_permits());
        if open > self.max_size as usize || self.closed_for_checkpoint.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(connection) = (self.connect)().await {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(connection);
        }
    }

    /// Lets checkouts in again; they connect afresh (the pool is empty after a checkpoint).
    fn reopen(&self) {
        self.closed_for_checkpoint.store(false, Ordering::SeqCst);
        self.reopened.notify_waiters();
    }
}

impl<C: Send + 'static> Resource for PoolState<C> {
    fn before_checkpoint(&self, _: &Checkpoint) -> Result<(), BoxError> {
        block_on_hook_on(Some(&self.runtime), self.close_for_checkpoint())
    }

    fn after_restore(&self, _: &Restore) -> Result<(), BoxError> {
        self.reopen();
        self.connect_again();
        Ok(())
    }

    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.name)
    }
}
