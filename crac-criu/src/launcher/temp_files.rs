//! The restorer's files: CRIU's log, the phase stamps, the page check's verdict, a
//! lazy-pages server's work directory and log. They live in a directory private to one
//! restore, made as `mkdtemp` makes one (a random name, mode 0700, the restorer's own) in
//! the temp directory: no name in a shared directory such as /tmp is fixed, so another
//! user can neither plant a symlink that root would write through nor a file that root
//! would read back as the verdict. The directory's name starts with the restorer's PID
//! (`crac-restore-PID.XXXXXX`), so that what a restorer that is gone left behind can be
//! told and removed.

use std::ffi::OsStr;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::launcher::error::LaunchError;

/// How every restore directory's name begins.
const PREFIX: &str = "crac-restore-";
/// A failed restore's log is kept for a day (its error names it).
const FAILED_LOG_KEPT: Duration = Duration::from_secs(24 * 3600);
/// At most this many leftovers are looked at per restore: anyone can fill a shared temp
/// directory with look-alikes, and tidying must stay cheap.
const EXAMINED: usize = 256;

/// One restore's private directory; removed when dropped, but for the logs still in it
/// (a failed restore's, which its error names).
#[derive(Debug)]
pub(crate) struct RestoreFiles {
    dir: PathBuf,
}

impl RestoreFiles {
    /// Makes this restore's directory in the temp directory.
    pub(crate) fn create() -> Result<RestoreFiles, LaunchError> {
        let temp = std::env::temp_dir();
        // CRIU changes directory before it uses these paths: they must be absolute.
        let temp = std::path::absolute(&temp).unwrap_or(temp);
        let template = temp.join(format!("{PREFIX}{}.XXXXXX", std::process::id()));
        let dir = nix::unistd::mkdtemp(&template).map_err(|e| LaunchError::File {
            action: "creating a private directory in",
            path: temp,
            source: e.into(),
        })?;
        Ok(RestoreFiles { dir })
    }

    /// CRIU's log, when none was given.
    pub(crate) fn log(&self) -> PathBuf {
        self.dir.join("criu.log")
    }

    /// Where each stage of the restore is stamped (`phases.rs`).
    pub(crate) fn stamps(&self) -> PathBuf {
        self.dir.join("phases")
    }

    /// The page check's verdict (`page_check.rs`).
    pub(crate) fn verdict(&self) -> PathBuf {
        self.dir.join("verdict")
    }

    /// A lazy-pages server's work directory (its socket).
    pub(crate) fn lazy_work_dir(&self) -> PathBuf {
        self.dir.join("lazy")
    }
}

impl Drop for RestoreFiles {
    fn drop(&mut self) {
        tidy(&self.dir, Keep::Logs);
    }
}

/// Removes what restorers that are gone (killed, or crashed) left in `temp`: the files
/// in their directories, a failed restore's logs once a day old, and the directories
/// once empty.
pub(crate) fn remove_leftovers(temp: &Path) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    let leftovers = entries.flatten().filter(|entry| {
        // the type as listed: a symlink is not a directory
        entry.file_type().is_ok_and(|t| t.is_dir())
            && restorer_of(&entry.file_name())
                .is_some_and(|pid| !Path::new("/proc").join(pid).exists())
    });
    for entry in leftovers.take(EXAMINED) {
        tidy(&entry.path(), Keep::LogsOfADay);
    }
}

/// The PID in a restore directory's name (`crac-restore-PID.XXXXXX`).
fn restorer_of(name: &OsStr) -> Option<&str> {
    let (pid, random) = name.to_str()?.strip_prefix(PREFIX)?.split_once('.')?;
    (!pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && random.len() == 6).then_some(pid)
}

/// Which logs of a restore directory stay.
#[derive(Debug, Clone, Copy)]
enum Keep {
    /// Every one (this restore's own, which its error may name).
    Logs,
    /// Those younger than [`FAILED_LOG_KEPT`].
    LogsOfADay,
}

