//! The open-resource check (CRaC's fd check): before dumping, every fd that is not stdio
//! and not claimed by a resource is judged by the policy — refused by default, so the
//! checkpoint fails with a message naming it instead of CRIU failing cryptically or an
//! image silently capturing a connection.
//!
//! `CRAC_FD_POLICY` is a comma-separated list of `SELECTOR=ACTION` rules, first match
//! wins: selectors `kind:<kind>` (file, dir, pipe, fifo, tcp-listen, tcp, udp, unix,
//! socket, memfd, anon, other), `path:<prefix>*` or `path:<exact path>`, and `default`;
//! actions `error`, `ignore` (keep it: CRIU will try to carry it into the image) and
//! `close` (the engine points the fd at `/dev/null` before dumping, so its owner's later
//! reads and writes fail harmlessly instead of hitting a reused fd number; it is not
//! reopened, even if the checkpoint fails). Example:
//! `CRAC_FD_POLICY=path:/var/log/*=close,kind:tcp-listen=ignore`.

use std::os::fd::RawFd;

use crate::error::Error;
use crate::sys::fd;
use crate::sys::fd_info::{self, FdKind, OpenFd};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Error,
    Ignore,
    Close,
}

#[derive(Debug, Clone, PartialEq)]
enum Selector {
    Kind(FdKind),
    PathPrefix(String),
    Path(String),
    Default,
}

/// The parsed `CRAC_FD_POLICY`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Policy {
    rules: Vec<(Selector, Action)>,
}

impl Policy {
    pub(crate) fn parse(text: &str) -> Result<Policy, String> {
        let mut rules = Vec::new();
        for rule in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let (selector, action) = rule
                .rsplit_once('=')
                .ok_or_else(|| format!("`{rule}`: expected SELECTOR=ACTION"))?;
            let action = match action {
                "error" => Action::Error,
                "ignore" => Action::Ignore,
                "close" => Action::Close,
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
                    None => Selector::Path(path.to_string()),
                }
            } else {
                return Err(format!(
                    "`{rule}`: selector must be kind:<kind>, path:<path> or default"
                ));
            };
            rules.push((selector, action));
        }
        Ok(Policy { rules })
    }

    fn action(&self, fd: &OpenFd) -> Action {
        let path = fd.path.as_ref().map(|p| p.to_string_lossy());
        self.rules
            .iter()
            .find(|(selector, _)| match selector {
                Selector::Kind(kind) => *kind == fd.kind,
                Selector::PathPrefix(prefix) => path
                    .as_ref()
                    .is_some_and(|p| p.starts_with(prefix.as_str())),
                Selector::Path(exact) => path.as_deref() == Some(exact.as_str()),
                Selector::Default => true,
            })
            .map_or(Action::Error, |(_, action)| *action)
    }
}

/// Applies the policy to every fd except stdio and `claimed`: closes those marked
/// `close`, and refuses with every `error` one named.
pub(crate) fn check(policy: &Policy, claimed: &[RawFd]) -> Result<(), Error> {
    let fds = fd_info::list().map_err(|e| Error::Io("listing /proc/self/fd", e))?;
    let mut refused = Vec::new();
    for fd in fds
        .into_iter()
        .filter(|fd| fd.fd > 2 && !claimed.contains(&fd.fd))
    {
        match policy.action(&fd) {
            Action::Error => refused.push(fd),
            Action::Ignore => {}
            Action::Close => detach(fd.fd)?,
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Error::OpenFds { fds: refused })
    }
}

/// Points `number` at `/dev/null`: whatever owns it keeps a valid fd of its own.
fn detach(number: RawFd) -> Result<(), Error> {
    let null = fd::dev_null().map_err(|e| Error::Io("opening /dev/null", e))?;
    fd::redirect(number, std::os::fd::AsFd::as_fd(&null))
        .map_err(|e| Error::Io("detaching an fd", e))
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
        }
    }

    #[test]
    fn first_matching_rule_wins_and_the_default_is_error() {
        let policy =
            Policy::parse("path:/var/log/*=close, kind:file=ignore,kind:tcp=error").unwrap();
        assert_eq!(
            policy.action(&fd(FdKind::File, Some("/var/log/app.log"))),
            Action::Close
        );
        assert_eq!(
            policy.action(&fd(FdKind::File, Some("/etc/hosts"))),
            Action::Ignore
        );
        assert_eq!(policy.action(&fd(FdKind::Unix, None)), Action::Error);
        let lenient = Policy::parse("default=ignore").unwrap();
        assert_eq!(lenient.action(&fd(FdKind::Tcp, None)), Action::Ignore);
    }

    #[test]
    fn malformed_policies_say_what_is_wrong() {
        assert_eq!(
            Policy::parse("kind:sock=ignore").unwrap_err(),
            "`kind:sock=ignore`: unknown kind `sock` (file, dir, pipe, fifo, tcp-listen, tcp, udp, \
             unix, socket, memfd, anon, other)"
        );
        assert_eq!(
            Policy::parse("path:/tmp=keep").unwrap_err(),
            "`path:/tmp=keep`: unknown action `keep` (error, ignore, close)"
        );
        assert_eq!(
            Policy::parse("ignore").unwrap_err(),
            "`ignore`: expected SELECTOR=ACTION"
        );
    }
}
