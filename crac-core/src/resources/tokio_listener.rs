//! [`Listener`]: a tokio TCP listener that takes part in checkpoints. Before the image
//! is taken it stops accepting, lets the requests in flight finish (idle keep-alive
//! connections are ended at once; busy ones get a deadline, then the checkpoint is
//! refused naming them — see [`Connection`] for what counts as idle), and closes its
//! socket, so that the open-resource check passes
//! and copies restored from one image never share a listening socket. After a restore
//! it binds again — to the address given at restore time when there is one.
//!
//! A checkpoint after which the process goes on ([`Checkpoint::leaves_running`]) closes
//! nothing: the socket and its connections are claimed and carried into the image, and
//! the running process keeps serving (the kernel queues new connections while CRIU has it
//! frozen; requests in flight are frozen with it and go on). The image's copies of the
//! connections come back closed (the engine dumps and restores them with `--tcp-close`),
//! and a restored copy closes its copy of the socket and binds afresh, as after any restore.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::runtime::Handle;

use super::blocking_listener::restore_address;
use crate::async_hooks::refuse_on_runtime_thread;
use crate::claims::{FdClaim, claim_fd};
use crate::error::BoxError;
use crate::event::{Checkpoint, Restore};
use crate::resource::Resource;

/// A TCP listener that drains and closes before a checkpoint and binds again after the
/// restore; it registers itself when bound. With the `axum` feature it is an
/// `axum::serve::Listener`: `axum::serve(crac::tokio::Listener::bind(addr).await?, app)`.
///
/// ```no_run
/// # async fn serve() -> std::io::Result<()> {
/// let listener = crac::tokio::Listener::bind("0.0.0.0:8080")
///     .await?
///     .restore_address_from("PORT"); // `crac restore --env PORT=8081` moves it
/// loop {
///     let (connection, peer) = listener.accept().await?;
///     // hand `connection` (AsyncRead + AsyncWrite) to hyper, tonic, ...
/// #   drop((connection, peer));
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Listener {
    shared: Arc<ListenerState>,
}

/// An accepted connection: the stream, counted as open until dropped. While its
/// listener drains, a connection that has answered everything it read (a keep-alive
/// connection of a request/response protocol such as HTTP/1, between two requests) sees
/// the end of its stream at its next read, even when the client has already sent its
/// next request — left unread, for the client to send again on a new connection, as HTTP
/// clients do when a keep-alive connection closes between requests; one that has read
/// a request it has not answered yet is left to finish.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    shared: Arc<ListenerState>,
    id: u64,
    /// Nothing read since the last response was flushed: no request is under way.
    answered: bool,
    /// Written since the last flush: a response under way.
    responding: bool,
    /// The drain ended the stream at a request boundary.
    ended: bool,
}

#[derive(Debug)]
struct ListenerState {
    runtime: Handle,
    address_env: Mutex<Option<String>>,
    drain_deadline: Mutex<Duration>,
    /// The address bound last: where the listener binds again by default.
    address: Mutex<SocketAddr>,
    socket: Mutex<Option<TcpListener>>,
    /// The task waiting in `accept`, woken when the socket goes or comes back.
    acceptor: Mutex<Option<Waker>>,
    draining: AtomicBool,
    /// Open connections: their peer and, while a read waits, its waker.
    connections: Mutex<HashMap<u64, Open>>,
    /// From a left-running checkpoint's `before_checkpoint` to its `after_restore`: the
    /// socket is kept, claimed, and every connection is claimed too, even one accepted
    /// meanwhile (the process runs until CRIU freezes it).
    keeping: AtomicBool,
    /// The socket's claim while kept.
    kept: Mutex<Option<FdClaim>>,
    closed: Condvar,
    next_id: AtomicU64,
}

