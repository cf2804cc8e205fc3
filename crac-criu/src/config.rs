//! Configuration, CRaC-style: environment variables, read when a checkpoint starts.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `CRAC_CHECKPOINT_TO` | image directory to write (like `-XX:CRaCCheckpointTo`) | required |
//! | `CRAC_CRIU` | the `criu` binary | `criu` on `PATH`, then `/usr/local/sbin`, `/usr/sbin` |
//! | `CRAC_CRIU_OPTS` | extra CRIU options, space separated (recorded; restore repeats them) | none |
//! | `CRAC_LEAVE_RUNNING` | `1`: keep the process running after the image is taken | `0` |
//! | `CRAC_FD_POLICY` | what to do with unclaimed fds, see [`crate::fdcheck`] | `error` for all |
//! | `CRAC_LOG` | CRIU log verbosity, 0–4 | `2` |

use std::path::PathBuf;

use crate::Error;
use crate::fdcheck::Policy;

/// One checkpoint's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub image_dir: PathBuf,
    pub criu: PathBuf,
    pub criu_opts: Vec<String>,
    pub leave_running: bool,
    pub fd_policy: Policy,
    pub log_level: u8,
}

impl Config {
    /// Reads every variable; the first problem found is reported with its variable.
    pub fn from_env() -> Result<Config, Error> {
        let image_dir = match std::env::var_os("CRAC_CHECKPOINT_TO") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => {
                return Err(Error::Config(
                    "CRAC_CHECKPOINT_TO is not set: set it to the directory the image should be \
                     written to, e.g. CRAC_CHECKPOINT_TO=/var/lib/myapp/image"
                        .into(),
                ));
            }
        };
        let image_dir = std::path::absolute(&image_dir).map_err(|e| {
            Error::Config(format!("CRAC_CHECKPOINT_TO={}: {e}", image_dir.display()))
        })?;
        let leave_running = crate::ready::LEAVE_RUNNING.get()
            || match std::env::var("CRAC_LEAVE_RUNNING").as_deref() {
                Err(_) | Ok("") | Ok("0") | Ok("false") => false,
                Ok("1") | Ok("true") => true,
                Ok(other) => {
                    return Err(Error::Config(format!(
                        "CRAC_LEAVE_RUNNING={other:?}: expected 1 or 0"
                    )));
                }
            };
        let log_level = match std::env::var("CRAC_LOG").as_deref() {
            Err(_) | Ok("") => 2,
            Ok(level) => match level.parse::<u8>() {
                Ok(level) if level <= 4 => level,
                _ => {
                    return Err(Error::Config(format!(
                        "CRAC_LOG={level:?}: expected a CRIU log level from 0 to 4"
                    )));
                }
            },
        };
        let fd_policy = Policy::parse(&std::env::var("CRAC_FD_POLICY").unwrap_or_default())
            .map_err(|e| Error::Config(format!("CRAC_FD_POLICY: {e}")))?;
        let criu_opts: Vec<String> = std::env::var("CRAC_CRIU_OPTS")
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect();
        if let Some(owned) = criu_opts.iter().find(|o| engine_owned(o)) {
            return Err(Error::Config(format!(
                "CRAC_CRIU_OPTS: `{owned}` is set by crac itself (image directory, log, target, \
                 action script, verbosity, leave-running); use CRAC_CHECKPOINT_TO, CRAC_LOG or \
                 CRAC_LEAVE_RUNNING instead"
            )));
        }
        Ok(Config {
            image_dir,
            criu: criu_binary()?,
            criu_opts,
            leave_running,
            fd_policy,
            log_level,
        })
    }
}

/// Options the engine passes itself: giving them again would break the protocol.
fn engine_owned(option: &str) -> bool {
    const OWNED: [&str; 14] = [
        "-D",
        "--images-dir",
        "-o",
        "--log-file",
        "-t",
        "--tree",
        "-R",
        "--leave-running",
        "--action-script",
        "-W",
        "--work-dir",
        "-v",
        "--restore-detached",
        "-d",
    ];
    OWNED
        .iter()
        .any(|o| option == *o || option.starts_with(&format!("{o}=")))
        || (option.starts_with("-v") && option[2..].chars().all(|c| c.is_ascii_digit() || c == 'v'))
}

/// `CRAC_CRIU`, else `criu` on `PATH`, else where `scripts/install-criu.sh` puts it.
pub fn criu_binary() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("CRAC_CRIU").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::Config(format!(
                "CRAC_CRIU={}: no such file; point it at a CRIU 4.1+ binary",
                path.display()
            )))
        };
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/local/sbin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("criu"))
        .find(|candidate| candidate.is_file());
    on_path.ok_or_else(|| {
        Error::Config(
            "criu not found on PATH: install CRIU 4.1+ with scripts/install-criu.sh, or set \
             CRAC_CRIU to its path"
                .into(),
        )
    })
}
