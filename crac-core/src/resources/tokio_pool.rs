//! [`Pool`]: up to N connections to a server (PostgreSQL, redis), made on demand by a
//! function crac calls again after every restore.
//!
//! - A stopping checkpoint waits for every borrowed connection to come back and empties
//!   the pool, so that no connection is in the image; checkouts wait meanwhile.
//! - A left-running checkpoint ([`Checkpoint::leaves_running`]) closes nothing: the
//!   sockets of every connection, idle or borrowed, are claimed (found while `connect`
//!   ran, see `connection_sockets.rs`), the engine carries them into the image where
//!   they come back closed, and the running process goes on using the same connections;
//!   checkouts go on meanwhile, only new connections wait for the checkpoint to end.
//!   A pool with a connection whose socket cannot be carried (a unix socket) is emptied
//!   as for a stopping checkpoint.
//! - A restored copy drops the connections it was restored with (dead sockets) before
//!   anyone uses them, even a checkout that runs before the copy's `after_restore`.
//!
//! As many connections as were open are made again in the background once the process
//! runs on without them, so that the first requests seldom wait for one.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use crate::async_hooks::{block_on_hook_on, within};
use crate::claims::FdClaim;
use crate::error::BoxError;
use crate::event::{Checkpoint, Restore};
use crate::resource::Resource;
use crate::resources::connection_sockets::{Making, Sockets};
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
    idle: Mutex<Vec<Tracked<C>>>,
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
    /// The sockets of every open connection, idle or borrowed, by id.
    live: Mutex<HashMap<u64, Live>>,
    next_id: AtomicU64,
    /// Restores so far: a connection made before the last one is a dead copy.
    epoch: AtomicU64,
    /// From a left-running checkpoint's `before_checkpoint` to its `after_restore`:
    /// connections are claimed rather than closed, and no new one is made.
    keeping: AtomicBool,
    /// The checkpoint under way claimed the connections (rather than closing them).
    kept: AtomicBool,
    /// Connections being made now, and their end: a left-running checkpoint waits for
    /// them so that each is claimed.
    making: AtomicUsize,
    made: Notify,
}

/// A connection and what the pool knows of it.
struct Tracked<C> {
    id: u64,
    epoch: u64,
    sockets: Sockets,
    connection: C,
}

/// An open connection's sockets, and their claims during a left-running checkpoint.
struct Live {
    sockets: Sockets,
    claims: Vec<FdClaim>,
}

/// A connection borrowed from a [`Pool`]: given back when dropped (or dropped with
/// [`discard`](Self::discard) when it is broken). A checkpoint waits for it.
pub struct Pooled<C> {
    entry: Option<Tracked<C>>,
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
            let (first, sockets) = Sockets::traced(connect()).await;
            let first = first?;
            let max_size = max_size.max(1);
            let shared = Arc::new_cyclic(|me| PoolState {
                me: me.clone(),
                name: name.into(),
                runtime: Handle::current(),
                connect,
                close: Mutex::new(None),
                max_size,
                drain_deadline: Mutex::new(Duration::from_secs(10)),
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(max_size as usize)),
                closed_for_checkpoint: AtomicBool::new(false),
                closed: AtomicUsize::new(0),
                connecting: Mutex::new(Vec::new()),
                reopened: Notify::new(),
                live: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                epoch: AtomicU64::new(0),
                keeping: AtomicBool::new(false),
                kept: AtomicBool::new(false),
                making: AtomicUsize::new(0),
                made: Notify::new(),
            });
            let first = shared.register(first, sockets);
            lock(&shared.idle).push(first);
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
        let idle = std::mem::take(&mut *lock(&self.shared.idle));
        for entry in &idle {
            self.shared.forget(entry.id);
        }
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
        if let Some(entry) = this.entry.take() {
            this.shared.forget(entry.id);
        }
    }
}

impl<C> Deref for Pooled<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self
            .entry
            .as_ref()
            .expect("present until dropped")
            .connection
    }
}

impl<C> DerefMut for Pooled<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self
            .entry
            .as_mut()
            .expect("present until dropped")
            .connection
    }
}

