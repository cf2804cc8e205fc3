//! The TCP sockets behind a connection that a [`Client`](crate::tokio::Client) or a
//! [`Pool`](crate::tokio::Pool) made, so that a left-running checkpoint can claim them
//! (the engine then carries them into the image, where they come back closed) instead of
//! closing the connection in the process that runs on.
//!
//! Drivers do not show their socket (a redis `MultiplexedConnection` or a
//! `tokio_postgres::Client` leaves it to a task of its own), so it is found by watching
//! which fds appear while the user's connect future is polled: drivers open their socket
//! there. An fd another thread opened during one of those polls may be taken for the
//! connection's: it is claimed along with it (and carried into the image as it would
//! be by its own claim) only while it is still the socket seen then. A connection with
//! a socket other than TCP (a unix socket, which CRIU cannot carry) or none found is not
//! keepable: it is closed for every checkpoint, as before.
//!
//! [`Making`] counts the connections being made: a left-running checkpoint waits for
//! them, and none starts while it runs, so that every connection's sockets are claimed.

use std::collections::BTreeSet;
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::async_hooks::within;
use crate::claims::{FdClaim, claim_fd};

/// The sockets of one connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sockets {
    /// fd and socket inode of each; empty when the connection cannot be kept.
    tcp: Vec<(RawFd, u64)>,
}

impl Sockets {
    /// Runs `connect`, noting the sockets that appear while it is polled.
    pub(crate) async fn traced<T>(connect: impl Future<Output = T>) -> (T, Sockets) {
        let mut connect = pin!(connect);
        let mut seen: Vec<(RawFd, u64)> = Vec::new();
        let output = std::future::poll_fn(|cx| {
            let before = open_sockets();
            let polled = connect.as_mut().poll(cx);
            for socket in open_sockets().difference(&before) {
                seen.retain(|(fd, _)| *fd != socket.0);
                seen.push(*socket);
            }
            polled
        })
        .await;
        // Those closed since (a resolver's, say) are no part of it.
        seen.retain(|(fd, inode)| socket_inode(*fd) == Some(*inode));
        let keepable = !seen.is_empty() && seen.iter().all(|(fd, _)| is_tcp(*fd));
        let tcp = if keepable { seen } else { Vec::new() };
        (output, Sockets { tcp })
    }

    /// Whether the connection can be carried into an image rather than closed.
    pub(crate) fn keepable(&self) -> bool {
        !self.tcp.is_empty()
    }

    /// Claims each socket still open for `owner`; none if one is gone (the connection
    /// broke: its driver closed it).
    pub(crate) fn claim(&self, owner: &str) -> Option<Vec<FdClaim>> {
        self.tcp
            .iter()
            .map(|(fd, inode)| (socket_inode(*fd) == Some(*inode)).then(|| claim_fd(fd, owner)))
            .collect()
    }

    /// Whether every socket is still connected: not in a copy restored from an image
    /// taken while they were claimed, where they come back closed.
    pub(crate) fn connected(&self) -> bool {
        self.tcp.iter().all(|(fd, _)| has_peer(*fd))
    }
}

/// Counts a connection being made, from before `keeping` is looked at (so that a
/// checkpoint that sets it either sees the count or is seen) to its end.
pub(crate) struct Making<'a>(&'a AtomicUsize, &'a Notify);

impl<'a> Making<'a> {
    /// Counts one; `None` (and nothing counted) if `keeping` is set.
    pub(crate) fn start(
        making: &'a AtomicUsize,
        made: &'a Notify,
        keeping: &AtomicBool,
    ) -> Option<Making<'a>> {
        making.fetch_add(1, Ordering::SeqCst);
        let counted = Making(making, made);
        (!keeping.load(Ordering::SeqCst)).then_some(counted)
    }

    /// Waits until no connection is being made, within `deadline`.
    pub(crate) async fn none_left(making: &AtomicUsize, made: &Notify, deadline: Duration) -> bool {
        let all_made = async {
            loop {
                let notified = made.notified();
                if making.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        within(deadline, all_made).await.is_some()
    }
}

impl Drop for Making<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        self.1.notify_waiters();
    }
}

/// The process's open sockets: fd and inode.
fn open_sockets() -> BTreeSet<(RawFd, u64)> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(|fd| Some((fd, socket_inode(fd)?)))
        .collect()
}

/// The inode of the socket `fd` is, if it is one.
fn socket_inode(fd: RawFd) -> Option<u64> {
    // SAFETY: all-zero bytes are a valid `stat`.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes a `stat` into `stat`; an fd that is not open makes it fail.
    let done = unsafe { libc::fstat(fd, &raw mut stat) };
    (done == 0 && stat.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some(stat.st_ino)
}

fn socket_option(fd: RawFd, option: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`, an int of that size;
    // an fd that is not an open socket makes it fail, touching nothing.
    let done = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    (done == 0).then_some(value)
}

fn is_tcp(fd: RawFd) -> bool {
    matches!(
        socket_option(fd, libc::SO_DOMAIN),
        Some(libc::AF_INET | libc::AF_INET6)
    ) && socket_option(fd, libc::SO_PROTOCOL) == Some(libc::IPPROTO_TCP)
}

fn has_peer(fd: RawFd) -> bool {
    // SAFETY: all-zero bytes are a valid `sockaddr_storage`.
    let mut address: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getpeername writes at most `len` bytes into `address`, of that size; an
    // fd that is not a connected socket makes it fail.
    let done = unsafe { libc::getpeername(fd, (&raw mut address).cast(), &raw mut len) };
    done == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_runtime<T>(test: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test)
    }

    #[test]
    fn a_tcp_connection_made_while_traced_is_found_and_claimed_and_others_are_not_keepable() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = server.local_addr().unwrap();
        on_runtime(async {
            let (stream, sockets) = Sockets::traced(tokio::net::TcpStream::connect(address)).await;
            let stream = stream.unwrap();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
            assert_eq!(
                sockets.tcp.iter().map(|(fd, _)| *fd).collect::<Vec<_>>(),
                [fd]
            );
            assert!(sockets.keepable() && sockets.connected());
            let claims = sockets.claim("test").unwrap();
            assert!(
                crate::claimed_fds()
                    .iter()
                    .any(|(claimed, _)| *claimed == fd)
            );
            drop(claims);
            drop(stream);
            assert!(sockets.claim("test").is_none(), "gone: nothing to claim");
            assert!(!sockets.connected());
            // in the same test: a socket another test opened meanwhile would be seen
            let (pair, sockets) = Sockets::traced(async { tokio::net::UnixStream::pair() }).await;
            assert!(!sockets.keepable());
            drop(pair);
            let (_, sockets) = Sockets::traced(async {}).await;
            assert!(!sockets.keepable());
        });
    }
}
