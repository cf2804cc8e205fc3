//! [`Client`]: a connection to a server (redis, PostgreSQL, a broker) that closes
//! before a checkpoint and connects again after the restore — at once, or on first use
//! when the server is down at restore time (a restore does not fail for a dependency
//! that is briefly away, unless asked to). Users wait while it is closed instead of
//! finding it gone.
//!
//! A left-running checkpoint ([`Checkpoint::leaves_running`]) closes nothing: the
//! connection's sockets (found while `connect` ran, see `connection_sockets.rs`) are
//! claimed, the engine carries them into the image where they come back closed, and the
//! running process goes on using the same connection without waiting. A restored copy
//! connects again as after any restore, and its users wait for that rather than get
//! the dead copy, even before its `after_restore` runs. A connection whose socket
//! cannot be carried (a unix socket) is closed as for a stopping checkpoint.

use std::borrow::Cow;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{Notify, RwLock, RwLockReadGuard};

use crate::async_hooks::{block_on_hook_on, within};
use crate::claims::FdClaim;
use crate::error::BoxError;
use crate::event::{Checkpoint, Restore};
use crate::resource::Resource;
use crate::resources::connection_sockets::{Making, Sockets};

/// The connect function a client or a pool calls again after every restore.
pub(crate) type Connect<C> =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<C, BoxError>> + Send>> + Send + Sync>;
/// The optional async close before a checkpoint.
pub(crate) type Close<C> = Box<dyn Fn(C) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

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
/// .await?;
/// cache.get().await?.lock().await.write_all(b"PING\r\n").await?;
/// # Ok(())
/// # }
/// ```
pub struct Client<C> {
    shared: Arc<ClientState<C>>,
}

/// When a restored copy connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reconnect {
    /// At once; if the server is down, on first use.
    Soon,
    /// On first use.
    Lazily,
    /// At once, and the restore fails if it cannot.
    Required,
}

struct ClientState<C> {
    name: String,
    runtime: Handle,
    connect: Connect<C>,
    close: Mutex<Option<Close<C>>>,
    reconnect: Mutex<Reconnect>,
    drain_deadline: Mutex<Duration>,
    connection: RwLock<Option<C>>,
    /// Between `before_checkpoint` and `after_restore`: users wait.
    closed_for_checkpoint: AtomicBool,
    /// The checkpoint took the connection away (a refused drain leaves it in place).
    taken: AtomicBool,
    reopened: Notify,
    /// The sockets of the connection, while there is one (set with it).
    sockets: Mutex<Option<Sockets>>,
    /// Their claims during a left-running checkpoint.
    claims: Mutex<Vec<FdClaim>>,
    /// From a left-running checkpoint's `before_checkpoint` to its `after_restore`: the
    /// connection is claimed rather than closed, and no new one is made.
    keeping: AtomicBool,
    /// The checkpoint under way claimed the connection (rather than closing it).
    kept: AtomicBool,
    /// Connections being made now, and their end: a left-running checkpoint waits for
    /// them so that each is claimed.
    making: AtomicUsize,
    made: Notify,
}

/// The connection, borrowed from a [`Client`]; a checkpoint waits for it to be given back.
pub type Borrowed<'a, C> = RwLockReadGuard<'a, C>;

