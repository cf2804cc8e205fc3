//! What an open fd is: its kind, a description of its target for messages, whether the
//! kernel object behind it lives wholly inside this process (so CRIU carries it), and
//! whether it was inherited from the parent — read from `/proc/self/fd`, `fdinfo`, the
//! kernel's socket tables and its unix socket diagnostics.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::sys::{procfs, unix_diag};

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
    /// What the fd refers to, for messages: a path, socket addresses and state, the
    /// process at the other end, ...
    pub target: String,
    /// The kernel object and everything connected to it are inside this process (an
    /// epoll, eventfd, timerfd, signalfd or inotify instance; a socketpair or pipe whose
    /// every end is ours), so CRIU carries it into the image whole.
    pub in_process: bool,
    /// Open under this number, to the same thing, since the process started: inherited
    /// from the parent process rather than opened by the program.
    pub inherited: bool,
    /// For a listening TCP socket, the address it listens on.
    pub(crate) listening_on: Option<SocketAddr>,
}

impl fmt::Display for OpenFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fd {} ({}): {}", self.fd, self.kind.name(), self.target)?;
        if self.inherited {
            f.write_str(" — inherited from the parent process")?;
        }
        Ok(())
    }
}

/// Anonymous-inode objects CRIU restores (their targets are inside the image too).
const CARRIED_ANON: [&str; 5] = [
    "[eventpoll]",
    "[eventfd]",
    "[timerfd]",
    "[signalfd]",
    "inotify",
];

static AT_START: OnceLock<Vec<(RawFd, String)>> = OnceLock::new();

/// Remembers the fds open when the process starts (before `main`): they are the ones
/// its parent passed on.
pub(crate) fn record_inherited() {
    AT_START.get_or_init(|| {
        procfs::numbered("/proc/self/fd")
            .into_iter()
            .filter(|fd| *fd > 2)
            .filter_map(|fd| Some((fd, link(fd)?)))
            .collect()
    });
}

fn link(fd: RawFd) -> Option<String> {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .ok()
        .map(|l| l.to_string_lossy().into_owned())
}

/// Every open fd of this process, except the one used to list them.
pub(crate) fn list() -> std::io::Result<Vec<OpenFd>> {
    std::fs::metadata("/proc/self/fd")?;
    let links: Vec<(RawFd, String)> = procfs::numbered("/proc/self/fd")
        .into_iter()
        // the directory handle used to list them is closed by now: its link is gone
        .filter_map(|fd| Some((fd, link(fd)?)))
        .collect();
    let ours = Ours::of(&links);
    let sockets = SocketTable::read();
    let at_start = AT_START.get().map_or(&[][..], Vec::as_slice);
    Ok(links
        .iter()
        .map(|(fd, text)| {
            let mut info = describe(*fd, text, &sockets, &ours);
            info.inherited = at_start.iter().any(|(f, t)| f == fd && t == text);
            // the parent may hold the other end too (a jobserver pipe, say)
            info.in_process &= !info.inherited;
            info
        })
        .collect())
}

/// What this process holds: its socket inodes, and for each pipe inode whether it holds
/// a read end and a write end.
struct Ours {
    sockets: HashSet<u64>,
    pipes: HashMap<u64, (bool, bool)>,
    /// Without the kernel's socket diagnostics no socketpair is known to be internal:
    /// all are refused, and say why.
    unix_peers: Result<HashMap<u64, u64>, String>,
}

impl Ours {
    fn of(links: &[(RawFd, String)]) -> Ours {
        let mut ours = Ours {
            sockets: HashSet::new(),
            pipes: HashMap::new(),
            unix_peers: unix_diag::peers().map_err(|e| e.to_string()),
        };
        for (fd, text) in links {
            if let Some(inode) = bracketed(text, "socket:") {
                ours.sockets.insert(inode);
            } else if let Some(inode) = bracketed(text, "pipe:") {
                let ends = ours.pipes.entry(inode).or_default();
                match access_mode(*fd) {
                    Some(libc::O_RDONLY) => ends.0 = true,
                    Some(libc::O_WRONLY) => ends.1 = true,
                    _ => *ends = (true, true),
                }
            }
        }
        ours
    }
}

/// `O_RDONLY`, `O_WRONLY` or `O_RDWR`, from `/proc/self/fdinfo`.
fn access_mode(fd: RawFd) -> Option<i32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?.trim();
    Some(i32::from_str_radix(flags, 8).ok()? & libc::O_ACCMODE)
}

