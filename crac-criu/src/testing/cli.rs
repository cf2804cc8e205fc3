//! The `crac` command the test restores its copies with, and where it is looked for.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::env::CLI as CLI_ENV;
use crate::sys::process;

/// How to get a `crac` command, for the messages that find none.
const INSTALL: &str = "install it with `cargo install --git https://github.com/crac-rs/crac-rs \
                       crac-cli` (or put a `crac` binary on PATH), or set CRAC_CLI=/path/to/crac";

/// The `crac` command: `CRAC_CLI` if set (then it must be an executable file), else
/// `crac` beside the test executable (crac-rs's own tests, after `cargo build -p
/// crac-cli`), else `crac` on `PATH`.
pub(super) fn crac_command() -> Result<PathBuf, String> {
    locate(
        std::env::var_os(CLI_ENV).filter(|path| !path.is_empty()),
        std::env::current_exe().ok().as_deref(),
        || process::find_program(Path::new("crac"), &[]),
    )
}

fn locate(
    cli: Option<OsString>,
    test_exe: Option<&Path>,
    on_path: impl FnOnce() -> Option<PathBuf>,
) -> Result<PathBuf, String> {
    if let Some(path) = cli.map(PathBuf::from) {
        let problem = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => {
                return Ok(path);
            }
            Ok(meta) if meta.is_file() => "is not executable",
            Ok(_) => "is not a file",
            Err(_) => "names no file",
        };
        return Err(format!(
            "{CLI_ENV}={} {problem}: point it at the `crac` command, or unset it to use \
             the `crac` on PATH",
            path.display()
        ));
    }
    // `target/<profile>/crac` for `target/<profile>/deps/<test>`.
    let beside = test_exe
        .into_iter()
        .flat_map(|exe| exe.ancestors().skip(1).take(2).map(|dir| dir.join("crac")));
    beside
        .into_iter()
        .find(|candidate| candidate.is_file())
        .or_else(on_path)
        .ok_or_else(|| {
            format!("the `crac` command, which restores the copies, was not found: {INSTALL}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("crac-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_crac_cli_that_points_nowhere_is_named_with_its_path() {
        let error = locate(Some("/nowhere/crac".into()), None, || None).unwrap_err();
        assert_eq!(
            error,
            format!(
                "{CLI_ENV}=/nowhere/crac names no file: point it at the `crac` command, or \
                 unset it to use the `crac` on PATH"
            )
        );
    }

    #[test]
    fn a_crac_cli_that_is_not_executable_is_refused() {
        let dir = scratch("not-executable");
        let file = dir.join("crac");
        std::fs::write(&file, "").unwrap();
        let error = locate(Some(file.clone().into()), None, || None).unwrap_err();
        assert!(error.ends_with("crac is not executable: point it at the `crac` command, or unset it to use the `crac` on PATH"), "{error}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(locate(Some(file.clone().into()), None, || None), Ok(file));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn without_a_crac_command_the_message_says_how_to_install_one() {
        let dir = scratch("none");
        let error = locate(None, Some(&dir.join("deps/test")), || None).unwrap_err();
        assert_eq!(
            error,
            "the `crac` command, which restores the copies, was not found: install it with \
             `cargo install --git https://github.com/crac-rs/crac-rs crac-cli` (or put a `crac` \
             binary on PATH), or set CRAC_CLI=/path/to/crac"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_crac_beside_the_test_executable_comes_before_path() {
        let dir = scratch("beside");
        std::fs::create_dir_all(dir.join("deps")).unwrap();
        std::fs::write(dir.join("crac"), "").unwrap();
        let found = locate(None, Some(&dir.join("deps/test")), || {
            Some("/usr/bin/crac".into())
        });
        assert_eq!(found, Ok(dir.join("crac")));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
