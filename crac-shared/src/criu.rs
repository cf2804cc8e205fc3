//! Where the `criu` binary is found and whether CRIU can run here: the criu engine, the
//! compile-time probe of `#[crac::test]`, its runtime and the end-to-end tests all ask,
//! and must get the same answer.

use std::fmt;
use std::path::{Path, PathBuf};

/// The variable naming the `criu` binary to use, before any search.
pub const CRIU_ENV: &str = "CRAC_CRIU";

/// Where `criu` is looked for after `PATH`: where `scripts/install-criu.sh` and
/// distributions install it (`sbin` directories are often not on a user's `PATH`).
pub const SBIN_DIRS: [&str; 2] = ["/usr/local/sbin", "/usr/sbin"];

/// Why no `criu` binary was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CriuMissing {
    /// `CRAC_CRIU` names no file.
    NoSuchFile(PathBuf),
    /// Not on `PATH`, nor in [`SBIN_DIRS`].
    NotFound,
}

impl fmt::Display for CriuMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CriuMissing::NoSuchFile(path) => {
                write!(f, "{CRIU_ENV}={} is not a file", path.display())
            }
            CriuMissing::NotFound => f.write_str(
                "criu is not on PATH, in /usr/local/sbin or /usr/sbin \
                 (scripts/install-criu.sh installs it)",
            ),
        }
    }
}

/// `CRAC_CRIU` if set and not empty (then it must be a file), else `criu` on `PATH`,
/// else in [`SBIN_DIRS`].
pub fn criu_binary() -> Result<PathBuf, CriuMissing> {
    if let Some(path) = std::env::var_os(CRIU_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(CriuMissing::NoSuchFile(path))
        };
    }
    find_program(Path::new("criu"), &SBIN_DIRS).ok_or(CriuMissing::NotFound)
}

/// The first file named `name` in a directory of `PATH`, else of `extra`.
pub fn find_program(name: &Path, extra: &[&str]) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Whether this process runs as root (effective uid 0), which CRIU needs to restore.
/// Read from `/proc/self/status`: this crate has no `libc`.
pub fn is_root() -> bool {
    // The effective uid: the second number of the `Uid:` line.
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Whether this host lets an ordinary user make user namespaces, which crac's rootless
/// mode goes through: neither `user.max_user_namespaces` nor
/// `kernel.unprivileged_userns_clone` (where the kernel has it) is 0. (An AppArmor policy
/// may still refuse them: `crac doctor` tries.)
pub fn user_namespaces_allowed() -> bool {
    let zero = |path: &str| std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "0");
    !zero("/proc/sys/user/max_user_namespaces")
        && !zero("/proc/sys/kernel/unprivileged_userns_clone")
}

/// Why CRIU cannot run here: not root where an ordinary user may not make user
/// namespaces, or no `criu` binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// The effective uid is not 0, and this host forbids ordinary users' user namespaces.
    NotRoot,
    /// No `criu` binary was found.
    Missing(CriuMissing),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::NotRoot => f.write_str(
                "not root, and this host forbids ordinary users' user namespaces (rootless \
                 mode): run as root, or see `crac doctor`",
            ),
            Unusable::Missing(missing) => write!(f, "no CRIU: {missing}"),
        }
    }
}

/// The `criu` binary, if this process is root (or may go rootless) and one is found; why
/// not otherwise. Whether that CRIU works on this kernel (`criu check`) is not asked.
pub fn probe() -> Result<PathBuf, Unusable> {
    if !is_root() && !user_namespaces_allowed() {
        return Err(Unusable::NotRoot);
    }
    criu_binary().map_err(Unusable::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_is_found_in_the_extra_directories() {
        let dir = std::env::temp_dir().join(format!("crac-shared-find-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("crac-shared-probe"), "").unwrap();
        let found = find_program(Path::new("crac-shared-probe"), &[dir.to_str().unwrap()]);
        assert_eq!(found, Some(dir.join("crac-shared-probe")));
        assert_eq!(
            find_program(Path::new("crac-shared-absent"), &[dir.to_str().unwrap()]),
            None
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_reasons_name_what_is_missing() {
        let missing = CriuMissing::NoSuchFile("/nowhere/criu".into());
        assert_eq!(missing.to_string(), "CRAC_CRIU=/nowhere/criu is not a file");
        assert!(
            Unusable::NotRoot
                .to_string()
                .starts_with("not root, and this host forbids")
        );
    }
}
