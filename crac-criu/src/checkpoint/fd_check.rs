//! The open-resource check (CRaC's fd check): before dumping, every fd that is not stdio
//! and not claimed by a resource is judged by the policy, so that the checkpoint fails
//! with a message naming it instead of CRIU failing cryptically or an image silently
//! capturing a connection.
//!
//! Rules come from `CRAC_FD_POLICY`, then from the application ([`set_fd_policy`]);
//! the first that matches decides. `CRAC_FD_POLICY` is a comma-separated list of
//! `SELECTOR=ACTION` rules: selectors `kind:<kind>` (file, dir, pipe, fifo, tcp-listen,
//! tcp, udp, unix, socket, memfd, anon, other), `path:<prefix>*` or `path:<exact path>`,
//! and `default`; actions `error`, `ignore` (keep it: CRIU will try to carry it into the
//! image) and `close` (the engine points the fd at `/dev/null` before dumping, so its
//! owner's later reads and writes fail harmlessly instead of hitting a reused fd
//! number; it is not reopened, even if the checkpoint fails). Example:
//! `CRAC_FD_POLICY=path:/var/log/*=close,kind:tcp-listen=ignore`.
//!
//! When no rule matches, an fd whose kernel object lives wholly inside the process
//! (an async runtime's epoll, eventfd and timerfd, its signal socketpair, an in-process
//! pipe) is carried — CRIU restores those — and anything else is refused. Refusals are
//! checked again for a short grace: a client dropped just before the checkpoint may
//! still be closing its socket on another thread.

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::image::manifest::CarriedListener;
use crate::sys::fd;
use crate::sys::fd_info::{self, FdKind, OpenFd};

/// How long refused fds are looked at again before the checkpoint is refused.
const CLOSE_GRACE: Duration = Duration::from_millis(250);

/// What happens to an fd nobody claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FdAction {
    /// Refuse the checkpoint, naming the fd.
    Error,
    /// Let CRIU carry it into the image.
    Ignore,
    /// Point it at `/dev/null` before the dump (it is not reopened).
    Close,
}

#[derive(Debug, Clone, PartialEq)]
enum Selector {
    Kind(FdKind),
    PathPrefix(String),
    Path(PathBuf),
    Default,
}

/// Rules for the fds nobody claimed, first match wins; set once with [`set_fd_policy`].
///
/// ```
/// use crac::criu::{FdAction, FdKind, FdPolicy};
///
/// crac::criu::set_fd_policy(
///     FdPolicy::new()
///         .path_prefix("/var/log/", FdAction::Close)
///         .kind(FdKind::TcpListen, FdAction::Ignore),
/// );
/// ```
#[derive(Debug, Clone, Default)]
pub struct FdPolicy {
    rules: Vec<(Selector, FdAction)>,
}

static APPLICATION_POLICY: Mutex<Option<FdPolicy>> = Mutex::new(None);

/// Sets the application's rules, consulted after `CRAC_FD_POLICY`'s (so that an
/// operator can override them without a rebuild).
pub fn set_fd_policy(policy: FdPolicy) {
    *APPLICATION_POLICY
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(policy);
}

impl FdPolicy {
    /// No rules: only fds wholly inside the process pass.
    pub fn new() -> FdPolicy {
        FdPolicy::default()
    }

    /// Every fd of this kind.
    pub fn kind(mut self, kind: FdKind, action: FdAction) -> FdPolicy {
        self.rules.push((Selector::Kind(kind), action));
        self
    }

    /// The file at exactly this path.
    pub fn path(mut self, path: impl Into<PathBuf>, action: FdAction) -> FdPolicy {
        self.rules.push((Selector::Path(path.into()), action));
        self
    }

    /// Files whose path starts with `prefix`.
    pub fn path_prefix(mut self, prefix: impl Into<String>, action: FdAction) -> FdPolicy {
        self.rules
            .push((Selector::PathPrefix(prefix.into()), action));
        self
    }

    /// Every fd no earlier rule matched, in-process ones included.
    pub fn otherwise(mut self, action: FdAction) -> FdPolicy {
        self.rules.push((Selector::Default, action));
        self
    }

