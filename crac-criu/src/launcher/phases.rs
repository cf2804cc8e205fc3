//! Where a restore's time goes. CRIU runs the action script (this executable) at each
//! stage; the script stamps the stage and the milliseconds since the restore began into
//! a file, one line each, and the restorer reads them back: to know that the process
//! resumed (its exit status alone cannot be told from the restored process's), to print
//! `crac: restored in N ms`, and with `crac restore --verbose` each phase.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::env::{RESTORE_BEGAN as BEGAN_ENV, RESTORE_PHASES as PHASES_ENV};

/// The stage after which the process runs: its stamp means "restored".
const RESUMED: &str = "post-resume";

/// When the image was found sound (stamped by the restorer).
pub(crate) const VALIDATED: &str = "validated";
/// When the lazy-pages server listened (a lazy restore).
pub(crate) const LAZY_LISTENING: &str = "lazy-listening";
/// When the page data was found to match (stamped by the restorer's check).
pub(crate) const PAGES_HASHED: &str = "pages-hashed";
/// When the page data was found unchanged since an earlier restore checked it.
pub(crate) const PAGES_RECORDED: &str = "pages-recorded";
/// When the action script got the page check's verdict.
pub(crate) const PAGES_CHECKED: &str = "pages-checked";
/// When the process's `Restored` message was queued: from then on CRIU resumes it, and
/// it may run (and be seen running) before the `post-resume` stamp.
pub(crate) const WOKEN: &str = "woken";

/// The stages stamped, in order, with what the time up to each one was spent on.
const STAGES: [(&str, &str); 6] = [
    (VALIDATED, "validate the image"),
    (
        LAZY_LISTENING,
        "the lazy-pages server starting (from before the validation)",
    ),
    ("pre-restore", "CRIU start (namespace, kernel probe)"),
    ("post-restore", "processes, files and memory"),
    (PAGES_CHECKED, "waiting for the page check"),
    (RESUMED, "resume"),
];

/// Tells CRIU's action script (through `cmd`'s environment) where to stamp and when the
/// restore began.
pub(crate) fn pass_to(cmd: &mut std::process::Command, stamps: &Path, began: SystemTime) {
    let began = began.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    cmd.env(PHASES_ENV, stamps)
        .env(BEGAN_ENV, began.to_string());
}

/// In the action script: stamps `stage` now. Outside `crac restore`, nothing to do.
pub(crate) fn stamp(stage: &str) -> std::io::Result<()> {
    let Some(path) = std::env::var_os(PHASES_ENV) else {
        return Ok(());
    };
    let began = std::env::var(BEGAN_ENV)
        .ok()
        .and_then(|nanos| nanos.parse::<u64>().ok())
        .map_or(UNIX_EPOCH, |nanos| UNIX_EPOCH + Duration::from_nanos(nanos));
    stamp_at(Path::new(&path), began, stage)
}

/// Stamps `stage` now into `path`, for a restore that began at `began`.
pub(crate) fn stamp_at(path: &Path, began: SystemTime, stage: &str) -> std::io::Result<()> {
    let ms = began.elapsed().unwrap_or_default().as_secs_f64() * 1000.0;
    // One short append per line: lines never interleave. The file is in the restore's
    // private directory (`temp_files.rs`); a symlink there is not followed all the same.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .write_all(format!("{stage} {ms:.1}\n").as_bytes())
}

/// The stamps read back: stage and milliseconds since the restore began.
#[derive(Debug, Default)]
pub(crate) struct Stamps(Vec<(String, f64)>);

impl Stamps {
    pub(crate) fn read(path: &Path) -> Stamps {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Stamps(
            text.lines()
                .filter_map(|l| {
                    let (stage, ms) = l.split_once(' ')?;
                    Some((stage.to_string(), ms.parse().ok()?))
                })
                .collect(),
        )
    }

    fn at(&self, stage: &str) -> Option<f64> {
        self.0.iter().find(|(s, _)| s == stage).map(|(_, ms)| *ms)
    }

    /// Milliseconds from the start to the process running again, if it did.
    pub(crate) fn resumed(&self) -> Option<f64> {
        self.at(RESUMED)
    }

    /// Whether the process was woken: it runs, or is about to.
    pub(crate) fn woken(&self) -> bool {
        self.at(WOKEN).is_some()
    }

    /// One line per phase, and how long the page check ran beside CRIU.
    pub(crate) fn describe(&self) -> String {
        let mut out = String::new();
        let mut last = 0.0;
        for (stage, what) in STAGES {
            if let Some(at) = self.at(stage) {
                out += &format!("  {:7.1} ms  {what}\n", at - last);
                last = at;
            }
        }
        if let (Some(from), Some(to)) = (self.at(VALIDATED), self.at(PAGES_HASHED)) {
            out += &format!(
                "  ({:.1} ms hashing the page data, beside CRIU)\n",
                to - from
            );
        }
        if self.at(PAGES_RECORDED).is_some() {
            out += "  (page data not hashed: unchanged since its image was written or an earlier restore found it intact)\n";
        }
        out
    }
}

/// Prints `crac: restored in N ms` if the process is stamped resumed (and with
/// `verbose`, how long each phase took).
pub(crate) fn report(stamps: &Path, verbose: bool) {
    let read = Stamps::read(stamps);
    if let Some(ms) = read.resumed() {
        if verbose {
            eprintln!("crac: restored in {ms:.0} ms:\n{}", read.describe());
        } else {
            eprintln!("crac: restored in {ms:.0} ms");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_the_differences_between_stamps() {
        let stamps = Stamps(vec![
            ("validated".into(), 2.0),
            ("pre-restore".into(), 12.0),
            ("pages-hashed".into(), 63.0),
            ("post-restore".into(), 112.5),
            ("pages-checked".into(), 113.0),
            ("post-resume".into(), 115.0),
        ]);
        assert_eq!(stamps.resumed(), Some(115.0));
        assert_eq!(
            stamps.describe(),
            "      2.0 ms  validate the image\n     10.0 ms  CRIU start (namespace, kernel \
             probe)\n    100.5 ms  processes, files and memory\n      0.5 ms  waiting for the \
             page check\n      2.0 ms  resume\n  (61.0 ms hashing the page data, beside CRIU)\n"
        );
        assert_eq!(Stamps::default().resumed(), None);
    }
}