impl<C> Drop for Pooled<C> {
    fn drop(&mut self) {
        // Back before the permit is released (fields drop after this): a checkpoint that
        // holds every permit finds every connection idle. One borrowed across a restore
        // is a dead copy: dropped.
        if let Some(entry) = self.entry.take() {
            if entry.epoch == self.shared.epoch.load(Ordering::SeqCst) {
                lock(&self.shared.idle).push(entry);
            } else {
                self.shared.forget(entry.id);
            }
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<C> PoolState<C> {
    /// A connection just made, with its sockets.
    fn register(&self, connection: C, sockets: Sockets) -> Tracked<C> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let live = Live {
            sockets: sockets.clone(),
            claims: Vec::new(),
        };
        lock(&self.live).insert(id, live);
        Tracked {
            id,
            epoch: self.epoch.load(Ordering::SeqCst),
            sockets,
            connection,
        }
    }

    /// A connection dropped: its claims go before its sockets close.
    fn forget(&self, id: u64) {
        lock(&self.live).remove(&id);
    }

    /// Not a dead copy: made since the last restore, and, while a left-running
    /// checkpoint is under way (a restored copy runs before its `after_restore`), still
    /// connected.
    fn usable(&self, entry: &Tracked<C>) -> bool {
        entry.epoch == self.epoch.load(Ordering::SeqCst)
            && (!self.keeping.load(Ordering::SeqCst) || entry.sockets.connected())
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
            let idle = lock(&shared.idle).pop();
            let entry = match idle {
                Some(entry) if shared.usable(&entry) => entry,
                Some(dead) => {
                    shared.forget(dead.id);
                    continue;
                }
                None => match shared.make().await {
                    Some(made) => made.map_err(|e| format!("connecting `{}`: {e}", shared.name))?,
                    None => {
                        // a left-running checkpoint is under way: connect after it
                        drop(permit);
                        reopened.await;
                        continue;
                    }
                },
            };
            return Ok(Pooled {
                entry: Some(entry),
                shared: Arc::clone(shared),
                _permit: permit,
            });
        }
    }

    /// A new connection, registered with its sockets; none while a left-running
    /// checkpoint is under way (it could not be claimed in time).
    async fn make(&self) -> Option<Result<Tracked<C>, BoxError>> {
        let _making = Making::start(&self.making, &self.made, &self.keeping)?;
        let (made, sockets) = Sockets::traced((self.connect)()).await;
        Some(made.map(|connection| self.register(connection, sockets)))
    }

    /// A left-running checkpoint: claims the sockets of every connection, closes none.
    /// False, with nothing claimed, when a connection cannot be carried: the pool is
    /// then emptied as for a stopping checkpoint.
    async fn keep(&self) -> Result<bool, BoxError> {
        self.keeping.store(true, Ordering::SeqCst);
        self.stop_connecting();
        let deadline = *lock(&self.drain_deadline);
        if !Making::none_left(&self.making, &self.made, deadline).await {
            return Err(format!(
                "`{}`: a connection was still being made after {deadline:?} (the server does \
                 not answer?)",
                self.name
            )
            .into());
        }
        let mut live = lock(&self.live);
        if live.values().any(|open| !open.sockets.keepable()) {
            self.keeping.store(false, Ordering::SeqCst);
            return Ok(false);
        }
        let owner = format!("a connection of pool `{}`", self.name);
        let mut broken = Vec::new();
        for (id, open) in live.iter_mut() {
            match open.sockets.claim(&owner) {
                Some(claims) => open.claims = claims,
                None => broken.push(*id),
            }
        }
        drop(live);
        // Idle ones whose socket is gone (the server closed them) are of no more use.
        let mut idle = lock(&self.idle);
        let (gone, kept): (Vec<_>, Vec<_>) = idle.drain(..).partition(|e| broken.contains(&e.id));
        *idle = kept;
        drop(idle);
        for entry in gone {
            self.forget(entry.id);
        }
        self.kept.store(true, Ordering::SeqCst);
        Ok(true)
    }

    /// After a left-running checkpoint: the claims go; a restored copy drops its copies
    /// of the connections (closed) and makes as many again.
    fn unkeep(&self, restore: &Restore) {
        let mut live = lock(&self.live);
        live.values_mut().for_each(|open| open.claims.clear());
        if restore.is_restored() {
            self.epoch.fetch_add(1, Ordering::SeqCst);
            self.closed.store(live.len(), Ordering::SeqCst);
            live.clear();
            drop(live);
            // borrowed ones are dropped when given back (their epoch is over)
            drop(std::mem::take(&mut *lock(&self.idle)));
        }
        self.keeping.store(false, Ordering::SeqCst);
        self.reopened.notify_waiters();
    }

    /// Stops the tasks still making connections again after the last checkpoint (to a
    /// server that does not answer, say) rather than wait for them.
    fn stop_connecting(&self) {
        for task in lock(&self.connecting).drain(..) {
            task.abort();
        }
    }

    async fn close_for_checkpoint(&self) -> Result<(), BoxError> {
        self.closed_for_checkpoint.store(true, Ordering::SeqCst);
        let deadline = *lock(&self.drain_deadline);
        self.stop_connecting();
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
        let idle = std::mem::take(&mut *lock(&self.idle));
        self.closed.store(idle.len(), Ordering::SeqCst);
        for entry in &idle {
            self.forget(entry.id);
        }
        let close = lock(&self.close).clone();
        if let Some(close) = close {
            for entry in idle {
                close(entry.connection).await;
            }
        }
        Ok(())
    }

    /// Makes as many connections as the checkpoint closed, at once and in the background
    /// (a server that is away makes them fail quietly: checkouts connect on demand).
    fn connect_again(&self) {
        let closed = self.closed.swap(0, Ordering::SeqCst);
        let Some(me) = self.me.upgrade() else { return };
        let mut connecting = lock(&self.connecting);
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
        let open =
            lock(&self.idle).len() + (self.max_size as usize - self.permits.available_permits());
        if open > self.max_size as usize || self.closed_for_checkpoint.load(Ordering::SeqCst) {
            return;
        }
        if let Some(Ok(entry)) = self.make().await {
            lock(&self.idle).push(entry);
        }
    }

    /// Lets checkouts in again; they connect afresh (the pool is empty after a checkpoint).
    fn reopen(&self) {
        self.closed_for_checkpoint.store(false, Ordering::SeqCst);
        self.reopened.notify_waiters();
    }
}

impl<C: Send + 'static> Resource for PoolState<C> {
    fn before_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), BoxError> {
        block_on_hook_on(Some(&self.runtime), async {
            if checkpoint.leaves_running() && self.keep().await? {
                return Ok(());
            }
            self.close_for_checkpoint().await
        })
    }

    fn after_restore(&self, restore: &Restore) -> Result<(), BoxError> {
        if self.kept.swap(false, Ordering::SeqCst) || self.keeping.load(Ordering::SeqCst) {
            self.unkeep(restore);
            if !restore.is_restored() {
                return Ok(()); // the running process: it kept its connections
            }
        } else {
            self.reopen();
        }
        self.connect_again();
        Ok(())
    }

    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.name)
    }
}