    /// `CRAC_FD_POLICY`'s rules.
    pub(crate) fn parse(text: &str) -> Result<FdPolicy, String> {
        let mut rules = Vec::new();
        for rule in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let (selector, action) = rule
                .rsplit_once('=')
                .ok_or_else(|| format!("`{rule}`: expected SELECTOR=ACTION"))?;
            let action = match action {
                "error" => FdAction::Error,
                "ignore" => FdAction::Ignore,
                "close" => FdAction::Close,
                other => {
                    return Err(format!(
                        "`{rule}`: unknown action `{other}` (error, ignore, close)"
                    ));
                }
            };
            let selector = if selector == "default" {
                Selector::Default
            } else if let Some(kind) = selector.strip_prefix("kind:") {
                Selector::Kind(
                    FdKind::ALL
                        .into_iter()
                        .find(|k| k.name() == kind)
                        .ok_or_else(|| {
                            let kinds: Vec<_> = FdKind::ALL.iter().map(|k| k.name()).collect();
                            format!("`{rule}`: unknown kind `{kind}` ({})", kinds.join(", "))
                        })?,
                )
            } else if let Some(path) = selector.strip_prefix("path:") {
                match path.strip_suffix('*') {
                    Some(prefix) => Selector::PathPrefix(prefix.to_string()),
                    None => Selector::Path(path.into()),
                }
            } else {
                return Err(format!(
                    "`{rule}`: selector must be kind:<kind>, path:<path> or default"
                ));
            };
            rules.push((selector, action));
        }
        Ok(FdPolicy { rules })
    }

    fn rule_for(&self, fd: &OpenFd) -> Option<FdAction> {
        let path = fd.path.as_deref();
        self.rules
            .iter()
            .find(|(selector, _)| match selector {
                Selector::Kind(kind) => *kind == fd.kind,
                Selector::PathPrefix(prefix) => {
                    path.is_some_and(|p| p.to_string_lossy().starts_with(prefix.as_str()))
                }
                Selector::Path(exact) => path == Some(exact.as_path()),
                Selector::Default => true,
            })
            .map(|(_, action)| *action)
    }
}

/// The environment's rules, then the application's, then the built-in default.
fn action(env: &FdPolicy, application: Option<&FdPolicy>, fd: &OpenFd) -> FdAction {
    env.rule_for(fd)
        .or_else(|| application.and_then(|p| p.rule_for(fd)))
        .unwrap_or(if fd.in_process {
            FdAction::Ignore
        } else {
            FdAction::Error
        })
}

/// What the image will carry that its restore must know of.
#[derive(Debug, Default)]
pub(crate) struct Carried {
    /// The listening sockets, for the manifest.
    pub(crate) listeners: Vec<CarriedListener>,
    /// A claimed established TCP connection (a left-running checkpoint's, claimed by
    /// its listener): CRIU must dump and restore with `--tcp-close`. (One let through
    /// by the policy is left to CRIU's own options, as `ignore` says.)
    pub(crate) connections: bool,
    /// A claimed listening socket: in a process left running it may accept connections
    /// until CRIU freezes it.
    pub(crate) claimed_listener: bool,
}

impl Carried {
    fn add(&mut self, fd: &OpenFd, claimed: bool) {
        self.listeners.extend(carried_listener(fd));
        self.connections |= claimed && fd.kind == FdKind::Tcp;
        self.claimed_listener |= claimed && fd.kind == FdKind::TcpListen;
    }
}

/// Applies the policy to every fd except stdio and `claimed`: closes those marked
/// `close`, and refuses with every `error` one named. Returns what the image will carry
/// (claimed or let through). `claimed` is asked after each listing: a listener kept
/// through a left-running checkpoint claims the connections it accepts meanwhile.
pub(crate) fn check(env: &FdPolicy, claimed: &dyn Fn() -> Vec<RawFd>) -> Result<Carried, Error> {
    let application = APPLICATION_POLICY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let judge = |fds: Vec<OpenFd>| {
        let claimed = claimed();
        fds.into_iter()
            .filter(|fd| fd.fd > 2 && !claimed.contains(&fd.fd))
            .map(|fd| (action(env, application.as_ref(), &fd), fd))
            .collect::<Vec<_>>()
    };
    let list = || fd_info::list().map_err(Error::io("listing /proc/self/fd"));
    let fds = list()?;
    let mut carried = Carried::default();
    let claims = claimed();
    for fd in fds.iter().filter(|fd| claims.contains(&fd.fd)) {
        carried.add(fd, true);
    }
    let mut refused = Vec::new();
    for (action, fd) in judge(fds) {
        match action {
            FdAction::Error => refused.push(fd),
            FdAction::Ignore => carried.add(&fd, false),
            FdAction::Close => detach(fd.fd)?,
        }
    }
    // Everything is judged again: a connection that changed state (ESTABLISHED to
    // CLOSE_WAIT) or an fd number reused meanwhile is still refused.
    let grace = Instant::now() + CLOSE_GRACE;
    while !refused.is_empty() && Instant::now() < grace {
        std::thread::sleep(Duration::from_millis(10));
        refused = judge(list()?)
            .into_iter()
            .filter(|(action, _)| *action == FdAction::Error)
            .map(|(_, fd)| fd)
            .collect();
    }
    if refused.is_empty() {
        Ok(carried)
    } else {
        Err(Error::OpenFds { fds: refused })
    }
}

