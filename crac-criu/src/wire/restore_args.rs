//! Restore-time arguments and environment (CRaC lets a restore pass new ones).
//!
//! The process holds an empty memfd named [`MEMFD`] while it is dumped; `crac restore`
//! writes the arguments into a memfd of its own and has CRIU put it in that place
//! (`--inherit-fd`), so the restored process reads them from the same fd. A restore
//! that passes nothing leaves the placeholder empty.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sys::fd::memfd;

/// The memfd's name, as CRIU records it: `/memfd:crac-args`.
const MEMFD: &str = "crac-args";

/// What a restorer passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreArgs {
    /// New arguments.
    pub args: Vec<String>,
    /// New environment variables.
    pub env: Vec<(String, String)>,
    /// When the restore began, for the restored process's report.
    pub began: Option<SystemTime>,
    /// Whether the restored process's monotonic clock goes on from where the image left
    /// it (`Restore::monotonic_time_kept`), if the restorer says.
    pub monotonic_time_kept: Option<bool>,
}

impl RestoreArgs {
    /// NUL-terminated records: `A<arg>`, `E<key>=<value>`, `T<nanoseconds since the epoch>`,
    /// `M1` or `M0` (the monotonic clock kept or not).
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(nanos) = self.began.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
            out.extend_from_slice(format!("T{}\0", nanos.as_nanos()).as_bytes());
        }
        if let Some(kept) = self.monotonic_time_kept {
            out.extend_from_slice(if kept { b"M1\0" } else { b"M0\0" });
        }
        for arg in &self.args {
            out.extend_from_slice(format!("A{arg}\0").as_bytes());
        }
        for (key, value) in &self.env {
            out.extend_from_slice(format!("E{key}={value}\0").as_bytes());
        }
        out
    }

    /// The first of `names` this restore does not give a value.
    pub(crate) fn first_missing<'a>(&self, names: &'a [String]) -> Option<&'a str> {
        names
            .iter()
            .find(|name| !self.env.iter().any(|(key, _)| key == *name))
            .map(String::as_str)
    }

    fn decode(bytes: &[u8]) -> RestoreArgs {
        let mut parsed = RestoreArgs::default();
        for record in bytes.split(|b| *b == 0).map(String::from_utf8_lossy) {
            if let Some(arg) = record.strip_prefix('A') {
                parsed.args.push(arg.to_string());
            } else if let Some((key, value)) =
                record.strip_prefix('E').and_then(|kv| kv.split_once('='))
            {
                parsed.env.push((key.to_string(), value.to_string()));
            } else if let Some(Ok(nanos)) = record.strip_prefix('T').map(str::parse::<u64>) {
                parsed.began = UNIX_EPOCH.checked_add(Duration::from_nanos(nanos));
            } else if let Some(kept) = record.strip_prefix('M') {
                parsed.monotonic_time_kept = Some(kept == "1");
            }
        }
        parsed
    }
}

/// Process side: the empty placeholder held during the dump.
pub(crate) fn placeholder() -> std::io::Result<std::fs::File> {
    memfd(MEMFD, false)
}

/// Process side, after a restore: what the restorer put in the placeholder's place.
pub(crate) fn read(mut placeholder: std::fs::File) -> RestoreArgs {
    let mut bytes = Vec::new();
    // The process was restored either way: an unreadable memfd reads as "nothing passed".
    let _ = placeholder
        .rewind()
        .and_then(|()| placeholder.read_to_end(&mut bytes));
    RestoreArgs::decode(&bytes)
}

/// What CRIU needs of the restorer's environment even when a copy is given it too: the
/// tools CRIU runs are found through it.
const NEEDED_TO_RUN: [&str; 2] = ["PATH", "LD_LIBRARY_PATH"];

/// Restorer side: keeps the variables `args` gives the copy out of `cmd`'s environment
/// (but those in [`NEEDED_TO_RUN`]). A value given with `--env NAME` is the restorer's
/// own, in its environment, which CRIU would pass on to `crac __wait`, the copy's parent
/// for its whole life (and to whatever that spawns, and into a core dump); the copy
/// reads its variables from the memfd. Called before crac sets its own variables in
/// `cmd`.
pub(crate) fn keep_out_of(cmd: &mut Command, args: &RestoreArgs) {
    for (key, _) in &args.env {
        if !NEEDED_TO_RUN.contains(&key.as_str()) {
            cmd.env_remove(key);
        }
    }
}

/// Restorer side: hands `args` to a `criu restore` command — a memfd that CRIU
/// inherits and puts in the placeholder's place (`--inherit-fd`). The command itself
/// holds the memfd open (in its `pre_exec` closure) until it is dropped, so it cannot be
/// closed before CRIU has started.
pub(crate) fn pass_to(cmd: &mut Command, args: &RestoreArgs) -> std::io::Result<()> {
    let mut memfd = memfd(MEMFD, true)?;
    memfd.write_all(&args.encode())?;
    cmd.arg("--inherit-fd")
        .arg(format!("fd[{}]:/memfd:{MEMFD}", memfd.as_raw_fd()));
    // SAFETY: the closure does nothing in the child (it only owns the memfd in the
    // parent), so it is trivially async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let _held = &memfd;
            Ok(())
        })
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_survive_the_round_trip() {
        let args = RestoreArgs {
            args: vec!["--port".into(), "9 0".into(), String::new()],
            env: vec![("DB_URL".into(), "postgres://h/db?a=b".into())],
            began: Some(UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789)),
            monotonic_time_kept: Some(false),
        };
        assert_eq!(RestoreArgs::decode(&args.encode()), args);
        assert_eq!(RestoreArgs::decode(b""), RestoreArgs::default());
    }

    #[test]
    fn the_first_secret_not_given_is_named() {
        let given = RestoreArgs {
            env: vec![("A".into(), String::new())],
            ..RestoreArgs::default()
        };
        let names = ["A".to_string(), "B".to_string(), "C".to_string()];
        assert_eq!(given.first_missing(&names), Some("B"));
        assert_eq!(given.first_missing(&names[..1]), None);
    }

    proptest::proptest! {
        /// Whatever is in the memfd (a foreign or newer restorer's records), decoding
        /// ends without a panic.
        #[test]
        fn arbitrary_bytes_decode_without_panicking(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)
        ) {
            let _ = RestoreArgs::decode(&bytes);
        }

        #[test]
        fn any_arguments_a_shell_can_pass_survive_the_round_trip(
            args in proptest::collection::vec("[^\\x00]{0,20}", 0..6),
            env in proptest::collection::vec(("[^\\x00=]{1,12}", "[^\\x00]{0,20}"), 0..6),
            nanos in proptest::option::of(0u64..u64::MAX),
            kept in proptest::option::of(proptest::bool::ANY),
        ) {
            let given = RestoreArgs {
                args,
                env,
                began: nanos.map(|n| UNIX_EPOCH + Duration::from_nanos(n)),
                monotonic_time_kept: kept,
            };
            proptest::prop_assert_eq!(RestoreArgs::decode(&given.encode()), given);
        }
    }
}