impl<C: Send + Sync + 'static> Client<C> {
    /// Connects now (an error is returned as is) and registers the client, weakly. Plans
    /// show it at the caller's file and line.
    #[track_caller]
    pub fn connect<F, Fut>(
        name: impl Into<String>,
        connect: F,
    ) -> impl Future<Output = Result<Client<C>, BoxError>>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<C, BoxError>> + Send + 'static,
    {
        let location = Location::caller();
        async move {
            let connect: Connect<C> = Box::new(move || Box::pin(connect()));
            let (first, sockets) = Sockets::traced(connect()).await;
            let first = first?;
            let shared = Arc::new(ClientState {
                name: name.into(),
                runtime: Handle::current(),
                connect,
                close: Mutex::new(None),
                reconnect: Mutex::new(Reconnect::Soon),
                drain_deadline: Mutex::new(Duration::from_secs(10)),
                connection: RwLock::new(Some(first)),
                closed_for_checkpoint: AtomicBool::new(false),
                taken: AtomicBool::new(false),
                reopened: Notify::new(),
                sockets: Mutex::new(Some(sockets)),
                claims: Mutex::new(Vec::new()),
                keeping: AtomicBool::new(false),
                kept: AtomicBool::new(false),
                making: AtomicUsize::new(0),
                made: Notify::new(),
            });
            crate::context::global().register_at(&shared, location);
            Ok(Client { shared })
        }
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

    /// After a restore, connect on first use, not at once. (By default a restored copy
    /// connects at once, and on first use if the server is down then.)
    pub fn reconnect_lazily(self) -> Client<C> {
        self.set_reconnect(Reconnect::Lazily)
    }

    /// After a restore, connect at once, and fail the restore if the server is down.
    pub fn require_connection_at_restore(self) -> Client<C> {
        self.set_reconnect(Reconnect::Required)
    }

    /// How long a checkpoint waits for borrowed connections to be given back before it
    /// is refused (default 10 s).
    pub fn with_drain_deadline(self, deadline: Duration) -> Client<C> {
        *self
            .shared
            .drain_deadline
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = deadline;
        self
    }

    /// Drops the connection: the next [`get`](Self::get) connects again (after the
    /// server restarted, say).
    pub async fn reset(&self) {
        let mut slot = self.shared.connection.write().await;
        self.shared.forget();
        slot.take();
    }

    fn set_reconnect(self, when: Reconnect) -> Client<C> {
        *self
            .shared
            .reconnect
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = when;
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
                if shared.dead_copy() {
                    drop(connected);
                    reopened.await; // this copy's `after_restore` connects again
                    continue;
                }
                return Ok(connected);
            }
            let mut slot = shared.connection.write().await;
            if slot.is_none() && !shared.closed_for_checkpoint.load(Ordering::SeqCst) {
                let Some(_making) = Making::start(&shared.making, &shared.made, &shared.keeping)
                else {
                    drop(slot);
                    reopened.await; // a left-running checkpoint: connect after it
                    continue;
                };
                let connection = shared
                    .connect_traced()
                    .await
                    .map_err(|e| format!("connecting `{}`: {e}", shared.name))?;
                *slot = Some(connection);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<C> std::fmt::Debug for Client<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<C: Send + Sync + 'static> ClientState<C> {
    /// Connects, noting the connection's sockets (stored before the caller stores the
    /// connection, under the slot's write lock).
    async fn connect_traced(&self) -> Result<C, BoxError> {
        let (connected, sockets) = Sockets::traced((self.connect)()).await;
        let connection = connected?;
        *lock(&self.sockets) = Some(sockets);
        Ok(connection)
    }

    /// The connection goes (under the slot's write lock): so do its sockets and claims.
    fn forget(&self) {
        lock(&self.claims).clear();
        lock(&self.sockets).take();
    }

    /// While a left-running checkpoint is under way, whether the connection's sockets
    /// are closed: this is a copy restored from its image, before its `after_restore`.
    fn dead_copy(&self) -> bool {
        self.keeping.load(Ordering::SeqCst)
            && lock(&self.sockets)
                .as_ref()
                .is_some_and(|sockets| !sockets.connected())
    }

    /// A left-running checkpoint: claims the connection's sockets, closes nothing.
    /// False, with nothing claimed, when they cannot be carried: the connection is then
    /// closed as for a stopping checkpoint.
    async fn keep(&self) -> Result<bool, BoxError> {
        self.keeping.store(true, Ordering::SeqCst);
        let deadline = *lock(&self.drain_deadline);
        if !Making::none_left(&self.making, &self.made, deadline).await {
            return Err(format!(
                "`{}`: the connection was still being made after {deadline:?} (the server \
                 does not answer?)",
                self.name
            )
            .into());
        }
        let sockets = lock(&self.sockets).clone();
        match sockets {
            Some(sockets) if !sockets.keepable() => {
                self.keeping.store(false, Ordering::SeqCst);
                return Ok(false);
            }
            // a socket gone (the connection broke) is not in the image either
            Some(sockets) => {
                let owner = format!("the connection of client `{}`", self.name);
                *lock(&self.claims) = sockets.claim(&owner).unwrap_or_default();
            }
            None => {}
        }
        self.kept.store(true, Ordering::SeqCst);
        Ok(true)
    }

    /// After a left-running checkpoint: the claims go. A restored copy's connection is
    /// a dead copy: it is dropped, and made again as after any restore.
    async fn unkeep(&self, restore: &Restore) -> Result<(), BoxError> {
        lock(&self.claims).clear();
        if !restore.is_restored() {
            self.keeping.store(false, Ordering::SeqCst);
            self.reopened.notify_waiters();
            return Ok(());
        }
        self.closed_for_checkpoint.store(true, Ordering::SeqCst);
        self.keeping.store(false, Ordering::SeqCst);
        // borrowers of the dead copy fail at once and give it back
        let mut slot = self.connection.write().await;
        self.forget();
        slot.take();
        drop(slot);
        self.taken.store(true, Ordering::SeqCst);
        self.reopen().await
    }

    async fn close_for_checkpoint(&self) -> Result<(), BoxError> {
        self.closed_for_checkpoint.store(true, Ordering::SeqCst);
        let deadline = *self
            .drain_deadline
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Waits for every borrowed connection to be given back.
        let Some(mut slot) = within(deadline, self.connection.write()).await else {
            return Err(format!(
                "`{}`: a borrowed connection was not given back within {deadline:?} (a task \
                 holds it across something that waits for this checkpoint?)",
                self.name
            )
            .into());
        };
        self.forget();
        let taken = slot.take();
        self.taken.store(true, Ordering::SeqCst);
        drop(slot);
        let close = self
            .close
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let (Some(connection), Some(close)) = (taken, &close) {
            close(connection).await;
        }
        *self.close.lock().unwrap_or_else(PoisonError::into_inner) = close;
        Ok(())
    }

    async fn reopen(&self) -> Result<(), BoxError> {
        if !self.taken.swap(false, Ordering::SeqCst) {
            // rolled back before the connection was taken: it is still there
            self.closed_for_checkpoint.store(false, Ordering::SeqCst);
            self.reopened.notify_waiters();
            return Ok(());
        }
        let when = *self
            .reconnect
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let connected = match when {
            Reconnect::Lazily => Ok(None),
            _ => self.connect_traced().await.map(Some),
        };
        // Stored before users are let in: none of them connects a second time.
        let outcome = match connected {
            Ok(connection) => {
                *self.connection.write().await = connection;
                Ok(())
            }
            Err(e) if when == Reconnect::Required => Err(format!(
                "connecting `{}` again: {e} (without require_connection_at_restore() it \
                 would connect on first use)",
                self.name
            )
            .into()),
            // the server is away: the first user connects
            Err(_) => Ok(()),
        };
        self.closed_for_checkpoint.store(false, Ordering::SeqCst);
        self.reopened.notify_waiters();
        outcome
    }
}

impl<C: Send + Sync + 'static> Resource for ClientState<C> {
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
            return block_on_hook_on(Some(&self.runtime), self.unkeep(restore));
        }
        block_on_hook_on(Some(&self.runtime), self.reopen())
    }

    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.name)
    }
}
