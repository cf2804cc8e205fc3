//! The peers of unix sockets, from the kernel's socket diagnostics (`NETLINK_SOCK_DIAG`,
//! `UDIAG_SHOW_PEER`): `/proc/net/unix` lists sockets but not what they are connected
//! to, and only the peer tells a socketpair inside this process (which CRIU carries)
//! from a connection to another process (which it cannot).

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const UDIAG_SHOW_PEER: u32 = 0x4;
const UNIX_DIAG_PEER: u16 = 2;
const HEADER: usize = 16;
/// `struct unix_diag_msg`: family, type, state, pad, inode, cookie.
const UNIX_DIAG_MSG: usize = 16;

/// Unix socket inode → the inode of its peer, for every connected unix socket of this
/// network namespace.
pub(crate) fn peers() -> io::Result<HashMap<u64, u64>> {
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    // nlmsghdr, then unix_diag_req: family AF_UNIX, protocol 0, pad, all states,
    // any inode, show the peer, any cookie.
    let mut request = Vec::with_capacity(HEADER + 24);
    request.extend_from_slice(&((HEADER + 24) as u32).to_ne_bytes());
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request.extend_from_slice(&[0; 8]); // sequence number, port id
    request.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    request.extend_from_slice(&u32::MAX.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(&UDIAG_SHOW_PEER.to_ne_bytes());
    request.extend_from_slice(&[0; 8]);
    sendto(
        sock.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;

    let mut peers = HashMap::new();
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let len = recv(sock.as_raw_fd(), &mut buffer, MsgFlags::empty())?;
        if len == 0 {
            return Ok(peers);
        }
        let mut messages = &buffer[..len];
        while messages.len() >= HEADER {
            let size = u32_at(messages, 0) as usize;
            let kind = u16::from_ne_bytes([messages[4], messages[5]]);
            if size < HEADER || size > messages.len() {
                return Err(io::Error::other("malformed sock_diag reply"));
            }
            match kind {
                NLMSG_DONE => return Ok(peers),
                NLMSG_ERROR => return Err(io::Error::other("sock_diag refused the query")),
                _ => parse_message(&messages[HEADER..size], &mut peers),
            }
            messages = &messages[align(size).min(messages.len())..];
        }
    }
}

/// One `unix_diag_msg` and its attributes.
fn parse_message(body: &[u8], peers: &mut HashMap<u64, u64>) {
    if body.len() < UNIX_DIAG_MSG {
        return;
    }
    let inode = u32_at(body, 4) as u64;
    let mut attributes = &body[UNIX_DIAG_MSG..];
    while attributes.len() >= 4 {
        let size = u16::from_ne_bytes([attributes[0], attributes[1]]) as usize;
        let kind = u16::from_ne_bytes([attributes[2], attributes[3]]);
        if size < 4 || size > attributes.len() {
            return;
        }
        if kind == UNIX_DIAG_PEER && size >= 8 {
            peers.insert(inode, u32_at(attributes, 4) as u64);
        }
        attributes = &attributes[align(size).min(attributes.len())..];
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Netlink messages and attributes are 4-byte aligned.
fn align(size: usize) -> usize {
    (size + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn inode(fd: &impl AsRawFd) -> u64 {
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino()
    }

    #[test]
    fn the_two_ends_of_a_socketpair_are_each_others_peers() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let peers = peers().unwrap();
        assert_eq!(peers.get(&inode(&a)), Some(&inode(&b)));
        assert_eq!(peers.get(&inode(&b)), Some(&inode(&a)));
    }
}