/// An open connection as its listener sees it.
#[derive(Debug)]
struct Open {
    peer: SocketAddr,
    fd: std::os::fd::RawFd,
    /// While a read waits: woken when a drain starts.
    reader: Option<Waker>,
    /// Held during a left-running checkpoint, so that the engine carries the connection.
    claim: Option<FdClaim>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Listener {
    /// Binds (on the current tokio runtime) and registers the listener, weakly: it takes
    /// part in checkpoints for as long as it or one of its connections lives. Plans show
    /// it at the caller's file and line (hence a function returning the future: an
    /// `async fn` cannot see its caller).
    #[track_caller]
    pub fn bind(address: impl ToSocketAddrs) -> impl Future<Output = io::Result<Listener>> {
        let location = Location::caller();
        async move {
            let socket = TcpListener::bind(address).await?;
            let shared = Arc::new(ListenerState {
                runtime: Handle::current(),
                address_env: Mutex::new(None),
                drain_deadline: Mutex::new(Duration::from_secs(10)),
                address: Mutex::new(socket.local_addr()?),
                socket: Mutex::new(Some(socket)),
                acceptor: Mutex::new(None),
                draining: AtomicBool::new(false),
                connections: Mutex::new(HashMap::new()),
                keeping: AtomicBool::new(false),
                kept: Mutex::new(None),
                closed: Condvar::new(),
                next_id: AtomicU64::new(0),
            });
            crate::context::global().register_at(&shared, location);
            Ok(Listener { shared })
        }
    }

    /// After a restore, bind to the address the restorer passed as `name`
    /// (`crac restore --env NAME=...`, `Restore::env`): a port (`8081`, same host as
    /// before) or `host:port`. Without it, the listener binds where it was.
    pub fn restore_address_from(self, name: &str) -> Listener {
        *lock(&self.shared.address_env) = Some(name.to_string());
        self
    }

    /// How long requests in flight may take to finish before the checkpoint is refused
    /// (default 10 s).
    pub fn with_drain_deadline(self, deadline: Duration) -> Listener {
        *lock(&self.shared.drain_deadline) = deadline;
        self
    }

    /// The next connection. Waits through a checkpoint: nothing is accepted between the
    /// drain and the restore.
    pub async fn accept(&self) -> io::Result<(Connection, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Connection, SocketAddr)>> {
        let shared = &self.shared;
        *lock(&shared.acceptor) = Some(cx.waker().clone());
        let socket = lock(&shared.socket);
        let Some(socket) = socket.as_ref() else {
            return Poll::Pending; // checkpointing: woken when the socket is back
        };
        let (stream, peer) = std::task::ready!(socket.poll_accept(cx))?;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        let mut connections = lock(&shared.connections);
        // Under the lock `before_checkpoint` claims under: no connection goes unclaimed.
        let claim = shared
            .keeping
            .load(Ordering::SeqCst)
            .then(|| claim_fd(&stream, "a connection of a crac listener"));
        connections.insert(
            id,
            Open {
                peer,
                fd,
                reader: None,
                claim,
            },
        );
        drop(connections);
        Poll::Ready(Ok((
            Connection {
                stream,
                shared: Arc::clone(shared),
                id,
                answered: true,
                responding: false,
                ended: false,
            },
            peer,
        )))
    }

    /// The address the listener is bound to now.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(*lock(&self.shared.address))
    }
}

impl ListenerState {
    fn wake_acceptor(&self) {
        if let Some(waker) = lock(&self.acceptor).take() {
            waker.wake();
        }
    }
}

impl ListenerState {
    /// A left-running checkpoint: claims the socket and every connection, closes nothing.
    fn keep(&self) {
        // The socket's lock before the connections', as in `poll_accept`.
        *lock(&self.kept) = lock(&self.socket)
            .as_ref()
            .map(|socket| claim_fd(socket, self.name()));
        self.keeping.store(true, Ordering::SeqCst);
        let mut connections = lock(&self.connections);
        for open in connections.values_mut() {
            open.claim = Some(claim_fd(&open.fd, "a connection of a crac listener"));
        }
    }

    /// After a left-running checkpoint: the claims go. Returns whether it was one.
    fn unkeep(&self) -> bool {
        let mut connections = lock(&self.connections);
        for open in connections.values_mut() {
            open.claim = None;
        }
        drop(lock(&self.kept).take());
        self.keeping.swap(false, Ordering::SeqCst)
    }

    /// In a restored copy of a kept socket: its connections are closed (`--tcp-close`),
    /// so their readers are woken to see it; the socket goes, to be bound afresh.
    fn drop_restored_copies(&self) {
        for open in lock(&self.connections).values_mut() {
            if let Some(reader) = open.reader.take() {
                reader.wake();
            }
        }
        drop(lock(&self.socket).take());
    }
}

