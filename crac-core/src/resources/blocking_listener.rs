//! [`BlockingListener`]: a blocking TCP listener that takes part in checkpoints, for servers
//! that accept on a thread (the tokio one is `crac::tokio::Listener`). Before the image
//! it stops accepting — a thread blocked in `accept` is woken by a connection of its
//! own — waits for the
//! connections it handed out to be closed (within a deadline, else the checkpoint is
//! refused naming them) and closes its socket; after a restore it binds again, to the
//! address given at restore time when there is one. A checkpoint after which the process
//! goes on closes nothing: the socket and connections are claimed and carried (see
//! `crac::tokio::Listener`, which does the same).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, RawFd};
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::claims::{FdClaim, claim_fd};
use crate::error::BoxError;
use crate::event::{Checkpoint, Restore};
use crate::resource::Resource;

/// A blocking TCP listener that closes before a checkpoint and binds again after it;
/// it registers itself when bound.
///
/// ```no_run
/// let listener = crac::BlockingListener::bind("0.0.0.0:7878")?.restore_address_from("PORT");
/// loop {
///     let (connection, peer) = listener.accept()?; // waits through a checkpoint
///     std::thread::spawn(move || {
///         // serve `connection` (a `TcpStream` once dereferenced); the checkpoint waits
///         // until it is dropped
///         drop((connection, peer));
///     });
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct BlockingListener {
    shared: Arc<BlockingListenerState>,
}

/// An accepted connection: a `TcpStream` (through `Deref`), open for the checkpoint's
/// drain until dropped.
#[derive(Debug)]
pub struct BlockingConnection {
    stream: TcpStream,
    shared: Arc<BlockingListenerState>,
    id: u64,
}

#[derive(Debug)]
struct BlockingListenerState {
    address_env: Mutex<Option<String>>,
    drain_deadline: Mutex<Duration>,
    state: Mutex<State>,
    changed: Condvar,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// Shared with the threads blocked in `accept`; `None` from the drain to the restore.
    socket: Option<Arc<TcpListener>>,
    address: SocketAddr,
    /// Open connections: their peer, fd, and claim during a left-running checkpoint.
    connections: HashMap<u64, (SocketAddr, RawFd, Option<FdClaim>)>,
    /// During a left-running checkpoint: the socket's claim (every connection is claimed).
    kept: Option<Option<FdClaim>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BlockingListener {
    /// Binds and registers the listener, weakly: it takes part in checkpoints while it or
    /// one of its connections lives. Plans show it at the caller's file and line.
    #[track_caller]
    pub fn bind(address: impl ToSocketAddrs) -> io::Result<BlockingListener> {
        let location = Location::caller();
        let socket = TcpListener::bind(address)?;
        let shared = Arc::new(BlockingListenerState {
            address_env: Mutex::new(None),
            drain_deadline: Mutex::new(Duration::from_secs(10)),
            state: Mutex::new(State {
                address: socket.local_addr()?,
                socket: Some(Arc::new(socket)),
                connections: HashMap::new(),
                kept: None,
            }),
            changed: Condvar::new(),
            next_id: AtomicU64::new(0),
        });
        crate::context::global().register_at(&shared, location);
        Ok(BlockingListener { shared })
    }

    /// After a restore, bind to the address the restorer passed as `name`
    /// (`crac restore --env NAME=...`): a port (same host as before) or `host:port`.
    pub fn restore_address_from(self, name: &str) -> BlockingListener {
        *lock(&self.shared.address_env) = Some(name.to_string());
        self
    }

    /// How long open connections may take to close before the checkpoint is refused
    /// (default 10 s).
    pub fn with_drain_deadline(self, deadline: Duration) -> BlockingListener {
        *lock(&self.shared.drain_deadline) = deadline;
        self
    }

    /// The next connection; waits through a checkpoint.
    pub fn accept(&self) -> io::Result<(BlockingConnection, SocketAddr)> {
        let shared = &self.shared;
        loop {
            let socket = {
                let state = lock(&shared.state);
                let state = shared
                    .changed
                    .wait_while(state, |s| s.socket.is_none())
                    .unwrap_or_else(PoisonError::into_inner);
                Arc::clone(state.socket.as_ref().expect("waited for it"))
            };
            let accepted = socket.accept();
            drop(socket);
            let mut state = lock(&shared.state);
            if state.socket.is_none() {
                // woken by the drain (or accepted just before it): not handed out
                shared.changed.notify_all();
                continue;
            }
            let (stream, peer) = accepted?;
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let claim = state
                .kept
                .is_some()
                .then(|| claim_fd(&stream, "a connection of a crac listener"));
            state
                .connections
                .insert(id, (peer, stream.as_raw_fd(), claim));
            let connection = BlockingConnection {
                stream,
                shared: Arc::clone(shared),
                id,
            };
            return Ok((connection, peer));
        }
    }

    /// The address the listener is bound to now.
    pub fn local_addr(&self) -> SocketAddr {
        lock(&self.shared.state).address
    }
}

/// Where a listener binds after a restore: the address the restorer passed as `name`
/// (a port, same host as `last`, or `host:port`), else `last`. Only what this restore
/// passed counts: the process environment also holds values of earlier restores and of
/// the first start.
pub(crate) fn restore_address(
    name: Option<&str>,
    last: SocketAddr,
    restore: &Restore,
) -> Result<SocketAddr, BoxError> {
    let Some(name) = name else {
        return Ok(last);
    };
    let Some((_, value)) = restore.env.iter().find(|(key, _)| key == name) else {
        return Ok(last);
    };
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::new(last.ip(), port));
    }
    value
        .parse()
        .map_err(|_| format!("{name}={value:?} is neither a port nor host:port").into())
}