/// Removes what is in the restore directory `dir` but the logs `keep` says, and the
/// directory once empty. Best effort: what cannot be removed now is tried at the next
/// restore. Only a directory of this user's and closed to others is touched, opened
/// without following a symlink, and everything is removed through that very directory
/// (`/proc/self/fd/N`): in a shared temp directory the name could be anyone's.
fn tidy(dir: &Path, keep: Keep) {
    let Ok(opened) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
    else {
        return;
    };
    let Ok(meta) = opened.metadata() else {
        return;
    };
    if meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o077 != 0 {
        return;
    }
    let inside = PathBuf::from(format!("/proc/self/fd/{}", opened.as_raw_fd()));
    let mut left = false;
    for entry in std::fs::read_dir(&inside).into_iter().flatten().flatten() {
        let is_log = entry.file_name().to_string_lossy().ends_with(".log");
        let young = || {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().map_or(true, |age| age < FAILED_LOG_KEPT))
        };
        if is_log && (matches!(keep, Keep::Logs) || young()) {
            left = true;
            continue;
        }
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(entry.path())
        } else {
            std::fs::remove_file(entry.path())
        };
        left |= removed.is_err();
    }
    // `dir` is still the directory opened (not one put in its place since): it goes once
    // empty.
    let same = std::fs::symlink_metadata(dir)
        .is_ok_and(|now| now.dev() == meta.dev() && now.ino() == meta.ino());
    if !left && same {
        let _ = std::fs::remove_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_restore_directory_names_are_a_restorers() {
        assert_eq!(
            restorer_of(OsStr::new("crac-restore-123.aB3xYz")),
            Some("123")
        );
        for other in [
            "crac-restore-123.log",
            "crac-restore-.aB3xYz",
            "crac-restore-12a.aB3xYz",
            "crac-restore-123",
            "crac-staging-123.aB3xYz",
        ] {
            assert_eq!(restorer_of(OsStr::new(other)), None, "{other}");
        }
    }

    #[test]
    fn a_gone_restorers_files_go_its_log_after_a_day_and_nothing_else() {
        use std::os::unix::fs::PermissionsExt as _;
        let temp = std::env::temp_dir().join(format!("crac-temp-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&temp);
        std::fs::create_dir_all(&temp).unwrap();
        // a PID no process has
        let pid = (2..32_000)
            .rev()
            .find(|pid| !Path::new(&format!("/proc/{pid}")).exists())
            .unwrap();
        let make = |name: &str, mode: u32| {
            let dir = temp.join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("criu.log"), "log").unwrap();
            std::fs::write(dir.join("verdict"), "ok").unwrap();
            std::fs::create_dir(dir.join("lazy")).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            dir
        };
        let gone = make(&format!("{PREFIX}{pid}.aaaaaa"), 0o700);
        let open = make(&format!("{PREFIX}{pid}.bbbbbb"), 0o755);
        let running = make(&format!("{PREFIX}{}.cccccc", std::process::id()), 0o700);
        remove_leftovers(&temp);
        let names = |dir: &Path| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(&gone), ["criu.log"]);
        assert_eq!(names(&open), ["criu.log", "lazy", "verdict"]);
        assert_eq!(names(&running), ["criu.log", "lazy", "verdict"]);
        let days_ago = std::time::SystemTime::now() - 2 * FAILED_LOG_KEPT;
        std::fs::File::options()
            .write(true)
            .open(gone.join("criu.log"))
            .unwrap()
            .set_modified(days_ago)
            .unwrap();
        remove_leftovers(&temp);
        assert!(!gone.exists());
        // this restore's own: everything but its log goes, the log stays for its error
        drop(RestoreFiles {
            dir: running.clone(),
        });
        assert_eq!(names(&running), ["criu.log"]);
        assert_eq!(names(&open), ["criu.log", "lazy", "verdict"]);
        std::fs::remove_dir_all(&temp).unwrap();
    }
}