impl Resource for ListenerState {
    fn before_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), BoxError> {
        if checkpoint.leaves_running() {
            self.keep();
            return Ok(());
        }
        refuse_on_runtime_thread()?;
        self.draining.store(true, Ordering::SeqCst);
        drop(lock(&self.socket).take());
        self.wake_acceptor();
        let deadline = *lock(&self.drain_deadline);
        let until = Instant::now() + deadline;
        let mut connections = lock(&self.connections);
        // Idle connections end their stream when woken (see `Connection::poll_read`).
        for open in connections.values_mut() {
            if let Some(waker) = open.reader.take() {
                waker.wake();
            }
        }
        while !connections.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let peers: Vec<String> = connections.values().map(|o| o.peer.to_string()).collect();
                return Err(format!(
                    "{} connection(s) still busy after {deadline:?}: {}",
                    peers.len(),
                    peers.join(", ")
                )
                .into());
            }
            connections = self
                .closed
                .wait_timeout(connections, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Ok(())
    }

    fn after_restore(&self, restore: &Restore) -> Result<(), BoxError> {
        if self.unkeep() {
            if !restore.is_restored() {
                return Ok(()); // the running process: it never stopped serving
            }
            self.drop_restored_copies();
        }
        let name = lock(&self.address_env).clone();
        let address = restore_address(name.as_deref(), *lock(&self.address), restore)?;
        let socket = std::net::TcpListener::bind(address)
            .and_then(|socket| {
                socket.set_nonblocking(true)?;
                let _runtime = self.runtime.enter();
                TcpListener::from_std(socket)
            })
            .map_err(|e| format!("binding {address} again: {e}"))?;
        *lock(&self.address) = socket.local_addr()?;
        *lock(&self.socket) = Some(socket);
        self.draining.store(false, Ordering::SeqCst);
        self.wake_acceptor();
        Ok(())
    }

    fn name(&self) -> Cow<'_, str> {
        Cow::Owned(format!("listener {}", lock(&self.address)))
    }

    /// Above the clients the requests use (rank 0): requests drain while they are
    /// still connected, and the listener opens after they are back.
    fn rank(&self) -> u32 {
        1
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Checked before reading: a client that always has its next request in flight
        // (pipelined, or sent the moment a response arrives) never lets a read go
        // `Pending`, so the request boundary is the only place to end its connection.
        if self.answered && self.shared.draining.load(Ordering::SeqCst) {
            self.ended = true;
            return Poll::Ready(Ok(())); // between requests: end of stream
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        match &read {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.answered = false,
            Poll::Pending => {
                // Stored before looking at `draining`: a drain starting in between wakes it.
                if let Some(entry) = lock(&self.shared.connections).get_mut(&self.id) {
                    entry.reader = Some(cx.waker().clone());
                }
                if self.answered && self.shared.draining.load(Ordering::SeqCst) {
                    self.ended = true;
                    return Poll::Ready(Ok(())); // idle: end of stream
                }
            }
            Poll::Ready(_) => {}
        }
        read
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.responding = true;
        }
        written
    }

    /// A flush after writing ends a response (hyper flushes each one): the request is
    /// answered. While draining, a read already waiting for the next request
    /// is woken to see the end of its stream rather than that request.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) && self.responding {
            self.responding = false;
            self.answered = true;
            if self.shared.draining.load(Ordering::SeqCst) {
                let waker = lock(&self.shared.connections)
                    .get_mut(&self.id)
                    .and_then(|entry| entry.reader.take());
                waker.into_iter().for_each(Waker::wake);
            }
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.ended {
            // A next request that arrived unread would make the close a reset, which can
            // cost the client the response it has not read yet; read away what is there
            // so that it sees an orderly end after its last response.
            let mut scratch = [0u8; 4096];
            while matches!(self.stream.try_read(&mut scratch), Ok(n) if n > 0) {}
        }
        lock(&self.shared.connections).remove(&self.id);
        self.shared.closed.notify_all();
    }
}

#[cfg(feature = "axum")]
impl axum::serve::Listener for Listener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        loop {
            match Listener::accept(self).await {
                Ok(accepted) => return accepted,
                // Out of fds, or a connection reset before it was accepted: as axum's
                // own listener does, wait a little and go on.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Listener::local_addr(self)
    }
}
