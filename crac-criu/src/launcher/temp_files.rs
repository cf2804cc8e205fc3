//! The restorer's files in the temp directory (`crac-restore-PID.*`: CRIU's log, the
//! phase stamps, the verdict, a lazy-pages server's work directory): named after the
//! restorer's PID, so that what one that is gone left behind can be told and removed.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A failed restore's log is kept for a day (its error names it).
const FAILED_LOG_KEPT: Duration = Duration::from_secs(24 * 3600);

/// Where this restorer's CRIU log goes when none was given; the restorer's other files
/// are named after it (`with_extension`).
pub(crate) fn default_log() -> PathBuf {
    std::env::temp_dir().join(format!("crac-restore-{}.log", std::process::id()))
}

/// Removes what restorers that are gone (killed, or crashed) left in `temp`:
/// `crac-restore-PID.*` whose PID is not running.
pub(crate) fn remove_leftovers(temp: &Path) {
    for entry in std::fs::read_dir(temp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((pid, kind)) = name
            .strip_prefix("crac-restore-")
            .and_then(|rest| rest.split_once('.'))
        else {
            continue;
        };
        if !pid.bytes().all(|b| b.is_ascii_digit()) || Path::new("/proc").join(pid).exists() {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|at| at.elapsed().is_ok_and(|age| age > FAILED_LOG_KEPT));
        let path = entry.path();
        // Best effort: what cannot be removed now is tried at the next restore.
        match kind {
            "lazy" => drop(std::fs::remove_dir_all(&path)),
            "log" if !old => {}
            _ => drop(std::fs::remove_file(&path)),
        }
    }
}
