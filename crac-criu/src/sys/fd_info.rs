//! What an open fd is: its kind and a human description of its target, from
//! `/proc/self/fd` and the kernel's socket tables (for the open-resource check).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;
use std::path::PathBuf;

/// What an open fd is; a policy names kinds as `kind:<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[allow(missing_docs)] // the names say it; `FdKind::name` gives the policy's spelling
pub enum FdKind {
    File,
    Directory,
    Pipe,
    Fifo,
    TcpListen,
    Tcp,
    Udp,
    Unix,
    Socket,
    Memfd,
    Anon,
    Other,
}

impl FdKind {
    pub(crate) const ALL: [FdKind; 12] = [
        FdKind::File,
        FdKind::Directory,
        FdKind::Pipe,
        FdKind::Fifo,
        FdKind::TcpListen,
        FdKind::Tcp,
        FdKind::Udp,
        FdKind::Unix,
        FdKind::Socket,
        FdKind::Memfd,
        FdKind::Anon,
        FdKind::Other,
    ];

    /// The name `CRAC_FD_POLICY` uses (`tcp-listen`, `file`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FdKind::File => "file",
            FdKind::Directory => "dir",
            FdKind::Pipe => "pipe",
            FdKind::Fifo => "fifo",
            FdKind::TcpListen => "tcp-listen",
            FdKind::Tcp => "tcp",
            FdKind::Udp => "udp",
            FdKind::Unix => "unix",
            FdKind::Socket => "socket",
            FdKind::Memfd => "memfd",
            FdKind::Anon => "anon",
            FdKind::Other => "other",
        }
    }
}

/// One open fd, as the open-resource check saw it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OpenFd {
    /// Its number.
    pub fd: RawFd,
    /// What it is.
    pub kind: FdKind,
    /// The file path for files, directories and fifos.
    pub path: Option<PathBuf>,
    /// What the fd refers to, for messages: a path, socket addresses and state, ...
    pub target: String,
}

impl fmt::Display for OpenFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fd {} ({}): {}", self.fd, self.kind.name(), self.target)
    }
}

/// Every open fd of this process, except the one used to list them.
pub(crate) fn list() -> std::io::Result<Vec<OpenFd>> {
    std::fs::metadata("/proc/self/fd")?;
    let sockets = SocketTable::read();
    Ok(crate::sys::procfs::numbered("/proc/self/fd")
        .into_iter()
        // the directory handle used to list them is closed by now: its link is gone
        .filter_map(|fd| describe(fd, &sockets))
        .collect())
}

fn describe(fd: RawFd, sockets: &SocketTable) -> Option<OpenFd> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let text = link.to_string_lossy().into_owned();
    let info = |kind, path: Option<PathBuf>, target: String| OpenFd {
        fd,
        kind,
        path,
        target,
    };
    if let Some(inode) = bracketed(&text, "socket:") {
        let (kind, target) = sockets.describe(inode);
        return Some(info(kind, None, target));
    }
    if bracketed(&text, "pipe:").is_some() {
        return Some(info(FdKind::Pipe, None, text));
    }
    if let Some(rest) = text.strip_prefix("anon_inode:") {
        return Some(info(FdKind::Anon, None, rest.to_string()));
    }
    if text.starts_with("/memfd:") {
        return Some(info(FdKind::Memfd, None, text));
    }
    if !text.starts_with('/') {
        return Some(info(FdKind::Other, None, text));
    }
    let kind = match std::fs::metadata(&link) {
        Ok(m) if m.is_dir() => FdKind::Directory,
        Ok(m) if std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()) => FdKind::Fifo,
        _ => FdKind::File,
    };
    Some(info(kind, Some(link), text))
}