fn describe(fd: RawFd, text: &str, sockets: &SocketTable, ours: &Ours) -> OpenFd {
    let info = |kind, path: Option<PathBuf>, target: String, in_process| OpenFd {
        fd,
        kind,
        path,
        target,
        in_process,
        inherited: false,
        listening_on: None,
    };
    if let Some(inode) = bracketed(text, "socket:") {
        let (kind, target, in_process) = sockets.describe(inode, ours);
        return OpenFd {
            listening_on: sockets.listening_on(inode),
            ..info(kind, None, target, in_process)
        };
    }
    if let Some(inode) = bracketed(text, "pipe:") {
        let both_ends = ours.pipes.get(&inode) == Some(&(true, true));
        let target = if both_ends {
            format!("{text}, both ends in this process")
        } else {
            format!("{text}, its other end outside this process")
        };
        return info(FdKind::Pipe, None, target, both_ends);
    }
    if let Some(rest) = text.strip_prefix("anon_inode:") {
        return info(
            FdKind::Anon,
            None,
            rest.to_string(),
            CARRIED_ANON.contains(&rest),
        );
    }
    if text.starts_with("/memfd:") {
        return info(FdKind::Memfd, None, text.to_string(), false);
    }
    if !text.starts_with('/') {
        return info(FdKind::Other, None, text.to_string(), false);
    }
    let kind = match std::fs::metadata(text) {
        Ok(m) if m.is_dir() => FdKind::Directory,
        Ok(m) if std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()) => FdKind::Fifo,
        _ => FdKind::File,
    };
    info(kind, Some(PathBuf::from(text)), text.to_string(), false)
}

fn bracketed(text: &str, prefix: &str) -> Option<u64> {
    text.strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The process holding socket `inode`, as `process PID (name)`: found by scanning every
/// process's fds, which only a checkpoint that is about to be refused pays for.
fn holder(inode: u64) -> Option<String> {
    let wanted = format!("socket:[{inode}]");
    for pid in procfs::numbered("/proc") {
        for fd in procfs::numbered(&format!("/proc/{pid}/fd")) {
            let held = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"));
            if held.is_ok_and(|l| l.as_os_str() == wanted.as_str()) {
                let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                return Some(format!("process {pid} ({})", name.trim()));
            }
        }
    }
    None
}

/// Who holds a socket no process in /proc holds: in a private PID namespace (`crac
/// run`), a process outside it, which its /proc does not show.
fn unseen_holder() -> String {
    if in_child_pid_namespace() {
        "a process outside this PID namespace".into()
    } else {
        "another process".into()
    }
}

/// Whether this process's PID namespace is not the initial one, whose inode number is
/// fixed (`PROC_PID_INIT_INO` in `linux/proc_ns.h`). (`NS_GET_PARENT` cannot tell: a
/// process's own namespace's parent is out of its reach.)
fn in_child_pid_namespace() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;
    std::fs::metadata("/proc/self/ns/pid").is_ok_and(|ns| ns.ino() != PROC_PID_INIT_INO)
}

/// Whether a TCP socket of this network namespace listens on `address` (or on the
/// same port of the wildcard address, or on any address when `address` is a wildcard).
pub(crate) fn someone_listens_on(address: SocketAddr) -> bool {
    SocketTable::read().inet.iter().any(|s| {
        s.kind == FdKind::TcpListen
            && s.local.port() == address.port()
            && (s.local.ip() == address.ip()
                || s.local.ip().is_unspecified()
                || address.ip().is_unspecified())
    })
}

/// A TCP or UDP socket of the kernel's tables.
struct InetSocket {
    inode: u64,
    kind: FdKind,
    local: SocketAddr,
    remote: SocketAddr,
    state: &'static str,
}

/// A unix socket of the kernel's table.
struct UnixSocket {
    inode: u64,
    description: String,
    connected: bool,
}

/// The kernel's socket tables.
struct SocketTable {
    inet: Vec<InetSocket>,
    unix: Vec<UnixSocket>,
}