impl BlockingListenerState {
    /// Wakes the threads blocked in accept(2) on `socket` (a connection of our own each)
    /// until none is, within `deadline`; with `connections`, until they are closed too.
    fn let_go(
        &self,
        mut state: MutexGuard<'_, State>,
        socket: Arc<TcpListener>,
        deadline: Duration,
        connections: bool,
    ) -> Result<(), BoxError> {
        let until = Instant::now() + deadline;
        let wake = wake_address(state.address);
        while Arc::strong_count(&socket) > 1 || (connections && !state.connections.is_empty()) {
            if Arc::strong_count(&socket) > 1 {
                drop(TcpStream::connect_timeout(
                    &wake,
                    Duration::from_millis(100),
                ));
            }
            if until <= Instant::now() {
                let peers: Vec<String> = state
                    .connections
                    .values()
                    .map(|(p, ..)| p.to_string())
                    .collect();
                return Err(format!(
                    "{} connection(s) still open after {deadline:?}: {}",
                    peers.len(),
                    peers.join(", ")
                )
                .into());
            }
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Ok(())
    }
}

impl Resource for BlockingListenerState {
    fn before_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), BoxError> {
        if checkpoint.leaves_running() {
            let state = &mut *lock(&self.state);
            for (_, fd, claim) in state.connections.values_mut() {
                *claim = Some(claim_fd(fd, "a connection of a crac listener"));
            }
            state.kept = Some(
                state
                    .socket
                    .as_deref()
                    .map(|s| claim_fd(s, "a crac listener")),
            );
            return Ok(());
        }
        let deadline = *lock(&self.drain_deadline);
        let mut state = lock(&self.state);
        match state.socket.take() {
            // The socket stays open until the last thread blocked in accept(2) on it lets
            // go; a connection of our own wakes each of them.
            Some(socket) => self.let_go(state, socket, deadline, true),
            None => Ok(()),
        }
    }

    fn after_restore(&self, restore: &Restore) -> Result<(), BoxError> {
        let mut state = lock(&self.state);
        for (.., claim) in state.connections.values_mut() {
            *claim = None;
        }
        if state.kept.take().is_some() {
            if !restore.is_restored() {
                return Ok(()); // the running process: it never stopped serving
            }
            // The image's socket goes; its connections came back closed (`--tcp-close`).
            if let Some(socket) = state.socket.take() {
                let deadline = *lock(&self.drain_deadline);
                self.let_go(state, socket, deadline, false)?;
                state = lock(&self.state);
            }
        }
        let name = lock(&self.address_env).clone();
        let address = restore_address(name.as_deref(), state.address, restore)?;
        let socket =
            TcpListener::bind(address).map_err(|e| format!("binding {address} again: {e}"))?;
        state.address = socket.local_addr()?;
        state.socket = Some(Arc::new(socket));
        self.changed.notify_all();
        Ok(())
    }

    fn name(&self) -> Cow<'_, str> {
        Cow::Owned(format!("listener {}", lock(&self.state).address))
    }

    /// Above the clients the requests use (rank 0): requests drain while they are
    /// still connected, and the listener opens after they are back.
    fn rank(&self) -> u32 {
        1
    }
}

/// Where a connection of our own reaches the listener: loopback for a wildcard address.
fn wake_address(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        ip if !ip.is_unspecified() => bound,
        std::net::IpAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], bound.port())),
        std::net::IpAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, bound.port())),
    }
}

impl Deref for BlockingConnection {
    type Target = TcpStream;
    fn deref(&self) -> &TcpStream {
        &self.stream
    }
}

impl DerefMut for BlockingConnection {
    fn deref_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

impl Drop for BlockingConnection {
    fn drop(&mut self) {
        lock(&self.shared.state).connections.remove(&self.id);
        self.shared.changed.notify_all();
    }
}