fn bracketed(text: &str, prefix: &str) -> Option<u64> {
    text.strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The kernel's socket tables, keyed by inode.
struct SocketTable {
    entries: Vec<(u64, FdKind, String)>,
}

impl SocketTable {
    fn read() -> SocketTable {
        let mut entries = Vec::new();
        for (file, proto) in [
            ("tcp", "TCP"),
            ("tcp6", "TCP"),
            ("udp", "UDP"),
            ("udp6", "UDP"),
        ] {
            let Ok(text) = std::fs::read_to_string(format!("/proc/self/net/{file}")) else {
                continue;
            };
            for line in text.lines().skip(1) {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let (Some(local), Some(remote), Some(state), Some(inode)) =
                    (cols.get(1), cols.get(2), cols.get(3), cols.get(9))
                else {
                    continue;
                };
                let (Some(local), Some(remote), Ok(inode)) =
                    (inet_addr(local), inet_addr(remote), inode.parse())
                else {
                    continue;
                };
                let state = tcp_state(state);
                let kind = match (proto, state) {
                    ("UDP", _) => FdKind::Udp,
                    (_, "LISTEN") => FdKind::TcpListen,
                    _ => FdKind::Tcp,
                };
                let target = match kind {
                    FdKind::TcpListen => format!("TCP listening on {local}"),
                    FdKind::Udp => format!("UDP socket bound to {local}"),
                    _ => format!("TCP {local} -> {remote} ({state})"),
                };
                entries.push((inode, kind, target));
            }
        }
        if let Ok(text) = std::fs::read_to_string("/proc/self/net/unix") {
            for line in text.lines().skip(1) {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let Some(Ok(inode)) = cols.get(6).map(|c| c.parse()) else {
                    continue;
                };
                let kind = match cols.get(4) {
                    Some(&"0002") => "datagram",
                    Some(&"0005") => "seqpacket",
                    _ => "stream",
                };
                let state = if cols.get(5) == Some(&"03") {
                    "connected"
                } else {
                    "unconnected"
                };
                let path = cols
                    .get(7)
                    .map_or("(unnamed)".to_string(), |p| p.to_string());
                entries.push((
                    inode,
                    FdKind::Unix,
                    format!("unix {kind} socket {path}, {state}"),
                ));
            }
        }
        SocketTable { entries }
    }

    fn describe(&self, inode: u64) -> (FdKind, String) {
        self.entries
            .iter()
            .find(|(i, _, _)| *i == inode)
            .map(|(_, kind, target)| (*kind, target.clone()))
            .unwrap_or((
                FdKind::Socket,
                format!("socket inode {inode} (netlink, packet or other family)"),
            ))
    }
}

/// `0100007F:1F90` (IPv4) or 32 hex digits (IPv6): the kernel prints each 32-bit word
/// of the address as a host-order integer.
fn inet_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| {
        u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16)
            .ok()
            .map(u32::to_ne_bytes)
    };
    let ip = match ip.len() {
        8 => Ipv4Addr::from(word(0)?).into(),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Ipv6Addr::from(bytes).into()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn tcp_state(hex: &str) -> &'static str {
    match hex {
        "01" => "ESTABLISHED",
        "02" => "SYN_SENT",
        "03" => "SYN_RECV",
        "04" => "FIN_WAIT1",
        "05" => "FIN_WAIT2",
        "06" => "TIME_WAIT",
        "07" => "CLOSE",
        "08" => "CLOSE_WAIT",
        "09" => "LAST_ACK",
        "0A" => "LISTEN",
        "0B" => "CLOSING",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_socket_addresses_decode() {
        assert_eq!(
            inet_addr("0100007F:1F90").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            inet_addr("00000000000000000000000001000000:0050")
                .unwrap()
                .to_string(),
            "[::1]:80"
        );
    }

    #[test]
    fn an_established_connection_is_described_with_both_ends() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let fds = list().unwrap();
        let listen = fds.iter().find(|f| f.kind == FdKind::TcpListen).unwrap();
        assert_eq!(
            listen.target,
            format!("TCP listening on {}", server.local_addr().unwrap())
        );
        let conn = fds
            .iter()
            .find(|f| {
                f.target
                    .starts_with(&format!("TCP {}", client.local_addr().unwrap()))
            })
            .unwrap();
        assert_eq!(
            conn.target,
            format!(
                "TCP {} -> {} (ESTABLISHED)",
                client.local_addr().unwrap(),
                server.local_addr().unwrap()
            )
        );
    }
}
