//! An unprivileged local user on the same host, for the tests that play one: made once
//! with `useradd` (a system user without a home or a login shell) and reused by every
//! test and every later run.

use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::sync::OnceLock;

/// The user's name: says what it is to whoever finds it in /etc/passwd.
const NAME: &str = "crac-e2e-attacker";

/// The user a test acts as.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attacker {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// The user, made on first use. Panics naming what failed: the end-to-end tests run as
/// root on Debian, where `useradd` is always present.
pub(crate) fn attacker() -> Attacker {
    static USER: OnceLock<Result<Attacker, String>> = OnceLock::new();
    USER.get_or_init(find_or_make)
        .clone()
        .unwrap_or_else(|why| panic!("cannot act as an unprivileged user: {why}"))
}

fn find_or_make() -> Result<Attacker, String> {
    if let Some(user) = find() {
        return Ok(user);
    }
    let made = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            NAME,
        ])
        .output()
        .map_err(|e| format!("running useradd: {e}"))?;
    // Another test process may have made it meanwhile: look again either way.
    find().ok_or_else(|| {
        format!(
            "useradd {NAME} failed: {}",
            String::from_utf8_lossy(&made.stderr).trim()
        )
    })
}

fn find() -> Option<Attacker> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, NAME]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some(Attacker {
        uid: id("-u")?,
        gid: id("-g")?,
    })
}

impl Attacker {
    /// `program` run as this user (std drops root's supplementary groups), with an
    /// environment of its own.
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.uid(self.uid)
            .gid(self.gid)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", "/nonexistent");
        cmd
    }
}

impl Attacker {
    /// Makes `path` (a symlink itself, not its target) this user's, as if they had made it.
    pub(crate) fn own(&self, path: &std::path::Path) {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
            .unwrap_or_else(|e| panic!("lchown {}: {e}", path.display()));
    }
}