impl SocketTable {
    fn read() -> SocketTable {
        let mut inet = Vec::new();
        for (file, udp) in [
            ("tcp", false),
            ("tcp6", false),
            ("udp", true),
            ("udp6", true),
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
                let kind = match (udp, state) {
                    (true, _) => FdKind::Udp,
                    (_, "LISTEN") => FdKind::TcpListen,
                    _ => FdKind::Tcp,
                };
                inet.push(InetSocket {
                    inode,
                    kind,
                    local,
                    remote,
                    state,
                });
            }
        }
        let mut unix = Vec::new();
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
                let connected = cols.get(5) == Some(&"03");
                let path = cols.get(7).map_or("(unnamed)", |p| p);
                unix.push(UnixSocket {
                    inode,
                    description: format!("unix {kind} socket {path}"),
                    connected,
                });
            }
        }
        SocketTable { inet, unix }
    }

    /// The address a listening TCP socket listens on.
    fn listening_on(&self, inode: u64) -> Option<SocketAddr> {
        self.inet
            .iter()
            .find(|s| s.inode == inode && s.kind == FdKind::TcpListen)
            .map(|s| s.local)
    }

    /// Kind, description and whether CRIU carries it whole.
    fn describe(&self, inode: u64, ours: &Ours) -> (FdKind, String, bool) {
        if let Some(s) = self.inet.iter().find(|s| s.inode == inode) {
            return match s.kind {
                FdKind::TcpListen => (s.kind, format!("TCP listening on {}", s.local), false),
                FdKind::Udp => (s.kind, format!("UDP socket bound to {}", s.local), false),
                _ => {
                    let peer = self
                        .inet
                        .iter()
                        .find(|p| {
                            p.kind == FdKind::Tcp && p.local == s.remote && p.remote == s.local
                        })
                        .map(|p| {
                            if p.inode == 0 {
                                // queued on a listener, or held by no fd any more
                                "a socket no process holds (not yet accepted?)".to_string()
                            } else if ours.sockets.contains(&p.inode) {
                                "this process".to_string()
                            } else {
                                holder(p.inode).unwrap_or_else(unseen_holder)
                            }
                        });
                    let mut target = format!("TCP {} -> {} ({})", s.local, s.remote, s.state);
                    if let Some(peer) = peer {
                        target.push_str(&format!(", peer: {peer}"));
                    }
                    (s.kind, target, false)
                }
            };
        }
        if let Some(s) = self.unix.iter().find(|s| s.inode == inode) {
            let peer = ours
                .unix_peers
                .as_ref()
                .ok()
                .and_then(|peers| peers.get(&inode));
            let internal = peer.is_some_and(|p| ours.sockets.contains(p));
            let target = match (s.connected || peer.is_some(), peer) {
                (true, None) if ours.unix_peers.is_err() => format!(
                    "{}, connected (its peer is unknown: socket diagnostics failed: {})",
                    s.description,
                    ours.unix_peers.as_ref().err().map_or("", String::as_str)
                ),
                (_, Some(_)) if internal => {
                    format!("{}, connected within this process", s.description)
                }
                (_, Some(p)) => format!(
                    "{}, connected to {}",
                    s.description,
                    holder(*p).unwrap_or_else(|| {
                        "a socket outside this process (not yet accepted, or in another PID namespace)".into()
                    })
                ),
                (true, None) => format!("{}, connected", s.description),
                (false, None) => format!("{}, unconnected", s.description),
            };
            return (FdKind::Unix, target, internal);
        }
        (
            FdKind::Socket,
            format!("socket inode {inode} (netlink, packet or other family)"),
            false,
        )
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
                "TCP {} -> {} (ESTABLISHED), peer: a socket no process holds (not yet accepted?)",
                client.local_addr().unwrap(),
                server.local_addr().unwrap()
            )
        );
    }

    #[test]
    fn objects_wholly_inside_the_process_are_told_from_connections_out_of_it() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (reader, writer) = std::io::pipe().unwrap();
        let fds = list().unwrap();
        let find = |fd: RawFd| fds.iter().find(|f| f.fd == fd).unwrap();
        use std::os::fd::AsRawFd;
        let pair = find(a.as_raw_fd());
        assert!(pair.in_process, "{pair}");
        assert!(
            pair.target.ends_with("connected within this process"),
            "{pair}"
        );
        assert!(find(reader.as_raw_fd()).in_process);
        drop(writer);
        let fds = list().unwrap();
        let half = fds.iter().find(|f| f.fd == reader.as_raw_fd()).unwrap();
        assert!(!half.in_process, "{half}");
        assert!(
            half.target.ends_with("its other end outside this process"),
            "{half}"
        );
    }
}