fn carried_listener(fd: &OpenFd) -> Option<CarriedListener> {
    Some(CarriedListener {
        address: fd.listening_on?,
        // unknown counts as not shared: the restore then refuses rather than duplicates
        shared: fd::reuse_port(fd.fd).unwrap_or(false),
    })
}

/// Points `number` at `/dev/null`: whatever owns it keeps a valid fd of its own.
fn detach(number: RawFd) -> Result<(), Error> {
    let null = fd::dev_null().map_err(Error::io("opening /dev/null"))?;
    fd::redirect(number, std::os::fd::AsFd::as_fd(&null)).map_err(Error::io("detaching an fd"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(kind: FdKind, path: Option<&str>) -> OpenFd {
        OpenFd {
            fd: 7,
            kind,
            path: path.map(Into::into),
            target: String::new(),
            in_process: false,
            inherited: false,
            listening_on: None,
        }
    }

    fn decide(policy: &FdPolicy, fd: &OpenFd) -> FdAction {
        action(policy, None, fd)
    }

    #[test]
    fn first_matching_rule_wins_and_the_default_is_error() {
        let policy =
            FdPolicy::parse("path:/var/log/*=close, kind:file=ignore,kind:tcp=error").unwrap();
        assert_eq!(
            decide(&policy, &fd(FdKind::File, Some("/var/log/app.log"))),
            FdAction::Close
        );
        assert_eq!(
            decide(&policy, &fd(FdKind::File, Some("/etc/hosts"))),
            FdAction::Ignore
        );
        assert_eq!(decide(&policy, &fd(FdKind::Unix, None)), FdAction::Error);
        let lenient = FdPolicy::parse("default=ignore").unwrap();
        assert_eq!(decide(&lenient, &fd(FdKind::Tcp, None)), FdAction::Ignore);
    }

    #[test]
    fn in_process_objects_pass_unless_a_rule_says_otherwise() {
        let epoll = OpenFd {
            in_process: true,
            ..fd(FdKind::Anon, None)
        };
        assert_eq!(decide(&FdPolicy::new(), &epoll), FdAction::Ignore);
        let strict = FdPolicy::new().kind(FdKind::Anon, FdAction::Error);
        assert_eq!(decide(&strict, &epoll), FdAction::Error);
    }

    #[test]
    fn the_environment_s_rules_come_before_the_application_s() {
        let env = FdPolicy::parse("kind:file=error").unwrap();
        let application = FdPolicy::new()
            .kind(FdKind::File, FdAction::Ignore)
            .path("/etc/hosts", FdAction::Close)
            .kind(FdKind::Tcp, FdAction::Ignore);
        let file = fd(FdKind::File, Some("/etc/hosts"));
        assert_eq!(action(&env, Some(&application), &file), FdAction::Error);
        let tcp = fd(FdKind::Tcp, None);
        assert_eq!(action(&env, Some(&application), &tcp), FdAction::Ignore);
    }

    #[test]
    fn malformed_policies_say_what_is_wrong() {
        assert_eq!(
            FdPolicy::parse("kind:sock=ignore").unwrap_err(),
            "`kind:sock=ignore`: unknown kind `sock` (file, dir, pipe, fifo, tcp-listen, tcp, udp, \
             unix, socket, memfd, anon, other)"
        );
        assert_eq!(
            FdPolicy::parse("path:/tmp=keep").unwrap_err(),
            "`path:/tmp=keep`: unknown action `keep` (error, ignore, close)"
        );
        assert_eq!(
            FdPolicy::parse("ignore").unwrap_err(),
            "`ignore`: expected SELECTOR=ACTION"
        );
    }
}
